"""Tests for the synthetic scanners (mrtl_core.simulate, mrtl_core.phantoms.brain).

Small sizes (64 x 64, a few slices) keep the file at a few seconds; the first brain loads nilearn's
template (~3 s), shared by a module-scoped cache.
"""
from __future__ import annotations

import numpy as np
import pytest

from mrtl_core import simulate as sim
from mrtl_core.fft import fft2c_np, ifft2c_np

SIZE = 64


@pytest.fixture(scope="module")
def brains():
    return {d: sim.simulate_subject(d, 1, 3, SIZE) for d in ("brain-1.5T", "brain-3T")}


def _se_signal(pd, t1, t2, tr, te):
    """Spin-echo signal equation, written independently of the library (float64)."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def _rss(subject):
    n = subject.kspace.shape[-1]
    coil = ifft2c_np(subject.kspace.astype(np.complex128))[:, :, n // 2: n // 2 + n]
    return np.sqrt(np.sum(np.abs(coil) ** 2, axis=1))


def test_shapes_dtypes_and_metadata(brains):
    for name, s in brains.items():
        dom = sim.get_domain(name)
        assert s.kspace.shape == (3, dom.num_coils, 2 * SIZE, SIZE)
        assert s.kspace.dtype == np.complex64 and s.sens_maps.dtype == np.complex64
        assert s.sens_maps.shape == s.kspace.shape
        assert s.field_strength_T == dom.field_strength_T and s.domain == name
        assert len(s.fov_mm) == 3 and s.protocol["sequence"] == "TSE"
    assert brains["brain-1.5T"].kspace.shape[1] == 8 and brains["brain-3T"].kspace.shape[1] == 16
    assert set(sim.DOMAINS) >= {"brain-1.5T", "brain-3T", "knee-1.5T"}


def test_deterministic_and_subjects_differ(brains):
    again = sim.simulate_subject("brain-1.5T", 1, 3, SIZE)
    np.testing.assert_array_equal(again.kspace, brains["brain-1.5T"].kspace)
    np.testing.assert_array_equal(again.sens_maps, brains["brain-1.5T"].sens_maps)
    other = sim.simulate_subject("brain-1.5T", 2, 3, SIZE)
    assert not np.allclose(other.fractions["grey_matter"], again.fractions["grey_matter"], atol=0.05)
    assert other.patient_id != again.patient_id
    # the 3 T domain scans other people: the same index gives a different anatomy
    assert not np.allclose(brains["brain-3T"].fractions["grey_matter"], again.fractions["grey_matter"], atol=0.05)
    # a different dataset seed gives different subjects too
    seeded = sim.simulate_subject("brain-1.5T", 1, 3, SIZE, seed=7)
    assert not np.allclose(seeded.fractions["white_matter"], again.fractions["white_matter"], atol=0.05)


def test_seed_is_stable_across_processes():
    ss = sim.subject_seed_sequence("brain-1.5T", 3, 0)
    # CRC-32 of the name, not Python's salted hash(): a fixed, known number
    assert list(ss.entropy) == [0, 0x557ED891, 3]


def test_tissue_fractions_are_partial_volumes(brains):
    for s in brains.values():
        total = sum(s.fractions.values())
        for name, f in s.fractions.items():
            assert f.shape == (3, SIZE, SIZE) and f.dtype == np.float32, name
            assert f.min() >= 0.0 and f.max() <= 1.0, name
        assert total.max() <= 1.0 + 1e-5
        # the object sits inside the central part of the FOV: the border rows/columns are air
        edge = np.concatenate([total[:, :3].ravel(), total[:, -3:].ravel(), total[:, :, :3].ravel(), total[:, :, -3:].ravel()])
        assert edge.max() < 1e-3


def test_fat_ring_surrounds_the_brain(brains):
    f = brains["brain-1.5T"].fractions
    fat, brain = f["fat"][1], f["grey_matter"][1] + f["white_matter"][1]
    assert fat.sum() > 20
    assert brain[fat > 0.5].max() == 0.0  # fat lies outside the brain
    # walking out from the centre in each of 4 directions meets brain, then bone, then fat
    c = SIZE // 2
    for ray_fat, ray_bone in (
        (fat[c, c:], f["cortical_bone"][1][c, c:]), (fat[c, c::-1], f["cortical_bone"][1][c, c::-1]),
        (fat[c:, c], f["cortical_bone"][1][c:, c]), (fat[c::-1, c], f["cortical_bone"][1][c::-1, c]),
    ):
        assert ray_fat.max() > 0.3 and ray_bone.max() > 0.3
        assert np.argmax(ray_bone > 0.3) < np.argmax(ray_fat > 0.3)


def test_grey_white_contrast_follows_signal_equation(brains):
    """Pure GM / WM pixels of the noise-free image, with B1+ and receive shading divided out, equal the
    spin-echo equation of the subject's (jittered) tissue parameters, at both fields."""
    for name, s in brains.items():
        tr, te = s.protocol["TR"], s.protocol["TE"]
        n = SIZE
        image = np.abs(s.image[:, n // 2: n // 2 + n])
        shading = (np.sin(0.5 * np.pi * s.b1_ratio) ** 3 * s.bias)[:, n // 2: n // 2 + n]
        corrected = image / shading
        # inside the brain (no fat, bone, ...): a partial-volume mix of GM, WM and CSF
        brain_only = ("grey_matter", "white_matter", "csf")
        others = sum(f for t, f in s.fractions.items() if t not in brain_only)
        region = (others < 1e-6) & (s.fractions["white_matter"] + s.fractions["grey_matter"] > 0.5)
        assert region.sum() > 50, name
        expected = sum(s.fractions[t] * _se_signal(*s.tissue_params[t], tr, te) for t in brain_only)
        np.testing.assert_allclose(corrected[region], expected[region], rtol=2e-3)
        # the tissue with the larger fraction decides: GM-dominated pixels are brighter
        gm_pix = region & (s.fractions["grey_matter"] > 0.8)
        wm_pix = region & (s.fractions["white_matter"] > 0.8)
        assert corrected[gm_pix].mean() > 1.3 * corrected[wm_pix].mean()
        ratio = _se_signal(*s.tissue_params["grey_matter"], tr, te) / _se_signal(*s.tissue_params["white_matter"], tr, te)
        assert 1.35 < ratio < 1.9, (name, ratio)  # T2 weighting: GM clearly brighter than WM at both fields
    # the nominal table: visible GM/WM contrast at both fields, CSF brightest, bone dark
    for field in (1.5, 3.0):
        gm, wm, csf = (sim.tissue_signal(t, sim.BRAIN_PROTOCOL, field) for t in ("grey_matter", "white_matter", "csf"))
        assert gm / wm > 1.4 and csf > gm
        assert sim.tissue_signal("cortical_bone", sim.BRAIN_PROTOCOL, field) < 1e-3


def test_prototype_protocol_had_no_contrast_at_1p5T():
    """A prototype's protocol: TR 500 / TE 15 spin echo gives GM ~ WM at 1.5 T with literature values."""
    se = sim.Protocol("T1SE", "SE", TR=500.0, TE=15.0)
    gm, wm = (sim.tissue_signal(t, se, 1.5) for t in ("grey_matter", "white_matter"))
    assert abs(gm / wm - 1.0) < 0.03
    pd, t1, t2 = sim.TISSUES["white_matter"].at(1.5)
    assert wm == pytest.approx(_se_signal(pd, t1, t2, 500.0, 15.0))


def test_kspace_is_fft_of_coil_images_plus_white_noise(brains):
    s = brains["brain-1.5T"]
    residual = s.kspace - fft2c_np(s.sens_maps.astype(np.complex128) * s.image[:, None])
    assert residual.std() == pytest.approx(s.noise_std, rel=0.03)
    assert abs(residual.mean()) < 0.05 * s.noise_std
    assert np.std(residual.real) == pytest.approx(np.std(residual.imag), rel=0.05)


def test_snr_higher_at_3T(brains):
    snr = {}
    for name, s in brains.items():
        n = SIZE
        # the oversampled readout rows outside the anatomy hold air: per-coil noise only
        coil = ifft2c_np(s.kspace.astype(np.complex128))
        air = coil[:, :, : n // 4]
        sigma = np.sqrt(np.mean(np.abs(air) ** 2))
        assert sigma == pytest.approx(s.noise_std, rel=0.05)
        wm = s.fractions["white_matter"] > 0.99
        snr[name] = _rss(s)[wm].mean() / sigma
    assert 20 < snr["brain-1.5T"] < 45
    assert 1.5 < snr["brain-3T"] / snr["brain-1.5T"] < 2.2


def test_coil_maps_normalised_and_smooth(brains):
    for s in brains.values():
        n = SIZE
        obj = sum(s.fractions.values()) > 0.5
        power = np.sum(np.abs(s.sens_maps[:, :, n // 2: n // 2 + n]) ** 2, axis=1)
        np.testing.assert_allclose(power[obj], 1.0, atol=1e-4)
        # smooth: neighbouring pixels differ little
        step = np.abs(np.diff(s.sens_maps[:, :, n // 2: n // 2 + n], axis=-1))
        assert np.percentile(step.transpose(1, 0, 2, 3)[:, obj[:, :, 1:]], 99) < 0.1


def _rectangular_loops(num_coils: int, radius: float, height: float, per_side: int = 6):
    """Reference geometry, one ring: ``num_coils`` rectangular loops on a cylinder of ``radius`` (axis z),
    each ``height`` tall and 1.15x its share of the circumference wide (overlapping, as decoupled
    arrays), every side cut into ``per_side`` straight segments. Midpoints and vectors ``(C, 4 per_side, 3)``."""
    t = np.arange(per_side) / per_side
    mids, vecs = [], []
    for k in range(num_coils):
        centre, half = 2 * np.pi * k / num_coils, 1.15 * np.pi / num_coils
        a, b, z0, z1 = centre - half, centre + half, -height / 2, height / 2
        # corners of the closed path (angle, z): bottom a->b, side up at b, top b->a, side down at a
        phi = np.concatenate([a + (b - a) * t, np.full(per_side, b), b + (a - b) * t, np.full(per_side, a), [a]])
        z = np.concatenate([np.full(per_side, z0), z0 + (z1 - z0) * t, np.full(per_side, z1), z1 + (z0 - z1) * t, [z0]])
        corners = np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=-1)
        mids.append((corners[1:] + corners[:-1]) / 2)
        vecs.append(np.diff(corners, axis=0))
    return np.array(mids), np.array(vecs)


def test_biot_savart_against_direct_sum():
    """The GEMM-expanded Biot-Savart equals a direct float64 cross-product sum over the loops' segments."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(-60, 60, size=(50, 3))
    radius, height = 120.0, 100.0
    got = sim.coil_sensitivities(pts, 8, 1, radius, height, ring_gap=0.0)
    mids, vecs = _rectangular_loops(8, radius, height)
    ref = np.empty((8, 50), dtype=np.complex128)
    for c in range(8):
        r = pts[:, None, :] - mids[c][None]
        r3 = (np.sum(r * r, axis=-1) + (0.05 * radius) ** 2) ** 1.5
        b = np.sum(np.cross(vecs[c][None], r) / r3[..., None], axis=1)
        ref[c] = (b[:, 0] - 1j * b[:, 1]) * radius
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-5 * np.abs(ref).max())


def test_b1_inhomogeneity_stronger_at_3T(brains):
    spread = {}
    for name, s in brains.items():
        n = SIZE
        obj = sum(s.fractions.values()) > 0.5
        b1 = s.b1_ratio[:, n // 2: n // 2 + n][obj]
        spread[name] = b1.max() - b1.min()
    assert spread["brain-3T"] > 2 * spread["brain-1.5T"]
    assert sim.b1_signal_factor(1.0) == pytest.approx(1.0)
    assert sim.b1_signal_factor(1.2) == pytest.approx(np.sin(0.6 * np.pi) ** 3)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown domain"):
        sim.simulate_subject("brain-7T", 0, 1, SIZE)
    with pytest.raises(ValueError, match="size"):
        sim.simulate_subject("brain-1.5T", 0, 1, 63)
    with pytest.raises(ValueError, match="num_slices"):
        sim.simulate_subject("brain-1.5T", 0, 0, SIZE)
    with pytest.raises(ValueError, match="TE"):
        sim.Protocol("X", "SE", TR=10.0, TE=20.0)


def test_knee_domain():
    pytest.importorskip("mrtl_core.phantoms.knee")
    s = sim.simulate_subject("knee-1.5T", 0, 2, SIZE)
    assert s.kspace.shape == (2, 8, 2 * SIZE, SIZE) and s.kspace.dtype == np.complex64
    assert np.isfinite(s.kspace).all()
    total = sum(s.fractions.values())
    assert total.max() <= 1.0 + 1e-5 and s.fractions["cartilage"].sum() > 0
    # PD-weighted: fat and fluid bright, cartilage intermediate, meniscus dark
    sig = {t: sim.tissue_signal(t, sim.KNEE_PROTOCOL, 1.5) for t in ("fat", "fluid", "cartilage", "meniscus", "muscle")}
    assert sig["fat"] > sig["cartilage"] > sig["meniscus"] and sig["fluid"] > sig["cartilage"]


@pytest.mark.parametrize("anatomy", ["brain", "knee"])
def test_b1_ratio_within_measured_ranges(anatomy):
    """Relative B1+ inside the object: ~0.9-1.1 at 1.5 T, ~0.7-1.3 at 3 T (body-coil measurements);
    a random subject tilt once drove the 3 T brain down to r ~ 0.25 (90 % spin-echo signal loss)."""
    n, limits, spread = 32, {1.5: (0.9, 1.1), 3.0: (0.7, 1.3)}, {}
    for field in (1.5, 3.0):
        name = f"{anatomy}-{field:g}T"
        lo, hi, widths = np.inf, -np.inf, []
        for i in range(8):
            s = sim.simulate_subject(name, i, 2, n)
            obj = sum(s.fractions.values()) > 0.5
            b1 = s.b1_ratio[:, n // 2: n // 2 + n][obj]
            lo, hi = min(lo, b1.min()), max(hi, b1.max())
            widths.append(b1.max() - b1.min())
        assert limits[field][0] <= lo and hi <= limits[field][1], (name, lo, hi)
        spread[field] = float(np.median(widths))
    assert lo < 0.85 and hi > 1.05          # 3 T keeps its centre brightening and dark periphery
    assert spread[3.0] > 2.0 * spread[1.5], spread


def _sense_g_factor(sens: np.ndarray, accel: int) -> np.ndarray:
    """Exact SENSE g-factor (H, W) of maps (C, H, W) for equispaced 1-D under-sampling of the
    columns (phase encode), no ACS: per aliased pixel set, g_p = sqrt([(S^H S)^-1]_pp [S^H S]_pp)."""
    c, h, w = sens.shape
    step = w // accel
    g = np.empty((h, w))
    for j in range(step):
        cols = j + step * np.arange(accel)
        a = np.moveaxis(sens[:, :, cols].astype(np.complex128), 0, 1)      # (H, C, R)
        m = np.conj(np.swapaxes(a, 1, 2)) @ a                               # (H, R, R)
        inv = np.linalg.inv(m)
        g[:, cols] = np.sqrt(np.einsum("hii->hi", inv).real * np.einsum("hii->hi", m).real)
    return g


def test_sense_g_factor_at_R4_matches_real_head_arrays(brains):
    """Loops close to the head: mean g at R = 4 like real arrays (~1.2-2.5), 16 channels below 8."""
    means = {}
    for name, sub in brains.items():
        g = _sense_g_factor(sub.sens_maps[0], 4)
        inside = np.zeros(g.shape, dtype=bool)
        inside[SIZE // 2: SIZE // 2 + SIZE] = sum(sub.fractions.values())[0] > 0.5
        assert g[inside].min() > 1.0 - 1e-6                                 # g >= 1 by Cauchy-Schwarz
        means[name] = float(g[inside].mean())
    assert means["brain-1.5T"] < 3.0, means
    assert means["brain-3T"] < means["brain-1.5T"], means
