"""Tests of the procedural knee phantom: contract (shapes, ranges, sums), determinism, and anatomy.

The anatomy tests measure the rendered tissue fractions as a reader would measure an MR image (bone
masks, extents, thickness along the surface normal, autocorrelation), against published ranges:

* cartilage thickness: Eckstein F, Cicuttini F, Raynauld JP, Waterton JC, Peterfy C (2006), "Magnetic
  resonance imaging (MRI) of articular cartilage in knee osteoarthritis (OA): morphological
  assessment", Osteoarthritis Cartilage 14 Suppl A:A46-A75; Hudelmaier M, Glaser C, Hohe J, Englmeier
  KH, Reiser M, Putz R, Eckstein F (2001), "Age-related changes in the morphology and deformational
  behavior of knee joint cartilage", Arthritis Rheum 44:2556-2561 (mean femoral / tibial cartilage
  thickness of healthy adults about 1.5-2.7 mm, patella about 2.5-3.5 mm);
* femoral condyle AP depth: Yue B, Varadarajan KM, Ai S, Tang T, Rubash HE, Li G (2011), "Differences
  of knee anthropometry between Chinese and white men and women", J Arthroplasty 26:124-130 (medial /
  lateral condyle AP about 55-70 mm across sexes and ethnicities);
* patella thickness: Baldwin JL, House CK (2005), "Anthropometric dimensions of the patella measured
  at the time of total knee arthroplasty", J Arthroplasty 20:886-890 (mean about 22-25 mm, range
  about 18-28 mm);
* posterior tibial slope on sagittal MRI: Hashemi J, Chandrashekar N, Gill B, Beynnon BD, Slauterbeck
  JR, Schutt RC, Mansouri H, Dabezies E (2008), "The geometry of the tibial plateau and its influence
  on the biomechanics of the tibiofemoral joint", J Bone Joint Surg Am 90:2724-2734 (medial about
  5 deg, lateral about 7 deg, spread about 3 deg);
* trabecular architecture: Hildebrand T, Laib A, Mueller R, Dequeker J, Rueegsegger P (1999), "Direct
  three-dimensional morphometric analysis of human cancellous bone: microstructural data from spine,
  femur, iliac crest, and calcaneus", J Bone Miner Res 14:1167-1174 (Tb.Sp ~0.6-0.9 mm, Tb.Th
  ~0.15-0.2 mm) - seen through a 1.25 mm voxel, a mottled texture correlated over ~1-2 mm.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mrtl_core.phantoms.knee import FADE_START_MM, FOV_MM, TISSUES, knee_subject, knee_tissue_slices

NS, SIZE = 11, 128          # 11 slices through the joint: index 5 is near the notch (midline)
BIG = 256                   # for thickness measurements (0.625 mm pixels)
SEEDS = (3, 4, 5, 6)


@pytest.fixture(scope="module")
def knee():
    return knee_tissue_slices(np.random.default_rng(7), NS, SIZE)


@pytest.fixture(scope="module")
def big():
    return {s: knee_tissue_slices(np.random.default_rng(s), NS, BIG) for s in SEEDS}


def _sum(fr):
    return sum(fr[t].astype(np.float64) for t in TISSUES)


def _bones(fr, s):
    """Femur, tibia and patella masks of slice ``s`` (largest components by position), or None."""
    n = fr["marrow"].shape[-1]
    lab, k = ndimage.label(fr["marrow"][s] + fr["cortical_bone"][s] > 0.5)
    if k == 0:
        return None, None, None
    idx = np.arange(1, k + 1)
    size = ndimage.sum(np.ones_like(lab), lab, idx)
    com = ndimage.center_of_mass(np.ones_like(lab), lab, idx)
    big_ = [(i, c) for i, sz, c in zip(idx, size, com) if sz * (FOV_MM / n) ** 2 > 150.0]
    if len(big_) < 2:
        return None, None, None
    upper = [(lab[: n // 2] == i).sum() for i, _ in big_]
    lower = [(lab[n // 2:] == i).sum() for i, _ in big_]
    fem = big_[int(np.argmax(upper))]                  # most bone above the FOV centre (rows: superior first)
    tib = big_[int(np.argmax(lower))]
    if fem[0] == tib[0]:
        return None, None, None
    rest = [t for t in big_ if t[0] not in (fem[0], tib[0])]
    pat = min(rest, key=lambda t: t[1][1]) if rest else None
    return lab == fem[0], lab == tib[0], (lab == pat[0]) if pat is not None else None


# ----------------------------------------------------------------------------- contract
def test_contract_shapes_dtype_keys(knee):
    assert set(knee) == set(TISSUES)
    assert set(TISSUES) == {"marrow", "cortical_bone", "cartilage", "meniscus", "fluid", "muscle", "fat",
                            "skin", "tendon"}
    for t, v in knee.items():
        assert v.shape == (NS, SIZE, SIZE), t
        assert v.dtype == np.float32, t


@pytest.mark.parametrize("size", [64, 320])
def test_other_sizes(size):
    fr = knee_tissue_slices(np.random.default_rng(1), 2, size)
    assert fr["fat"].shape == (2, size, size)
    assert _sum(fr).max() <= 1 + 1e-5
    assert fr["marrow"].sum() > 0


def test_fractions_in_range_and_sum_at_most_one(knee):
    for t, v in knee.items():
        assert np.isfinite(v).all(), t
        assert v.min() >= 0.0 and v.max() <= 1.0, t
        assert v.max() > 0.5, f"{t} never dominates a pixel"
    total = _sum(knee)
    assert total.max() <= 1 + 1e-5
    # inside the limb (and inside the coil's full-sensitivity rows) the voxel is full of tissue: air
    # only outside, plus the popliteal flow void
    z = (SIZE / 2 - 0.5 - np.arange(SIZE)) * FOV_MM / SIZE
    body = ndimage.binary_erosion(total > 0.5, iterations=3) & (np.abs(z) < FADE_START_MM)[None, :, None]
    assert np.mean(total[body] > 0.999) > 0.97
    # partial volume at edges, not binary masks
    edge = (total > 0.05) & (total < 0.95)
    assert edge.sum() > 0.3 * np.sqrt(body.sum() / NS) * NS


def test_object_inside_central_region_with_a_smooth_taper(knee):
    total = _sum(knee)
    m = int(round(0.05 * SIZE))
    border = np.ones((SIZE, SIZE), bool)
    border[m:-m, m:-m] = False
    assert total[:, border].max() == 0.0
    # ... and fills most of the field of view (the leg is ~110-130 mm of the 160 mm FOV)
    rows = np.where(total[NS // 2].max(axis=1) > 0.5)[0]
    cols = np.where(total[NS // 2].max(axis=0) > 0.5)[0]
    assert (rows[-1] - rows[0]) > 0.7 * SIZE and (cols[-1] - cols[0]) > 0.55 * SIZE
    # the limb does not end in a hard horizontal cut: down a column through the limb, the tissue
    # fraction falls from 1 to 0 over several pixels (coil / slab taper), top and bottom
    col = total[NS // 2][:, SIZE // 2]
    for half in (col[: SIZE // 2], col[SIZE // 2:][::-1]):
        ramp = np.sum((half > 0.02) & (half < 0.98))
        assert ramp * FOV_MM / SIZE >= 6.0, ramp


def test_deterministic_given_seed(knee):
    again = knee_tissue_slices(np.random.default_rng(7), NS, SIZE)
    for t in TISSUES:
        np.testing.assert_array_equal(again[t], knee[t])


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="rng"):
        knee_tissue_slices(0, 2, 64)
    with pytest.raises(ValueError, match="num_slices"):
        knee_tissue_slices(rng, 0, 64)
    with pytest.raises(ValueError, match="size"):
        knee_tissue_slices(rng, 2, 8)
    with pytest.raises(ValueError, match="num_slices"):
        knee_tissue_slices(rng, 2.5, 64)


# ----------------------------------------------------------------------------- anatomy
def test_midline_slice_has_femur_tibia_and_the_most_anterior_patella_with_posterior_cartilage(big):
    px = FOV_MM / BIG
    for seed, fr in big.items():
        s = NS // 2
        fem, tib, pat = _bones(fr, s)
        assert fem is not None and pat is not None, seed
        cols = np.arange(BIG)
        pc = cols[pat.any(axis=0)].mean()
        assert pc < cols[fem.any(axis=0)].min() + 10, seed               # patella in front of the femur
        assert pc < cols[tib.any(axis=0)].mean(), seed
        # patellar cartilage: on the posterior (articular) face, not the anterior one
        near = ndimage.binary_dilation(pat, iterations=int(round(4.0 / px))) & ~pat
        cart = (fr["cartilage"][s] > 0.5) & near
        rows_p = np.where(pat.any(axis=1))[0]
        mid = slice(rows_p[0] + len(rows_p) // 4, rows_p[-1] - len(rows_p) // 4)
        post = ant = 0
        for r in range(mid.start, mid.stop):
            c = np.where(pat[r])[0]
            post += cart[r, c[-1] + 1:].sum()
            ant += cart[r, : c[0]].sum()
        assert post * px > 0.5 * (mid.stop - mid.start) * px * 1.5, (seed, post)   # >= 1.5 mm on average
        assert ant < 0.1 * post, seed


def test_patella_thickness_in_published_range(big):
    """Patellar AP thickness 18-28 mm (Baldwin & House 2005, J Arthroplasty 20:886)."""
    px = FOV_MM / BIG
    th = []
    for fr in big.values():
        best = 0.0
        for s in range(NS):
            _, _, pat = _bones(fr, s)
            if pat is not None:
                best = max(best, pat.sum(axis=1).max() * px)
        th.append(best)
    assert all(17.0 <= t <= 28.0 for t in th), th


def _compartments(fr):
    """Indices of the two compartment slices (the series spans the joint: slices 2 and NS - 3 cut the
    medial and lateral condyles, about 20 mm from the midline)."""
    return 2, NS - 3


def test_menisci_in_the_compartments_not_at_the_notch(big):
    px2 = (FOV_MM / BIG) ** 2
    for seed, fr in big.items():
        men = fr["meniscus"].sum(axis=(1, 2)) * px2                       # mm^2 per slice
        a, b = _compartments(fr)
        assert men[a] > 40 and men[b] > 40, (seed, men)
        assert men[NS // 2] < 0.15 * min(men[a], men[b]), (seed, men)
        # two wedges (anterior and posterior horn) in a compartment slice, each pointing at the joint
        for s in (a, b):
            lab, k = ndimage.label(fr["meniscus"][s] > 0.5)
            sizes = ndimage.sum(np.ones_like(lab), lab, np.arange(1, k + 1)) * px2
            assert (sizes > 8.0).sum() >= 2, (seed, s, sizes)


def _joint_window(fr, s):
    """Rows between the femur's lowest and the tibia's highest bone and the tibia's AP extent."""
    fem, tib, _ = _bones(fr, s)
    cols = np.where(tib.any(axis=0))[0]
    r0 = np.where(fem.any(axis=1))[0][-1]
    r1 = np.where(tib.any(axis=1))[0][0]
    return fem, tib, r0, r1, cols


