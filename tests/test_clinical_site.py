"""Clinical scanner sites (``brain-1.5T-clinical``, ``brain-3T-clinical``): each factor of their physics
against an independent computation.

References are written here, not taken from the code under test: closed-form spin echoes and an
isochromat (Bloch) simulation for the EPG, an explicit NumPy FFT along phase encoding for the echo-train
blur, the voxel law with the protocol numbers typed in, the centroid of a fat blob for the chemical
shift, the sample covariance of the noise for the coil noise covariance, and the site-free pipeline
for the site with every factor off. Small matrices (32-48) and few slices keep the file fast.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mrtl_core import data, domains, simulate
from mrtl_core.epg import cpmg_echoes
from mrtl_core.simulate import CLINICAL_1P5T, CLINICAL_3T, DOMAINS, SITE_FACTORS, echo_of_line

SITES = ("brain-1.5T-clinical", "brain-3T-clinical")


def _fft_cols(x, inverse=False):
    """Centred orthonormal FFT along the last axis in float64 NumPy (DC at index W // 2)."""
    f = np.fft.ifft if inverse else np.fft.fft
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=-1), axis=-1, norm="ortho"), axes=-1)


def _fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _with_factors(name, *factors):
    dom = DOMAINS[name]
    return dataclasses.replace(dom, site=dom.site.only(*factors))


@dataclasses.dataclass(frozen=True)
class _Phantom(simulate.Domain):
    """A brain-site domain whose anatomy is one tissue: a Gaussian blob (smooth, for centroids) or a
    sharp-edged disc (rich in high spatial frequencies, for the blur)."""

    tissue: str = "fat"
    shape: str = "blob"

    @property
    def tissue_slices(self):
        def slices(rng, num_slices, size):
            pixel = self.fov_mm / size
            c = (np.arange(size) - (size - 1) / 2) * pixel
            rows, cols = np.meshgrid(c, c, indexing="ij")
            if self.shape == "blob":
                f = np.exp(-((rows - 20.0) ** 2 + (cols + 10.0) ** 2) / (2 * 12.0 ** 2))
            else:
                f = (((rows / 70.0) ** 2 + (cols / 55.0) ** 2) < 1).astype(float)
            return {self.tissue: np.broadcast_to(f, (num_slices, size, size)).astype(np.float32)}
        return slices


def _phantom(name, tissue, shape, *factors):
    base = _with_factors(name, *factors)
    return _Phantom(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, tissue=tissue, shape=shape)


# ------------------------------------------------------------------------------------------ EPG


def _isochromat_cpmg(t1, t2, esp, alpha_deg, n, spins=256):
    """CPMG train by Bloch rotations of ``spins`` isochromats dephased uniformly over 2 pi per half
    spacing, with T1 regrowth toward equilibrium; returns the mean x magnetisation at each echo."""
    theta = 2 * np.pi * np.arange(spins) / spins
    m = np.zeros((3, spins))
    m[0] = 1.0                                           # after 90_y: along x
    e1, e2 = np.exp(-esp / 2 / t1), np.exp(-esp / 2 / t2)
    a = np.deg2rad(alpha_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])

    def precess(m):
        x = np.cos(theta) * m[0] - np.sin(theta) * m[1]
        y = np.sin(theta) * m[0] + np.cos(theta) * m[1]
        return np.stack([x * e2, y * e2, m[2] * e1 + (1 - e1)])

    out = []
    for _ in range(n):
        m = precess(rot_x @ precess(m))
        out.append(m[0].mean())
    return np.array(out)


