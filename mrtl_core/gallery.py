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

from .phantoms.knee import FADE_START_MM, FOV_MM, knee_tissue_slices

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


def _anchor(mask) -> tuple[float, float]:
    """The most interior pixel of ``mask`` (largest distance to its edge): a point that is surely on
    the structure, unlike a centroid of a curved or bow-tie shape."""
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(r), float(c)


def _snap(mask, r, c) -> tuple[float, float]:
    """The pixel of ``mask`` nearest ``(r, c)`` (``(r, c)`` itself when it lies on the mask)."""
    r, c = int(round(r)), int(round(c))
    if mask[r, c]:
        return float(r), float(c)
    rr, cc = np.nonzero(mask)
    k = int(np.argmin((rr - r) ** 2 + (cc - c) ** 2))
    return float(rr[k]), float(cc[k])


def _between_compartments(meniscus, s) -> bool:
    """Whether slice ``s`` of a series lies between the medial and lateral compartments (where the
    cruciates are): its meniscus area is well below the largest on both sides of it. Slices beyond
    a compartment (the collateral ligaments and the tendons of the joint's flanks) are not."""
    a = (np.asarray(meniscus) > 0.5).sum(axis=(1, 2)).astype(float)
    if len(a) < 3 or a.max() == 0:
        return True                                # a lone slice: no series to compare with
    left, right = a[:s].max(initial=0.0), a[s + 1:].max(initial=0.0)
    return bool(a[s] < 0.65 * min(left, right))


def _cruciates(tendon, bone, tib_m, tib_top, ant, post, px):
    """``{"ACL": (r, c), "PCL": (r, c)}`` (those present) from the tendon in the intercondylar region.

    The region: from 35 mm above the tibia's top to 20 mm below it, from 6 mm behind the plateau's
    anterior edge (behind the patellar tendon and Hoffa's fat) to 6 mm behind its posterior edge.
    Each tendon component there is one ligament, or both where they touch (an inverted V near the
    midline: the ACL's leg reaching the anterior tibial spine, the PCL's the posterior tibia): a
    component whose pixels next to the tibia fall in two clusters far apart is split between them.
    A single ligament is told by its course (the ACL descends anteriorly, the PCL posteriorly: the
    sign of the row-column correlation) and by where it ends: at the tibia, the ACL in front of the
    PCL; up in the notch (a slice through the femoral attachments only), the ACL's far back, the
    PCL's near the roof's middle. Labels point at the lower part of each ligament."""
    n = tendon.shape[0]
    win = np.zeros_like(bone)
    win[max(0, tib_top - int(35 / px)): tib_top + int(20 / px), ant + int(6 / px): min(n, post + int(6 / px))] = True
    lab, comps = _components((tendon > 0.5) & ~bone & win, 6.0 / px ** 2)
    near_tib = ndimage.binary_dilation(tib_m, iterations=max(1, int(round(4.5 / px))))
    span = max(post - ant, 1)
    found: dict[str, list] = {"ACL": [], "PCL": []}
    for i, size, _ in comps:
        m = lab == i
        feet, nf = ndimage.label(ndimage.binary_dilation(m & near_tib, iterations=1) & m)
        legs = []
        if nf >= 2:
            fc = ndimage.center_of_mass(np.ones_like(feet), feet, np.arange(1, nf + 1))
            fs = ndimage.sum(np.ones_like(feet), feet, np.arange(1, nf + 1))
            big = [k for k in range(nf) if fs[k] * px ** 2 >= 2.0]
            if len(big) >= 2:
                a = min(big, key=lambda k: fc[k][1])
                b = max(big, key=lambda k: fc[k][1])
                if (fc[b][1] - fc[a][1]) * px >= 10.0:
                    da = ndimage.distance_transform_edt(feet != a + 1)
                    db = ndimage.distance_transform_edt(feet != b + 1)
                    legs = [("ACL", m & (da <= db), size), ("PCL", m & (db < da), size)]
        if not legs:
            rr, cc = np.nonzero(m)
            corr = float(np.corrcoef(rr, cc)[0, 1]) if rr.std() > 0 and cc.std() > 0 else 0.0
            foot = m & near_tib
            if foot.sum() * px ** 2 >= 2.0:          # reaches the tibia: ACL in front, PCL behind
                pos = (np.nonzero(foot)[1].mean() - ant) / span
                score = -corr - (pos - 0.75) / 0.15
            else:                                     # the femoral ends only: ACL far back in the notch
                pos = (cc.mean() - ant) / span
                score = -corr + (pos - 0.65) / 0.15
            legs = [("ACL" if score > 0 else "PCL", m, size)]
        for name, leg, sz in legs:
            rr = np.nonzero(leg.any(1))[0]
            low = leg.copy()
            low[: rr[0] + int(0.5 * (rr[-1] - rr[0]))] = False
            found[name].append((leg.sum(), _anchor(low if low.any() else leg)))
    out = {k: max(v)[1] for k, v in found.items() if v}
    if len(out) == 2 and out["ACL"][1] >= out["PCL"][1]:
        # the ACL's lower part lies in front of the PCL's: keep the better-founded (larger) one
        del out[min(found, key=lambda k: max(found[k])[0])]
    return out