def test_cruciates_between_the_compartments(big):
    px, px2 = FOV_MM / BIG, (FOV_MM / BIG) ** 2
    for seed, fr in big.items():
        a, b = _compartments(fr)

        def cruciate_area(s):
            fem, tib, r0, r1, cols = _joint_window(fr, s)
            top = min(r0, r1) - int(35 / px)
            bot = max(r0, r1) + int(5 / px)
            c0, c1 = cols[0] + int(10 / px), cols[-1]               # behind the patellar tendon
            return fr["tendon"][s][top:bot, c0:c1].sum() * px2

        mid = max(cruciate_area(s) for s in range(NS // 2 - 1, NS // 2 + 2))
        assert mid > 80.0, (seed, mid)                                 # ACL + PCL bands, mm^2
        assert cruciate_area(a) < 0.35 * mid and cruciate_area(b) < 0.35 * mid, seed


def test_tibiofemoral_cartilage_thickness(big):
    """Femoral + tibial cartilage, measured along the vertical (the surface normal at the weight-bearing
    zone), 1.5-3.0 mm per plate on average (Eckstein et al. 2006; Hudelmaier et al. 2001)."""
    px = FOV_MM / BIG
    for seed, fr in big.items():
        for s in _compartments(fr):
            fem, tib, r0, r1, cols = _joint_window(fr, s)
            n = len(cols)
            th = []
            for c in cols[int(0.35 * n): int(0.65 * n)]:
                f_low = np.where(fem[:, c])[0]
                t_top = np.where(tib[:, c])[0]
                if len(f_low) == 0 or len(t_top) == 0:
                    continue
                seg = fr["cartilage"][s][f_low[-1] + 1: t_top[0], c]
                th.append(seg.sum() * px / 2.0)
            assert len(th) > 10, seed
            assert 1.5 <= np.mean(th) <= 3.0, (seed, s, np.mean(th))


def test_femoral_condyle_ap_depth(big):
    """AP depth of the femoral condyles 55-70 mm (Yue et al. 2011, J Arthroplasty 26:124)."""
    px = FOV_MM / BIG
    for seed, fr in big.items():
        for s in _compartments(fr):
            fem, *_ = _bones(fr, s)
            rows = np.where(fem.any(axis=1))[0]
            low = fem[max(rows[0], rows[-1] - int(45 / px)): rows[-1] + 1]
            cols = np.where(low.any(axis=0))[0]
            depth = (cols[-1] - cols[0] + 1) * px
            assert 52.0 <= depth <= 72.0, (seed, s, depth)


def _fit_angle(x, y):
    return np.degrees(np.arctan(np.polyfit(x, y, 1)[0]))


def test_posterior_tibial_slope(big):
    """The plateau falls posteriorly by 5-10 deg against the tibia's axis (Hashemi et al. 2008; our
    tolerance 3-12 deg for a line fitted across a concave medial / convex lateral plateau). The FOV shows
    too little shaft to fit the axis (it is drawn 40-60 mm long on MRI, Hudek R et al. 2009, Clin Orthop
    Relat Res 467:2066-2072), so the leg's in-plane tilt is taken from the subject's pose, and the
    plateau line is measured on the image."""
    for seed, fr in big.items():
        tilt = knee_subject(np.random.default_rng(seed))["tilt_deg"]   # in-plane rotation of the leg
        slopes = []
        for s in _compartments(fr):
            _, tib, _, _, cols = _joint_window(fr, s)
            n = len(cols)
            cs = cols[int(0.25 * n): int(0.75 * n)]
            tops = [np.where(tib[:, c])[0][0] for c in cs]
            slopes.append(_fit_angle(cs, tops) + tilt)               # + : lower (larger row) posteriorly
        assert 3.0 <= np.mean(slopes) <= 12.0, (seed, slopes)
        assert min(slopes) > 0.0, (seed, slopes)


def test_marrow_texture_correlation_length():
    """Trabecular texture seen through the voxel (Tb.Sp ~0.65 mm, Tb.Th ~0.19 mm, Hildebrand et al. 1999):
    at 1.25 mm pixels a mottled partial-volume texture with an autocorrelation half-width of ~1-2 mm;
    at 0.625 mm the trabeculae begin to resolve (half-width near 0.6 mm); never white pixel noise
    (half-width ~0.5 px)."""
    for size, lo, hi in ((128, 0.9, 2.0), (256, 0.4, 1.5)):
        px = FOV_MM / size
        fr = knee_tissue_slices(np.random.default_rng(11), 5, size)
        hw = []
        for s in range(5):
            m = fr["marrow"][s].astype(np.float64)
            core = ndimage.binary_erosion(m > 0.3, iterations=max(3, int(6 / px)))
            if core.sum() < 200:
                continue
            a = m - ndimage.gaussian_filter(m, 3.0 / px)             # remove the slow epiphysis -> shaft trend
            a = np.where(core, a - a[core].mean(), 0.0)
            corr = []
            for lag in range(0, int(6 / px) + 1):
                both = core[:, lag:] & core[:, : core.shape[1] - lag]
                v = (a[:, lag:] * a[:, : a.shape[1] - lag])[both].mean()
                both2 = core[lag:, :] & core[: core.shape[0] - lag, :]
                v2 = (a[lag:, :] * a[: a.shape[0] - lag, :])[both2].mean()
                corr.append(0.5 * (v + v2))
            corr = np.array(corr) / corr[0]
            i = int(np.argmax(corr < 0.5))
            hw.append((i - 1 + (corr[i - 1] - 0.5) / (corr[i - 1] - corr[i])) * px)
        hw = float(np.median(hw))
        assert lo <= hw <= hi, (size, hw)
        assert hw >= 0.75 * px, (size, hw)                           # wider than white noise (~0.5 px)
        assert fr["marrow"][fr["marrow"] > 0.3].std() > 0.02


def test_marrow_is_enclosed_by_cortical_bone():
    fr = knee_tissue_slices(np.random.default_rng(3), 5, 256)
    soft = sum(fr[t] for t in ("fat", "muscle", "fluid", "cartilage", "meniscus", "tendon", "skin")) > 0.5
    marrow = fr["marrow"] > 0.5
    assert marrow.sum() > 1000
    near_soft = ndimage.binary_dilation(soft, structure=np.ones((1, 3, 3), bool))
    assert not (near_soft & marrow).any()


def test_limb_outline_is_curved_and_tapering(big):
    px = FOV_MM / BIG
    z = (BIG / 2 - 0.5 - np.arange(BIG)) * px
    rows = np.where(np.abs(z) < FADE_START_MM - 2)[0]
    for seed, fr in big.items():
        tot = _sum(fr)[NS // 2] > 0.5
        ant = np.array([np.where(tot[r])[0][0] for r in rows]) * px
        post = np.array([np.where(tot[r])[0][-1] for r in rows]) * px
        width = post - ant
        assert (width.max() - width.min()) / width.mean() > 0.12, seed    # not a rectangle
        for edge in (ant, post):                                          # not straight either
            res = edge - np.polyval(np.polyfit(rows, edge, 1), rows)
            assert np.sqrt(np.mean(res ** 2)) > 1.0, seed
        # the popliteal fossa: the posterior outline is concave (less posterior near the joint than
        # the thigh above and the calf below), beyond the linear tilt of the leg in the FOV
        c2 = np.polyfit((rows - rows.mean()) * px, post, 2)[0]
        assert c2 * (0.5 * len(rows) * px) ** 2 > 2.0, (seed, c2)


def test_subjects_differ_in_bone_outline_and_flexion(knee, big):
    other = knee_tissue_slices(np.random.default_rng(8), NS, SIZE)
    diff = np.mean([np.abs(other[t] - knee[t]).mean() for t in TISSUES])
    assert diff > 0.01
    bone_a = knee["marrow"] + knee["cortical_bone"]
    bone_b = other["marrow"] + other["cortical_bone"]
    assert np.abs(bone_a - bone_b).mean() > 0.01
    # flexion: angle between the femoral and tibial shaft axes in the midline slice
    px = FOV_MM / BIG
    ang = []
    for fr in big.values():
        fem, tib, r0, r1, _ = _joint_window(fr, NS // 2)
        z = (BIG / 2 - 0.5 - np.arange(BIG)) * px
        ok = np.where(fem.any(axis=1) & (np.abs(z) < FADE_START_MM - 2))[0]
        rf = ok[ok < ok[0] + int(25 / px)]
        ok = np.where(tib.any(axis=1) & (np.abs(z) < FADE_START_MM - 2))[0]
        rt = ok[ok > r1 + int(15 / px)]
        af = _fit_angle(rf, [np.where(fem[r])[0].mean() for r in rf])
        at = _fit_angle(rt, [np.where(tib[r])[0].mean() for r in rt])
        ang.append(af - at)
    assert np.ptp(ang) > 4.0, ang


def test_fluid_muscle_fat_and_skin_everywhere(knee):
    for t in ("fat", "muscle", "skin"):
        assert (knee[t].sum(axis=(1, 2)) > 10).all(), t
    assert knee["fluid"].sum() > 10


def test_gallery_landmarks_name_the_structures_where_anatomy_puts_them():
    from mrtl_core.gallery import knee_landmarks

    fr = knee_tissue_slices(np.random.default_rng(0), NS, SIZE)
    comp = knee_landmarks(fr, 2)
    mid = {**knee_landmarks(fr, NS // 2 - 1), **knee_landmarks(fr, NS // 2)}
    assert "femoral condyle" in comp and any(k.startswith("meniscus") for k in comp), sorted(comp)
    assert {"patella + cartilage", "trochlea", "patellar tendon", "tibial plateau"} <= set(mid), sorted(mid)
    assert "ACL" in mid and "PCL" in mid, sorted(mid)
    assert not any(k.startswith("meniscus") for k in knee_landmarks(fr, NS // 2)), "menisci at the notch"
    for r, c in {**comp, **mid}.values():
        assert 0 <= r < SIZE and 0 <= c < SIZE


_LABEL_TISSUE = {"femoral condyle": "bone", "trochlea": "bone", "tibial plateau": "bone",
                 "patella + cartilage": "bone", "ACL": "tendon", "PCL": "tendon", "patellar tendon": "tendon",
                 "quadriceps tendon": "tendon", "Hoffa's fat pad": "fat", "subcutaneous fat": "fat",
                 "fat septum": "fat", "muscle": "muscle", "popliteal vessels": "void"}


@pytest.mark.parametrize("size", [SIZE, 256])
def test_gallery_labels_point_at_their_structures(size):
    """Every label sits on a pixel where its tissue dominates (vessels: a flow void or the half-void
    vein); ACL and PCL are told apart, the ACL's lower part in front of the PCL's; menisci are named
    by the side of the plateau they lie on; the popliteal vessels are found wherever the slice cuts
    them behind the joint."""
    from mrtl_core.gallery import knee_landmarks

    px = FOV_MM / size
    for seed in (0, 1, 2):
        fr = knee_tissue_slices(np.random.default_rng(seed), NS, size)
        both = vessels = cuts = 0
        for s in range(NS):
            lm = knee_landmarks(fr, s)
            f = {t: v[s] for t, v in fr.items()}
            total = _sum(fr)[s]
            assert "cruciate ligament" not in lm
            for name, (r, c) in lm.items():
                r, c = int(r), int(c)
                kind = _LABEL_TISSUE.get(name, "meniscus" if name.startswith("meniscus") else None)
                assert kind is not None, name
                ok = {"bone": f["marrow"][r, c] + f["cortical_bone"][r, c] > 0.5,
                      "void": total[r, c] < 0.75}.get(kind)
                ok = f[kind][r, c] > 0.5 if ok is None else ok
                assert ok, (seed, s, name, (r, c))
            if "ACL" in lm and "PCL" in lm:
                both += 1
                assert lm["ACL"][1] < lm["PCL"][1], (seed, s, lm["ACL"], lm["PCL"])
                assert np.hypot(*np.subtract(lm["ACL"], lm["PCL"])) * px > 4.0, (seed, s)
            fem, tib, _ = _bones(fr, s)
            cols = np.where(tib[np.where(tib.any(axis=1))[0][0]:][: int(15 / px)].any(axis=0))[0]
            centre = 0.5 * (cols[0] + cols[-1])
            for name, (r, c) in lm.items():
                if name == "meniscus, anterior horn":
                    assert c < centre, (seed, s, name)
                if name == "meniscus, posterior horn":
                    assert c > centre, (seed, s, name)
            # ground truth: a sizeable void in the tissue behind the plateau near the joint line
            r1 = np.where(tib.any(axis=1))[0][0]
            band = slice(max(0, r1 - int(20 / px)), r1 + int(20 / px))
            inner = ndimage.binary_fill_holes(ndimage.binary_closing(total > 0.5, iterations=int(6 / px)))
            void = inner & (total < 0.5)
            void[:, : int(centre + 10 / px)] = False
            if void[band].sum() * px * px > 10.0:
                cuts += 1
                vessels += "popliteal vessels" in lm
        assert both >= 1, seed
        assert cuts >= 1 and vessels == cuts, (seed, cuts, vessels)


def test_knee_subject_reports_the_drawn_parameters():
    a = knee_subject(np.random.default_rng(3))
    assert a == knee_subject(np.random.default_rng(3))
    assert 5.0 <= a["tibial_slope_deg"] <= 10.0 and 0.0 <= a["flexion_deg"] <= 20.0
    assert a != knee_subject(np.random.default_rng(4))
    with pytest.raises(TypeError, match="rng"):
        knee_subject(3)