@pytest.mark.parametrize("t1, t2", [(646, 80), (1331, 76), (4000, 1900), (350, 105)])
def test_epg_at_180_is_the_spin_echo_decay(t1, t2):
    n = np.arange(1, 17)
    np.testing.assert_allclose(cpmg_echoes(t1, t2, 10.0, 180.0, 16), np.exp(-n * 10.0 / t2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha", [120.0, 140.0, 150.0, 160.0])
@pytest.mark.parametrize("t1, t2", [(832, 71), (1331, 76), (4200, 1800), (370, 120)])
def test_epg_matches_an_isochromat_simulation(alpha, t1, t2):
    np.testing.assert_allclose(cpmg_echoes(t1, t2, 10.0, alpha, 16), _isochromat_cpmg(t1, t2, 10.0, alpha, 16),
                               atol=1e-3)
    # the stimulated echoes make a reduced-angle train differ from the spin-echo decay
    assert np.abs(cpmg_echoes(t1, t2, 10.0, alpha, 16) - np.exp(-np.arange(1, 17) * 10.0 / t2)).max() > 0.01


def test_epg_first_echo_and_batches():
    alphas = np.array([90.0, 120.0, 140.0, 150.0])
    echoes = cpmg_echoes(1e12, 1e12, 10.0, alphas, 4)
    np.testing.assert_allclose(echoes[:, 0], np.sin(np.deg2rad(alphas) / 2) ** 2, atol=1e-9)
    # vectorised over tissues x angles equals one call per pair
    t1, t2 = np.array([646.0, 1197.0]), np.array([80.0, 87.0])
    batch = cpmg_echoes(t1[:, None], t2[:, None], 10.0, alphas[None, :], 16)
    assert batch.shape == (2, 4, 16)
    np.testing.assert_allclose(batch[1, 2], cpmg_echoes(1197.0, 87.0, 10.0, 140.0, 16), rtol=0, atol=0)


def test_b1_changes_contrast_not_only_shading():
    """At 140 deg the grey/white ratio of the centre echo depends on the transmit ratio (EPG), which a
    shading factor common to all tissues cannot do."""
    params = np.array([simulate.CLINICAL_TISSUES[t].at(3.0) for t in ("grey_matter", "white_matter")])
    ratios = np.linspace(0.7, 1.3, 21)
    table = simulate.site_echo_table(CLINICAL_3T, params, np.array([False, False]), ratios)
    contrast = table[0, :, CLINICAL_3T.centre_echo - 1] / table[1, :, CLINICAL_3T.centre_echo - 1]
    assert contrast.max() - contrast.min() > 0.005
    expected = params[:, 0] * (1 - np.exp(-5000.0 / params[:, 1])) * np.sin(0.5 * np.pi * 1.3) \
        * _isochromat_cpmg(params[0, 1], params[0, 2], 10.0, 140.0 * 1.3, 16)[9]
    assert table[0, -1, 9] == pytest.approx(expected[0], rel=1e-9)


# --------------------------------------------------------------------------------- echo train


def test_linear_ordering_puts_the_centre_at_te_eff():
    echo = echo_of_line(112, 16, 10)
    assert echo[56] == 10 and np.all(np.diff(echo) >= 0) and echo.min() == 2 and echo.max() == 16
    counts = np.bincount(echo, minlength=17)
    assert counts[1] == 0 and np.all(counts[2:16] == 7) and counts[16] == 14
    assert CLINICAL_1P5T.centre_echo == 10 and CLINICAL_3T.centre_echo == 10


@pytest.mark.parametrize("name, factors", [
    ("brain-1.5T-clinical", ()),                         # 180 deg: closed-form weights
    ("brain-3T-clinical", ("refocusing",)),              # 140 deg: EPG weights
    ("brain-3T-clinical", ("resolution",)),              # acquired lines < matrix
])
def test_echo_train_blur_is_a_direct_kspace_weighting(name, factors):
    """Image with the echo train = the image without it, its phase-encode spectrum multiplied line by
    line by the tissue's echo amplitude at that line's echo over the centre echo's."""
    dom_off = _phantom(name, "white_matter", "disc", *factors)
    dom_on = _phantom(name, "white_matter", "disc", "echo_train", *factors)
    off = simulate.simulate_subject(dom_off, 0, 1, 32)
    on = simulate.simulate_subject(dom_on, 0, 1, 32)
    site, m = dom_on.site, on.image.shape[-1]
    _, t1, t2 = on.tissue_params["white_matter"]
    alpha = site.refocusing_deg if "refocusing" in factors else 180.0
    amp = np.exp(-np.arange(1, 17) * 10.0 / t2) if alpha == 180.0 else _isochromat_cpmg(t1, t2, 10.0, alpha, 16)
    acquired = simulate.site_grid(dom_on, 32).acquired
    weight = np.zeros(m)
    k = np.arange(m // 2 - acquired // 2, m // 2 + acquired // 2)
    echo = np.clip(10 + np.floor((k - m // 2) * 16 / acquired).astype(int), 1, 16)
    weight[k] = amp[echo - 1] / amp[9]
    expected = _fft_cols(_fft_cols(off.image.astype(np.complex128)) * weight, inverse=True)
    scale = np.abs(off.image).max()
    np.testing.assert_allclose(on.image, expected, rtol=0, atol=2e-5 * scale)
    assert np.abs(on.image - off.image).max() > 0.01 * scale          # the blur is there


# ----------------------------------------------------------------------------- resolution, SNR


def test_site_grids_follow_the_protocols():
    g3, g1 = (simulate.site_grid(DOMAINS[n], 128) for n in ("brain-3T-clinical", "brain-1.5T-clinical"))
    assert (g3.matrix, g3.acquired, g1.matrix, g1.acquired) == (224, 160, 128, 112)
    assert abs(g3.fov_mm - 220.0) < 256.0 / g3.render and abs(g1.fov_mm - 240.0) < 256.0 / g1.render
    # the 3 T anatomy covers (448 / 220) / (256 / 240) = 1.91x more pixels per mm
    assert (g3.matrix / g3.fov_mm) / (g1.matrix / g1.fov_mm) == pytest.approx((448 / 220) / (256 / 240), rel=0.01)
    plain = simulate.site_grid(DOMAINS["brain-3T"], 128)
    assert (plain.matrix, plain.render, plain.acquired, plain.fov_mm) == (128, 128, 128, 256.0)


def test_anatomy_scales_with_the_pixel_pitch():
    """One subject (one domain name) at both sites' grids: its area in pixels grows as the pitch shrinks."""
    d3 = _with_factors("brain-3T-clinical", "resolution")
    d1 = dataclasses.replace(d3, site=CLINICAL_1P5T.only("resolution"))
    a3, a1 = (simulate.simulate_subject(d, 0, 1, 48) for d in (d3, d1))
    area = [sum(f.sum() for f in s.fractions.values()) for s in (a3, a1)]
    pitch = [s.fov_mm[0] / s.image.shape[-1] for s in (a3, a1)]
    assert area[0] / area[1] == pytest.approx((pitch[1] / pitch[0]) ** 2, rel=0.03)
    assert a3.kspace.shape == (1, 16, 168, 84) and a1.kspace.shape == (1, 16, 96, 48)


def test_snr_follows_the_voxel_law():
    """noise 3 T / noise 1.5 T = SNR law 1.5 T / SNR law 3 T, with the protocols typed in here; the
    1.5 T site's white matter has the fixed-protocol source's RSS SNR of 30."""
    law = {"1.5": (240 / 256) * (240 / 224) * 5.0 * 1.5 * np.sqrt(224 * 1 / 130.0),
           "3": (220 / 448) * (220 / 320) * 4.0 * 3.0 * np.sqrt(320 * 1 / 220.0)}
    s15, s3 = DOMAINS["brain-1.5T-clinical"].noise_std, DOMAINS["brain-3T-clinical"].noise_std
    assert s3 / s15 == pytest.approx(law["1.5"] / law["3"], rel=1e-9)
    wm = 0.69 * (1 - np.exp(-4500.0 / 646.0)) * np.exp(-100.0 / 80.0)
    assert wm / s15 == pytest.approx(30.0, rel=1e-9)
    assert DOMAINS["brain-1.5T-clinical"].snr_1p5T == DOMAINS["brain-1.5T"].snr_1p5T == 30.0
    # the simulated noise has that standard deviation (acquired lines; k-space minus the SENSE model)
    sub = simulate.simulate_subject("brain-3T-clinical", 0, 2, 32)
    resid = _acquired_residual(sub)
    assert np.sqrt(np.mean(np.abs(resid) ** 2)) == pytest.approx(sub.noise_std, rel=0.03)


def _acquired_residual(sub):
    """k-space minus FFT(sens x image) on the acquired lines: (S, C, H, lines) (the noise); the
    other lines must be exactly zero."""
    m = sub.kspace.shape[-1]
    acquired = np.flatnonzero(np.any(sub.kspace != 0, axis=(0, 1, 2)))
    outside = np.setdiff1d(np.arange(m), acquired)
    assert np.all(sub.kspace[..., outside] == 0)
    model = _fft2c(sub.sens_maps.astype(np.complex128) * sub.image[:, None])
    return (sub.kspace.astype(np.complex128) - model)[..., acquired]


# ------------------------------------------------------------------------------- chemical shift


@pytest.mark.parametrize("name, field, bandwidth, fov, read, resolution", [
    ("brain-1.5T-clinical", 1.5, 130.0, 240.0, 256, False),
    ("brain-3T-clinical", 3.0, 220.0, 220.0, 448, False),
    ("brain-3T-clinical", 3.0, 220.0, 220.0, 448, True),
])
def test_chemical_shift_moves_fat_along_the_readout(name, field, bandwidth, fov, read, resolution):
    extra = ("resolution",) if resolution else ()
    subs = [simulate.simulate_subject(_phantom(name, "fat", "blob", *f, *extra), 0, 1, 32)
            for f in ((), ("chemical_shift",))]

    def centroid(sub):
        fat = np.abs(sub.image[0]) / (simulate.b1_signal_factor(sub.b1_ratio[0]) * sub.bias[0])
        rows = np.arange(fat.shape[0])
        return (fat.sum(axis=1) * rows).sum() / fat.sum(), (fat.sum(axis=0) * np.arange(fat.shape[1])).sum() / fat.sum()

    (r0, c0), (r1, c1) = centroid(subs[0]), centroid(subs[1])
    pitch = subs[1].fov_mm[0] / subs[1].image.shape[-1]
    delta_f = 3.4e-6 * 42.577e6 * field                          # 217 Hz at 1.5 T, 434 Hz at 3 T
    expected = delta_f / bandwidth * (fov / read) / pitch       # protocol pixels -> mm -> simulated pixels
    assert r1 - r0 == pytest.approx(expected, abs=0.01)
    assert abs(c1 - c0) < 1e-3                                   # along the readout (rows) only
    assert delta_f / bandwidth == pytest.approx({1.5: 1.67, 3.0: 1.97}[field], abs=0.01)


# ------------------------------------------------------------------------------ coil noise


def test_noise_covariance_is_the_simulated_one():
    sub = simulate.simulate_subject("brain-3T-clinical", 1, 3, 32)
    psi = sub.noise_covariance
    C = psi.shape[0]
    assert np.all(np.linalg.eigvalsh(psi) > 0)
    np.testing.assert_allclose(np.diag(psi).real, sub.noise_std ** 2, rtol=1e-12)
    d = np.sqrt(np.diag(psi).real)
    corr = psi / np.outer(d, d)
    neighbours = [abs(corr[r * 8 + c, r * 8 + (c + 1) % 8]) for r in range(C // 8) for c in range(8)]
    assert 0.05 <= min(neighbours) and max(neighbours) <= 0.4
    noise = _acquired_residual(sub)
    samples = np.moveaxis(noise, 1, -1).reshape(-1, C)          # (N, C)
    empirical = samples.T @ samples.conj() / len(samples)
    e = np.sqrt(np.diag(empirical).real)
    tol = 5.0 / np.sqrt(len(samples))
    np.testing.assert_allclose(empirical / np.outer(e, e), corr, rtol=0, atol=tol)
    np.testing.assert_allclose(e, sub.noise_std, rtol=5 * tol)
    # switched off: white noise
    white = simulate.simulate_subject(dataclasses.replace(DOMAINS["brain-3T-clinical"],
                                                          site=CLINICAL_3T.without("noise_correlation")), 1, 3, 32)
    assert white.noise_covariance is None
    w = np.moveaxis(_acquired_residual(white), 1, -1).reshape(-1, C)
    cw = w.T @ w.conj() / len(w)
    off = np.abs(cw / np.outer(np.sqrt(np.diag(cw).real), np.sqrt(np.diag(cw).real)) - np.eye(C))
    assert off.max() < tol


# ---------------------------------------------------------------------- switches and controls


def test_each_factor_switches_off_alone():
    full = simulate.simulate_subject("brain-3T-clinical", 0, 1, 32)
    for factor in sorted(SITE_FACTORS):
        dom = dataclasses.replace(DOMAINS["brain-3T-clinical"], site=CLINICAL_3T.without(factor))
        sub = simulate.simulate_subject(dom, 0, 1, 32)
        assert factor not in sub.protocol["factors"].split(",")
        differs = sub.kspace.shape != full.kspace.shape or not np.allclose(sub.kspace, full.kspace, atol=1e-6)
        assert differs, f"switching off {factor} changed nothing"
    with pytest.raises(ValueError, match="unknown factors"):
        CLINICAL_3T.without("chemicalshift")
    with pytest.raises(ValueError, match="unknown factors"):
        CLINICAL_3T.only("snr", "nope")


@pytest.mark.parametrize("name", SITES)
def test_every_factor_off_is_the_fixed_protocol_pipeline(name):
    """The site with no factor is the site-free scanner at the site's TR / TE: same anatomy, same size,
    same fractions, the same image and k-space to float32 rounding."""
    dom = DOMAINS[name]
    bare = simulate.simulate_subject(dataclasses.replace(dom, site=dom.site.only()), 2, 2, 32)
    plain = simulate.simulate_subject(dataclasses.replace(dom, site=None), 2, 2, 32)
    assert bare.kspace.shape == plain.kspace.shape == (2, dom.num_coils, 64, 32)
    assert bare.fractions.keys() == plain.fractions.keys()
    for t in plain.fractions:
        np.testing.assert_array_equal(bare.fractions[t], plain.fractions[t])
    assert bare.noise_std == plain.noise_std and bare.noise_covariance is None
    scale = np.abs(plain.image).max()
    np.testing.assert_allclose(bare.image, plain.image, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(bare.kspace, plain.kspace, rtol=0, atol=1e-5 * np.abs(plain.kspace).max())


def test_deterministic_and_subjects_differ():
    a, b = (simulate.simulate_subject("brain-3T-clinical", 4, 2, 32, seed=1) for _ in range(2))
    for f in ("kspace", "sens_maps", "image", "b1_ratio", "bias", "noise_covariance"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = simulate.simulate_subject("brain-3T-clinical", 5, 2, 32, seed=1)
    assert not np.allclose(a.image, c.image)


def test_old_domains_keep_the_fixed_protocol():
    """The four fixed-protocol domains have no site and their noise formula (cheap check; the
    bit-identity against the code before the sites was checked when they were added)."""
    for name in ("brain-1.5T", "brain-3T", "knee-1.5T", "knee-3T"):
        dom = DOMAINS[name]
        assert dom.site is None
        ref = simulate.tissue_signal(dom.reference_tissue, dom.protocol, 1.5)
        assert dom.noise_std == ref / dom.snr_1p5T * (1.5 / dom.field_strength_T)
    sub = simulate.simulate_subject("brain-1.5T", 0, 1, 32)
    assert sub.kspace.shape == (1, 8, 64, 32) and sub.noise_covariance is None
    assert sub.protocol == {"acquisition": "AXT2", "sequence": "TSE", "TR": 4500.0, "TE": 100.0,
                            "echo_train_length": 16}


# ------------------------------------------------------------------------------- files, CLI


def test_sites_write_through_the_fastmri_writer(tmp_path):
    sub = simulate.simulate_subject("brain-3T-clinical", 0, 2, 32)
    path = data.write_subject(tmp_path / "s.h5", sub)
    header = data.read_header(path)
    m = sub.image.shape[-1]
    assert header["recon_size"] == (m, m) and header["encoded_matrix"][:2] == (2 * m, m)
    assert header["field_strength_T"] == 3.0 and header["num_coils"] == 16
    info = data.inspect_file(path, check_values=True)
    assert (info.num_slices, info.num_coils, info.has_sens_maps) == (2, 16, True)
    import h5py

    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["kspace"][()], sub.kspace)
        assert f.attrs["domain"] == "brain-3T-clinical" and f.attrs["acquisition"] == "AXT2"
    assert sub.protocol["refocusing_flip_deg"] == 140.0 and sub.protocol["bandwidth_hz_per_px"] == 220.0
    # the acquired phase lines reach the header as fastMRI's padding (the zero-filled columns outside)
    sampled = np.flatnonzero(np.abs(sub.kspace).sum(axis=(0, 1, 2)) > 0)
    assert header["kspace_padding"] == (int(sampled[0]), int(sampled[-1]) + 1)
    assert sampled.size == simulate.site_grid(simulate.get_domain("brain-3T-clinical"), 32).acquired < m
    assert "epg.py" in [p.name for p in domains.physics_sources(Path(simulate.__file__).parent, "brain")]


def test_cli_lists_the_sites(capsys):
    from mrtl_core.cli import main

    assert main(["simulate", "--list-domains"]) == 0
    out = capsys.readouterr().out
    for name in SITES:
        assert name in out