def knee_landmarks(fractions: dict, s: int) -> dict[str, tuple[float, float]]:
    """Positions ``{structure: (row, col)}`` of the named structures visible in slice ``s``.

    Found from the fractions: femur / tibia / patella are the largest bone components (most bone
    above / below the FOV centre; the remaining most anterior one); condyle or trochlea depending on
    whether a patella lies beside the femur; meniscal horns are meniscus components in front of and
    behind the tibial plateau's centre (one spanning both, a peripheral slice's bow tie, is the
    body); ACL / PCL the tendon bands between femur and tibia, told apart by course and attachment
    (:func:`_cruciates`); patellar and quadriceps tendons the tendon below / above the patella;
    Hoffa's fat pad the fat behind the patellar tendon; popliteal vessels the flow void (or the
    half-void slow-flow vein) inside the limb behind the joint; fat septa fat with muscle on both
    sides. Every position is a pixel where the named tissue dominates.
    """
    n = fractions["fat"].shape[-1]
    px = FOV_MM / n
    f = {t: v[s] for t, v in fractions.items()}
    total = sum(f.values())
    out: dict[str, tuple[float, float]] = {}
    bone = f["marrow"] + f["cortical_bone"] > 0.5
    lab, comps = _components(bone, 150.0 / px ** 2)
    if len(comps) < 2:
        return out
    upper = [(lab[: n // 2] == c[0]).sum() for c in comps]
    lower = [(lab[n // 2:] == c[0]).sum() for c in comps]
    fem, tib = comps[int(np.argmax(upper))], comps[int(np.argmax(lower))]
    if fem[0] == tib[0]:
        return out
    rest = [c for c in comps if c[0] not in (fem[0], tib[0])]
    fem_m, tib_m = lab == fem[0], lab == tib[0]
    fr_rows, tr_rows = np.where(fem_m.any(1))[0], np.where(tib_m.any(1))[0]
    tendon, fat = f["tendon"] > 0.5, f["fat"] > 0.5
    pat = min(rest, key=lambda c: c[2][1]) if rest else None
    if pat is not None and pat[2][1] < fem[2][1] - 10 / px and pat[2][0] < tr_rows[0]:
        pm = lab == pat[0]
        out["patella + cartilage"] = _anchor(pm)
        r = int(pat[2][0])
        cols = np.where(fem_m[r])[0]
        if len(cols):
            out["trochlea"] = (float(r), float(cols[0]))
        prow = np.where(pm.any(1))[0]
        below = tendon[prow[-1]: prow[-1] + int(25 / px)].copy()
        below[:, int(pat[2][1] + 12 / px):] = False                   # in front of the joint, not a cruciate
        if below.any():
            rr, cc = np.nonzero(below)
            k = len(rr) // 2
            out["patellar tendon"] = (float(rr[k] + prow[-1]), float(cc[k]))
            hoffa = f["fat"][prow[-1]: prow[-1] + int(20 / px), int(cc[k] + 4 / px): int(cc[k] + 18 / px)] > 0.8
            if hoffa.any():
                hr, hc = np.nonzero(hoffa)
                out["Hoffa's fat pad"] = _snap(fat, hr.mean() + prow[-1], hc.mean() + cc[k] + 4 / px)
        r0 = max(0, prow[0] - int(30 / px))
        above = tendon[r0: prow[0]]
        if above.any():
            rr, cc = np.nonzero(above)
            out["quadriceps tendon"] = _snap(tendon, rr.mean() + r0, cc.mean())
    else:
        low = fr_rows[-1] - int(12 / px)
        cols = np.where(fem_m[low])[0]
        if len(cols):
            out["femoral condyle"] = _snap(fem_m, low, cols.mean())
    # the plateau's AP extent: the tibia's top 15 mm (a sloped, tilted plateau is not level in the image)
    tcols = np.where(tib_m[tr_rows[0]: tr_rows[0] + int(15 / px)].any(0))[0]
    ant, post = int(tcols[0]), int(tcols[-1])
    tc = 0.5 * (ant + post)
    rp = tr_rows[0] + int(4 / px)
    cols = np.where(tib_m[rp])[0]
    if len(cols):
        out["tibial plateau"] = _snap(tib_m, rp, cols.mean())
    men_m = f["meniscus"] > 0.5
    mlab, men = _components(men_m, 6.0 / px ** 2)
    horns: dict[str, tuple] = {}
    for i, size, c in men:
        cc = np.nonzero(mlab == i)[1]
        a_share = float(np.mean(cc < tc))
        name = ("meniscus, body" if 0.25 < a_share < 0.75 else
                "meniscus, anterior horn" if a_share >= 0.75 else "meniscus, posterior horn")
        if name not in horns or size > horns[name][0]:
            horns[name] = (size, _anchor(mlab == i))
    out.update({k: v[1] for k, v in horns.items()})
    if _between_compartments(fractions["meniscus"], s):
        out.update(_cruciates(f["tendon"], bone, tib_m, int(tr_rows[0]), ant, post, px))
    # popliteal vessels: no tissue (the artery's flow void; the slow-flow vein is half void) inside
    # the limb's outline, behind the joint, where the coil's taper has not dimmed the tissue
    limb = total > 0.5
    hull = np.zeros_like(limb)
    for r in np.nonzero(limb.any(1))[0]:
        c = np.nonzero(limb[r])[0]
        hull[r, c[0]: c[-1] + 1] = True
    hull = ndimage.binary_erosion(hull, iterations=max(1, int(round(2.0 / px))))
    z = (n / 2 - 0.5 - np.arange(n)) * px
    hull &= (np.abs(z) < FADE_START_MM)[:, None] & (np.arange(n)[None, :] > tc + 10 / px)
    hull[: max(0, tr_rows[0] - int(35 / px))] = False                 # the popliteal fossa, at the joint
    hull[tr_rows[0] + int(35 / px):] = False
    vlab, vs = _components(hull & (total < 0.75), 6.0 / px ** 2)
    best = None
    for i, size, _ in vs:
        v = vlab == i
        ring = ndimage.binary_dilation(v, iterations=2) & ~v & hull
        if ring.any() and np.mean(total[ring] > 0.5) > 0.9 and (best is None or size > best[0]):
            best = (size, v)                                          # a vessel in tissue, not a notch of air
    if best is not None:
        out["popliteal vessels"] = _anchor(best[1])
    _, mus = _components(f["muscle"] > 0.5, 40.0 / px ** 2)
    if mus:
        mlab2 = ndimage.label(f["muscle"] > 0.5)[0]
        out["muscle"] = _anchor(mlab2 == max(mus, key=lambda c: c[1])[0])
        m = f["muscle"] > 0.5
        d = int(round(2.5 / px)) + 1
        sept = fat & np.roll(m, d, 1) & np.roll(m, -d, 1)
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
        if f["fat"][r, c] >= 0.5:
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
