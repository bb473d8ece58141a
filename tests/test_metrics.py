"""Metrics against scikit-image and direct NumPy, batched, masked, numpy/torch, per volume, and their errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrtl_core import metrics
from mrtl_core.metrics import foreground_mask, line_profile, nmse, psnr, rmse, ssim, ssim_map


def _skimage_ssim(pred, target, data_range, win_size=7):
    # The call fastMRI's evaluate.py makes (scikit-image's defaults for these three flags).
    return structural_similarity(
        target, pred, data_range=data_range, win_size=win_size,
        gaussian_weights=False, use_sample_covariance=True,
    )


def _pairs():
    """(pred, target) pairs: noise, a structured phantom with its degraded copy, an offset."""
    rng = np.random.default_rng(0)
    yield rng.random((40, 33)), rng.random((40, 33))
    yy, xx = np.mgrid[-1:1:64j, -1:1:48j]
    disc = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1).astype(float)
    target = disc * (1.0 + 0.5 * np.sin(8 * xx) * np.cos(5 * yy)) + 0.02 * rng.standard_normal(disc.shape)
    blurred = np.abs(np.fft.ifft2(np.fft.fft2(target) * (np.abs(np.fft.fftfreq(48)) < 0.15)[None, :]))
    yield blurred, np.abs(target)
    yield np.abs(target) * 0.9 + 0.1, np.abs(target)


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("win_size", [7, 5])
def test_ssim_matches_skimage(case, win_size):
    pred, target = list(_pairs())[case]
    for dr in (target.max(), 2.5 * target.max()):
        want = _skimage_ssim(pred, target, dr, win_size)
        assert abs(ssim(pred, target, data_range=dr, win_size=win_size) - want) < 1e-6
    # The default data range is the target's own maximum.
    assert abs(ssim(pred, target) - _skimage_ssim(pred, target, target.max())) < 1e-6


def test_ssim_of_identical_images_is_one_and_of_an_empty_prediction_is_low():
    _, target = list(_pairs())[1]
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-12)
    assert ssim(np.zeros_like(target), target) < 0.2


def test_ssim_map_shape_and_mean():
    pred, target = list(_pairs())[1]
    s = ssim_map(pred, target, data_range=target.max())
    assert s.shape == (64 - 6, 48 - 6)
    assert s.mean() == pytest.approx(ssim(pred, target, data_range=target.max()), abs=1e-12)


@pytest.mark.parametrize("case", range(3))
def test_psnr_matches_skimage(case):
    pred, target = list(_pairs())[case]
    for dr in (target.max(), 3.0):
        want = peak_signal_noise_ratio(target, pred, data_range=dr)
        assert abs(psnr(pred, target, data_range=dr) - want) < 1e-6


def test_psnr_of_identical_images_is_inf():
    _, target = list(_pairs())[1]
    assert psnr(target, target) == np.inf


def test_rmse_and_nmse_against_numpy():
    pred, target = list(_pairs())[1]
    assert rmse(pred, target) == pytest.approx(np.sqrt(np.mean((pred - target) ** 2)), rel=1e-12)
    want = np.linalg.norm(target - pred) ** 2 / np.linalg.norm(target) ** 2  # fastMRI's nmse
    assert nmse(pred, target) == pytest.approx(want, rel=1e-12)


def _batch():
    rng = np.random.default_rng(1)
    target = rng.random((2, 3, 32, 30)) * np.array([1.0, 2.0, 5.0])[None, :, None, None]
    pred = target + 0.1 * rng.standard_normal(target.shape)
    return pred, target


@pytest.mark.parametrize("metric", [ssim, psnr])
def test_batched_equals_per_image_with_per_image_and_scalar_range(metric):
    pred, target = _batch()
    dr = target.max(axis=(-2, -1))  # (2, 3), one range per image
    got = metric(pred, target, data_range=dr)
    assert got.shape == (2, 3) and got.dtype == np.float64
    for i in range(2):
        for j in range(3):
            assert got[i, j] == pytest.approx(metric(pred[i, j], target[i, j], data_range=dr[i, j]), abs=1e-12)
    # A scalar range (the volume's maximum, fastMRI's convention) applies to every slice.
    vol = float(target.max())
    got = metric(pred, target, data_range=vol)
    assert got[1, 2] == pytest.approx(metric(pred[1, 2], target[1, 2], data_range=vol), abs=1e-12)
    # The default is each image's own maximum.
    assert np.allclose(metric(pred, target), metric(pred, target, data_range=dr), atol=1e-12)


@pytest.mark.parametrize("metric", [rmse, nmse])
def test_batched_errors_equal_per_image(metric):
    pred, target = _batch()
    got = metric(pred, target)
    assert got.shape == (2, 3)
    assert got[1, 0] == pytest.approx(metric(pred[1, 0], target[1, 0]), rel=1e-12)


@pytest.mark.parametrize("metric", [ssim, psnr, rmse, nmse])
def test_torch_and_numpy_agree(metric):
    pred, target = _batch()
    a = metric(pred, target)
    b = metric(torch.from_numpy(pred).float(), torch.from_numpy(target).float())
    c = metric(torch.from_numpy(pred), target)  # mixed is fine too
    np.testing.assert_allclose(a, c, rtol=1e-12)
    np.testing.assert_allclose(a, b, rtol=1e-5)  # float32 storage, float64 arithmetic


def test_torch_tensor_with_grad_and_data_range_tensor():
    pred, target = _batch()
    p = torch.from_numpy(pred).requires_grad_(True)
    dr = torch.from_numpy(target.max(axis=(-2, -1)))
    np.testing.assert_allclose(ssim(p, target, data_range=dr), ssim(pred, target, data_range=dr.numpy()))


def test_complex_input_is_reduced_to_magnitude():
    pred, target = _batch()
    phase = np.exp(1j * np.linspace(0, 3, pred.size).reshape(pred.shape))
    np.testing.assert_allclose(ssim(np.abs(pred) * phase, np.abs(target)), ssim(np.abs(pred), np.abs(target)))


def test_single_image_returns_float():
    pred, target = list(_pairs())[0]
    for value in (ssim(pred, target), psnr(pred, target), rmse(pred, target), nmse(pred, target)):
        assert type(value) is float


# --- masked ("foreground") variants, against hand computation ------------------------------


def test_masked_rmse_psnr_nmse_by_hand():
    pred, target = list(_pairs())[1]
    mask = np.zeros(target.shape, dtype=bool)
    mask[10:50, 5:40] = True
    err = (pred - target)[mask]
    assert rmse(pred, target, mask=mask) == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
    assert psnr(pred, target, data_range=2.0, mask=mask) == pytest.approx(
        10 * np.log10(4.0 / np.mean(err**2)), rel=1e-12
    )
    assert nmse(pred, target, mask=mask) == pytest.approx(np.sum(err**2) / np.sum(target[mask] ** 2), rel=1e-12)


def test_masked_ssim_averages_the_map_inside_the_valid_border():
    pred, target = list(_pairs())[1]
    mask = np.zeros(target.shape, dtype=bool)
    mask[0:30, 20:48] = True  # crosses the 3-pixel border, which is not part of the map
    dr = target.max()
    full = structural_similarity(target, pred, data_range=dr, win_size=7, full=True,
                                 gaussian_weights=False, use_sample_covariance=True)[1]
    want = full[3:-3, 3:-3][mask[3:-3, 3:-3]].mean()  # scikit-image's own map, by hand
    assert ssim(pred, target, data_range=dr, mask=mask) == pytest.approx(want, abs=1e-9)
    # The all-True mask is the plain SSIM.
    assert ssim(pred, target, data_range=dr, mask=np.ones_like(mask)) == pytest.approx(ssim(pred, target, data_range=dr), abs=1e-12)


def test_mask_broadcasts_over_the_batch():
    pred, target = _batch()
    mask = np.zeros(target.shape[-2:], dtype=bool)
    mask[8:24, 8:24] = True
    got = rmse(pred, target, mask=torch.from_numpy(mask))
    assert got[0, 1] == pytest.approx(rmse(pred[0, 1], target[0, 1], mask=mask), rel=1e-12)


def test_foreground_mask_keeps_the_object_fills_holes_and_drops_specks():
    img = np.zeros((64, 64))
    yy, xx = np.mgrid[:64, :64]
    ring = (np.hypot(yy - 32, xx - 32) < 20) & (np.hypot(yy - 32, xx - 32) > 8)
    img[ring] = 1.0  # an object with a dark hole in its middle (like CSF or bone)
    img[2, 2] = 0.9  # a bright isolated noise speck
    m = foreground_mask(img)
    assert m[32, 32] and m[32, 45]  # hole filled, ring kept
    assert not m[2, 2] and not m[60, 60]  # speck and background dropped
    assert m.sum() == np.count_nonzero(np.hypot(yy - 32, xx - 32) < 20)
    batched = foreground_mask(torch.from_numpy(np.stack([img, img[::-1]])))
    assert batched.shape == (2, 64, 64) and np.array_equal(batched[1], m[::-1])


def test_line_profile_rows_columns_and_defaults():
    img = np.arange(5 * 6, dtype=float).reshape(5, 6)
    np.testing.assert_array_equal(line_profile(img), img[2])  # central row, along W
    np.testing.assert_array_equal(line_profile(img, axis=0), img[:, 3])  # central column
    np.testing.assert_array_equal(line_profile(img, axis=1, index=4), img[4])
    batch = torch.from_numpy(np.stack([img, 2 * img]))
    np.testing.assert_array_equal(line_profile(batch, axis=0, index=1), np.stack([img[:, 1], 2 * img[:, 1]]))


# --- errors ------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"pred shape \(4, 5\) and target shape \(5, 4\)"):
        rmse(np.zeros((4, 5)), np.zeros((5, 4)))


@pytest.mark.parametrize("metric", [ssim, psnr])
@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_bad_data_range(metric, bad):
    pred, target = list(_pairs())[0]
    with pytest.raises(ValueError, match="data_range"):
        metric(pred, target, data_range=bad)


def test_default_data_range_of_an_empty_target_is_an_error():
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.ones((8, 8)), np.zeros((8, 8)))


def test_other_errors():
    pred, target = _batch()
    with pytest.raises(ValueError, match="data_range of shape"):
        ssim(pred, target, data_range=np.ones(5))
    with pytest.raises(ValueError, match="win_size"):
        ssim(pred, target, win_size=4)
    with pytest.raises(ValueError, match="win_size"):
        ssim(pred[..., :5, :], target[..., :5, :])
    with pytest.raises(ValueError, match="mask shape"):
        rmse(pred, target, mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        rmse(pred, target, mask=np.ones(target.shape))
    with pytest.raises(ValueError, match="mask selects no pixel"):
        ssim(pred, target, mask=np.zeros(target.shape, dtype=bool))
    with pytest.raises(ValueError, match=r"pred must have shape \(\.\.\., H, W\)"):
        rmse(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="axis"):
        line_profile(target, axis=2)
    with pytest.raises(ValueError, match="index"):
        line_profile(target, index=99)
    with pytest.raises(ValueError, match="threshold"):
        foreground_mask(target, threshold=1.5)


# --- per volume (fastMRI's evaluate.py; tests/test_fastmri_interop.py compares with its own code) ----------
def _volume(seed=0, slices=5):
    """A target volume whose slices differ in brightness, and a prediction whose error differs by slice."""
    rng = np.random.default_rng(seed)
    target = rng.random((slices, 32, 28)) * np.linspace(0.2, 1.0, slices)[:, None, None]
    pred = target + rng.standard_normal(target.shape) * np.linspace(0.01, 0.2, slices)[:, None, None]
    return np.abs(pred), target


def test_volume_psnr_rmse_nmse_pool_the_error_over_the_volume():
    pred, target = _volume()
    mse = np.mean((pred - target) ** 2)
    assert metrics.volume_psnr(pred, target) == pytest.approx(10 * np.log10(target.max() ** 2 / mse), abs=1e-12)
    assert metrics.volume_rmse(pred, target) == pytest.approx(np.sqrt(mse), rel=1e-12)
    assert metrics.volume_nmse(pred, target) == pytest.approx(np.sum((pred - target) ** 2) / np.sum(target**2), rel=1e-12)
    # not the mean of per-slice values (the per-slice path with the volume's range, as evaluate scores slices)
    per_slice = np.mean(psnr(pred, target, data_range=target.max()))
    assert abs(metrics.volume_psnr(pred, target) - per_slice) > 0.1
    assert abs(metrics.volume_nmse(pred, target) - np.mean(nmse(pred, target))) > 1e-3


def test_volume_ssim_is_the_mean_of_slices_scored_with_the_volume_maximum():
    pred, target = _volume()
    want = np.mean([_skimage_ssim(p, t, target.max()) for p, t in zip(pred, target)])
    assert metrics.volume_ssim(pred, target) == pytest.approx(want, abs=1e-9)
    # the per-slice default (each slice's own maximum) differs where slices differ in brightness
    assert abs(metrics.volume_ssim(pred, target) - np.mean(ssim(pred, target))) > 1e-3
    assert metrics.volume_ssim(pred, target, data_range=2.0) == pytest.approx(np.mean(ssim(pred, target, data_range=2.0)))


def test_volume_metrics_dict_masks_and_torch():
    pred, target = _volume(1)
    got = metrics.volume_metrics(torch.from_numpy(pred), torch.from_numpy(target).float())
    assert set(got) == {"ssim", "psnr", "rmse", "nmse"} and all(isinstance(v, float) for v in got.values())
    assert got["psnr"] == pytest.approx(metrics.volume_psnr(pred, target.astype(np.float32)), abs=1e-9)
    fg = target > 0.3 * target.max()
    mse_fg = np.mean((pred - target)[fg] ** 2)
    assert metrics.volume_psnr(pred, target, mask=fg) == pytest.approx(10 * np.log10(target.max() ** 2 / mse_fg))
    assert metrics.volume_nmse(pred, target, mask=fg) == pytest.approx(np.sum((pred - target)[fg] ** 2) / np.sum(target[fg] ** 2))
    assert metrics.volume_psnr(target, target) == float("inf")


@pytest.mark.parametrize("func", [metrics.volume_psnr, metrics.volume_ssim, metrics.volume_nmse, metrics.volume_metrics])
def test_volume_metric_errors(func):
    pred, target = _volume()
    with pytest.raises(ValueError, match="slices, H, W"):
        func(pred[0], target[0])
    with pytest.raises(ValueError, match="differ"):
        func(pred[:, :30], target)
    if func is not metrics.volume_nmse:
        with pytest.raises(ValueError, match="one data_range"):
            func(pred, target, data_range=np.ones(5))
        with pytest.raises(ValueError, match="maximum"):
            func(pred, np.zeros_like(target))
