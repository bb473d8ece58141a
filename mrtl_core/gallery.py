"""Labelled pictures of the procedural knee (chapter 3's gallery and ``benchmarks/knee_gallery.py``).

:func:`knee_image` turns tissue fractions into an approximate proton-density-weighted grey image
(fixed display weights, no coils or noise); :func:`knee_landmarks` finds where the named structures
of one slice are, from the fractions themselves (bone components, meniscus and tendon components,
flow voids, fat between muscles); :func:`knee_gallery` draws a labelled grid of subjects x slices.
Kept out of ``phantoms/knee.py`` so that a change to the pictures does not change the knee's
physics hash (and with it every cached knee file and model).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .phantoms.knee import FOV_MM, knee_tissue_slices

__all__ = ["PD_DISPLAY_WEIGHTS", "knee_image", "knee_landmarks", "knee_gallery"]

#: Display grey level of each tissue (roughly a fat-unsuppressed PD TSE: fluid and fat bright,
#: cartilage intermediate, muscle darker, menisci, tendons and cortical bone nearly black).
PD_DISPLAY_WEIGHTS = {"marrow": 0.8, "cortical_bone": 0.05, "cartilage": 0.6, "meniscus": 0.08, "fluid": 1.0,
                      "muscle": 0.35, "fat": 0.9, "skin": 0.5, "tendon": 0.05}


def knee_image(fractions: dict, s: int) -> np.ndarray:
    """Grey image of slice ``s`` of ``{tissue: (S, N, N)}`` fractions with :data:`PD_DISPLAY_WEIGHTS`."""
    return sum(w * fractions[t][s] for t, w in PD_DISPLAY_WEIGHTS.items() if t in fractions)


def _components(mask, min_px):
    lab, n = ndimage.label(mask)
    if n == 0:
        return lab, []
    idx = np.arange(1, n + 1)
    size = ndimage.sum(np.ones_like(lab), lab, idx)
    com = ndimage.center_of_mass(np.ones_like(lab), lab, idx)
    return lab, [(int(i), float(sz), (float(c[0]), float(c[1]))) for i, sz, c in zip(idx, size, com) if sz >= min_px]


def knee_landmarks(fractions: dict, s: int) -> dict[str, tuple[float, float]]:
    """Positions ``{structure: (row, col)}`` of the named structures visible in slice ``s``.

    Found from the fractions: femur / tibia / patella are the largest bone components (most bone
    above / below the FOV centre; the remaining most anterior one); condyle or trochlea depending on
    whether a patella lies beside the femur; meniscal horns are meniscus components in front of and
    behind the tibial plateau's centre; ACL / PCL the anterior / posterior tendon bands between femur
    and tibia; patellar and quadriceps tendons the tendon below / above the patella; Hoffa's fat pad
    the fat behind the patellar tendon; popliteal vessels the flow void (or slow-flow vein) behind
    the joint; fat septa fat with muscle on both sides.
    """
    n = fractions["fat"].shape[-1]
    px = FOV_MM / n
    f = {t: v[s] for t, v in fractions.items()}
    total = sum(f.values())
    out: dict[str, tuple[float, float]] = {}
    lab, comps = _components(f["marrow"] + f["cortical_bone"] > 0.5, 150.0 / px ** 2)
    if len(comps) < 2:
        return out
    upper = [(lab[: n // 2] == c[0]).sum() for c in comps]
    lower = [(lab[n // 2:] == c[0]).sum() for c in comps]
    fem, tib = comps[int(np.argmax(upper))], comps[int(np.argmax(lower))]
    rest = [c for c in comps if c[0] not in (fem[0], tib[0])]
    fem_m, tib_m = lab == fem[0], lab == tib[0]
    fr_rows, tr_rows = np.where(fem_m.any(1))[0], np.where(tib_m.any(1))[0]
    pat = min(rest, key=lambda c: c[2][1]) if rest else None
    if pat is not None and pat[2][1] < fem[2][1] - 10 / px and pat[2][0] < tr_rows[0]:
        pm = lab == pat[0]
        out["patella + cartilage"] = pat[2]
        r = int(pat[2][0])
        cols = np.where(fem_m[r])[0]
        if len(cols):
            out["trochlea"] = (r, float(cols[0]))
        prow = np.where(pm.any(1))[0]
        below = f["tendon"][prow[-1]: prow[-1] + int(25 / px)] > 0.5
        below[:, int(pat[2][1] + 12 / px):] = False                   # in front of the joint, not a cruciate
        if below.any():
            rr, cc = np.nonzero(below)
            k = len(rr) // 2
            out["patellar tendon"] = (float(rr[k] + prow[-1]), float(cc[k]))
            hoffa = f["fat"][prow[-1]: prow[-1] + int(20 / px), int(cc[k] + 4 / px): int(cc[k] + 18 / px)] > 0.8
            if hoffa.any():
                hr, hc = np.nonzero(hoffa)
                out["Hoffa's fat pad"] = (float(hr.mean() + prow[-1]), float(hc.mean() + cc[k] + 4 / px))
        above = f["tendon"][max(0, prow[0] - int(30 / px)): prow[0]] > 0.5
        if above.any():
            rr, cc = np.nonzero(above)
            out["quadriceps tendon"] = (float(rr.mean() + max(0, prow[0] - int(30 / px))), float(cc.mean()))
    else:
        low = fr_rows[-1] - int(12 / px)
        cols = np.where(fem_m[low])[0]
        if len(cols):
            out["femoral condyle"] = (float(low), float(cols.mean()))
    tcols = np.where(tib_m[tr_rows[0] + int(4 / px)])[0]
    if len(tcols):
        out["tibial plateau"] = (float(tr_rows[0] + int(4 / px)), float(tcols.mean()))
    tc = float(tcols.mean()) if len(tcols) else float(n / 2)
    _, men = _components(f["meniscus"] > 0.5, 6.0 / px ** 2)
    for _, _, c in men:
        name = "meniscus, anterior horn" if c[1] < tc else "meniscus, posterior horn"
        out.setdefault(name, c)
    top = max(0, min(fr_rows[-1], tr_rows[0]) - int(30 / px))
    win = f["tendon"][top: tr_rows[0] + int(4 / px), int(tcols[0] + 8 / px) if len(tcols) else 0:] > 0.5
    _, ten = _components(win, 10.0 / px ** 2)
    if len(ten) >= 1 and not men:
        off = int(tcols[0] + 8 / px) if len(tcols) else 0
        ten = sorted(ten, key=lambda c: c[2][1])
        out["ACL" if len(ten) > 1 else "cruciate ligament"] = (ten[0][2][0] + top, ten[0][2][1] + off)
        if len(ten) > 1:
            out["PCL"] = (ten[-1][2][0] + top, ten[-1][2][1] + off)
    body = ndimage.binary_fill_holes(total > 0.5)
    void = body & (total < 0.5)                                     # the artery's flow void
    _, vs = _components(void & (np.arange(n)[None, :] > tc + 10 / px), 4.0 / px ** 2)
    if vs:
        out["popliteal vessels"] = max(vs, key=lambda c: c[1])[2]
    _, mus = _components(f["muscle"] > 0.5, 40.0 / px ** 2)
    if mus:
        out["muscle"] = max(mus, key=lambda c: c[1])[2]
        m = f["muscle"] > 0.5
        d = int(round(2.5 / px)) + 1
        sept = (f["fat"] > 0.5) & np.roll(m, d, 1) & np.roll(m, -d, 1)
        sept[:, : int(tc)] = False
        if sept.any():
            rr, cc = np.nonzero(sept)
            k = len(rr) // 2
            out["fat septum"] = (float(rr[k]), float(cc[k]))
    r = int(n * 0.62)
    cols = np.where(total[r] > 0.5)[0]
    if len(cols):
        c = cols[-1] - int(3 / px)
        while c > cols[0] and f["fat"][r, c] < 0.5:
            c -= 1
        out["subcutaneous fat"] = (float(r), float(c))
    return out


def knee_gallery(seeds=(0, 1), num_slices: int = 11, slices=(2, 4, 5, 8), sizes=(128, 256), labels: bool = True):
    """A matplotlib figure: rows = subjects x matrix sizes, columns = slices, structures labelled.

    ``slices`` index into a series of ``num_slices`` through the joint (the series runs from one
    compartment to the other: the first and last cut the condyles, the middle the notch)."""
    import matplotlib.pyplot as plt

    rows = [(sd, n) for sd in seeds for n in sizes]
    fig, axes = plt.subplots(len(rows), len(slices), figsize=(3.3 * len(slices), 3.4 * len(rows)), squeeze=False)
    for i, (sd, n) in enumerate(rows):
        fr = knee_tissue_slices(np.random.default_rng(sd), num_slices, n)
        for j, s in enumerate(slices):
            ax = axes[i, j]
            ax.imshow(knee_image(fr, s), cmap="gray", vmin=0, vmax=1, extent=(0, FOV_MM, FOV_MM, 0))
            ax.set_title(f"subject {sd}, slice {s + 1}/{num_slices}, {n} px", fontsize=8)
            ax.set_xticks([]); ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("superior -> inferior", fontsize=7)
            if i == len(rows) - 1:
                ax.set_xlabel("anterior -> posterior", fontsize=7)
            if not labels:
                continue
            sc = FOV_MM / n
            pts = [(name, (c + 0.5) * sc, (r + 0.5) * sc) for name, (r, c) in knee_landmarks(fr, s).items()]
            for left in (True, False):            # labels in the margin nearer their point, in y order
                side = sorted([q for q in pts if (q[1] < FOV_MM / 2) == left], key=lambda q: q[2])
                for k, (name, x, y) in enumerate(side):
                    ty = 10.0 + (k + 0.5) * 140.0 / max(len(side), 1)
                    ax.annotate(name, (x, y), (3.0 if left else FOV_MM - 3.0, ty), fontsize=5.5, color="yellow",
                                ha="left" if left else "right", va="center",
                                bbox=dict(boxstyle="round,pad=0.15", fc="black", ec="none", alpha=0.6),
                                arrowprops=dict(arrowstyle="->", color="yellow", lw=0.6, shrinkA=0, shrinkB=1))
    fig.tight_layout()
    return fig
