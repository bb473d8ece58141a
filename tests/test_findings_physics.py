"""The physics findings that chapters 2 (CG-SENSE) and 3 (the synthetic scanners) state in their text.

Each finding must hold in every profile, so it is checked on the records the notebooks wrote when
``tests/conftest.py``'s session fixture ``executed_records`` ran them with the ``ci`` profile. A
failure here means the text of a chapter claims something its own numbers no longer show.
"""
from __future__ import annotations

import math

import pytest

from findings import chapter_numbers, finite

CG = "02_cg_sense"
SCANNERS = "03_scanners"


@pytest.fixture(scope="module")
def cg(executed_records) -> dict:
    return chapter_numbers(executed_records, CG)


@pytest.fixture(scope="module")
def scanners(executed_records) -> dict:
    return chapter_numbers(executed_records, SCANNERS)


# --- chapter 2: CG-SENSE ------------------------------------------------------------------------


def test_dot_test_error_is_round_off(cg):
    # <Ax, y> = <x, A^H y> to float32 round-off: a wrong conjugate gives an error of order 1.
    assert finite(cg["dot_test_rel_err"], "dot_test_rel_err") < 1e-4
    assert finite(cg["dot_test_rel_err_float64"], "dot_test_rel_err_float64") < 1e-10


def test_cg_sense_beats_zero_filled_at_R4(cg):
    ssim_zf, ssim_cg = finite(cg["ssim_zf_R4"], "ssim_zf_R4"), finite(cg["ssim_cg_R4"], "ssim_cg_R4")
    psnr_zf, psnr_cg = finite(cg["psnr_zf_R4"], "psnr_zf_R4"), finite(cg["psnr_cg_R4"], "psnr_cg_R4")
    assert 0 < ssim_zf < 1 and 0 < ssim_cg <= 1
    assert ssim_cg > ssim_zf + 0.02, f"CG-SENSE SSIM {ssim_cg:.4f} vs zero-filled {ssim_zf:.4f} at R=4"
    assert psnr_cg > psnr_zf + 1.0, f"CG-SENSE PSNR {psnr_cg:.2f} dB vs zero-filled {psnr_zf:.2f} dB at R=4"


def test_cg_sense_with_espirit_maps_also_beats_zero_filled(cg):
    assert finite(cg["ssim_cg_espirit_R4"], "ssim_cg_espirit_R4") > cg["ssim_zf_R4"]


def test_mean_g_factor_grows_with_R(cg):
    g_mean = {float(r): finite(v, f"g_mean_by_R[{r}]") for r, v in cg["g_mean_by_R"].items()}
    assert len(g_mean) >= 3, f"the g-factor was measured at too few accelerations: {sorted(g_mean)}"
    rs = sorted(g_mean)
    values = [g_mean[r] for r in rs]
    # g >= 1 up to the replica noise (1/sqrt(2 n) relative), and it grows with R.
    tolerance = 3 / math.sqrt(2 * cg["g_replicas"])
    assert min(values) > 1 - tolerance, f"mean g below 1: {g_mean}"
    assert all(b > a for a, b in zip(values, values[1:])), f"mean g does not grow with R: {g_mean}"
    assert values[-1] > 1.2 * values[0], f"mean g barely changes from R={rs[0]} to R={rs[-1]}: {g_mean}"


def test_replica_g_agrees_with_analytic_sense_g(cg):
    """Converged CG-SENSE on regular masks is the SENSE solve: replica mean g == exact mean g."""
    analytic = cg["g_analytic_mean_by_R"]
    for r in ("2", "3"):
        replica = finite(cg["g_mean_by_R"][r], f"g_mean_by_R[{r}]")
        exact = finite(analytic[r], f"g_analytic_mean_by_R[{r}]")
        assert exact >= 1 - 1e-6, f"analytic g below 1 at R={r}: {exact}"
        assert abs(replica / exact - 1) < 0.15, f"R={r}: replica {replica} vs analytic {exact}"


def test_analytic_g_grows_with_R(cg):
    g = {int(r): finite(v, f"g_analytic_mean_by_R[{r}]") for r, v in cg["g_analytic_mean_by_R"].items()}
    values = [g[r] for r in sorted(g)]
    assert all(b > a for a, b in zip(values, values[1:])), f"analytic mean g does not grow with R: {g}"


def test_g_max_is_at_least_g_mean(cg):
    for r, mean in cg["g_mean_by_R"].items():
        assert cg["g_max_by_R"][r] >= mean, f"R={r}: 99th percentile {cg['g_max_by_R'][r]} < mean {mean}"


# --- chapter 3: the synthetic scanners ----------------------------------------------------------


def test_3T_has_higher_snr_than_1p5T(scanners):
    snr_15, snr_3 = finite(scanners["snr_1p5T"], "snr_1p5T"), finite(scanners["snr_3T"], "snr_3T")
    assert snr_15 > 1, f"1.5 T SNR {snr_15}"
    # SNR grows roughly linearly with B0; allow for coil count, B1 and T1 differences, but demand a real gain.
    assert snr_3 > 1.2 * snr_15, f"3 T SNR {snr_3:.1f} is not clearly above 1.5 T SNR {snr_15:.1f}"


def test_grey_white_contrast_rises_from_1p5_to_3T(scanners):
    """Chapter 3's summary: the 3 T scanner raises the grey/white contrast, in the signal equation
    and in the simulated images."""
    for suffix in ("", "_image"):
        low, high = (finite(scanners[f"gm_wm_contrast{suffix}_{b}"], f"gm_wm_contrast{suffix}_{b}") for b in ("1p5T", "3T"))
        assert high > low + 0.01, f"grey/white contrast{suffix}: 3 T {high:.3f} is not above 1.5 T {low:.3f}"


def test_grey_white_contrast_is_nonzero_at_both_fields(scanners):
    for key in ("gm_wm_contrast_1p5T", "gm_wm_contrast_3T"):
        contrast = finite(scanners[key], key)
        assert abs(contrast) > 0.03, f"{key} = {contrast:.4f}: grey and white matter look alike"


def test_coil_counts_match_the_domains(scanners):
    coils = scanners["num_coils"]
    assert coils["brain-1.5T"] == 8 and coils["brain-3T"] == 16, coils
