"""mrtl_core beside fastMRI's own code on the same inputs (issue: fastMRI's conventions exactly).

``scripts/setup-env.sh`` installs ``fastmri`` 0.3.0 with ``--no-deps`` (no Lightning: only its
torch, NumPy and h5py modules are imported here) and ``runstats``. Where it is absent (the conda
route, or an install that failed) every test here skips and says so.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

fastmri = pytest.importorskip("fastmri", reason="fastmri is not installed: scripts/setup-env.sh installs it "
                              "with `pip install --no-deps fastmri==0.3.0 runstats`")
from fastmri import evaluate as fastmri_evaluate  # noqa: E402
from fastmri.data import SliceDataset as FastmriSliceDataset  # noqa: E402
from fastmri.data import transforms as fastmri_transforms  # noqa: E402
from fastmri.data.subsample import EquiSpacedMaskFunc, EquispacedMaskFractionFunc, RandomMaskFunc  # noqa: E402
from fastmri.models.unet import Unet as FastmriUnet  # noqa: E402

from mrtl_core import fft, masks, metrics  # noqa: E402
from mrtl_core.data import SliceDataset, rss, unnormalize, write_fastmri_file, write_subject  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402
from mrtl_core.simulate import simulate_subject  # noqa: E402
from mrtl_core.unet import Unet  # noqa: E402


@pytest.mark.parametrize("chans,pools", [(8, 3), (16, 4)])
def test_unet_state_dicts_load_both_ways_with_identical_outputs(chans, pools):
    torch.manual_seed(0)
    theirs = FastmriUnet(1, 1, chans=chans, num_pool_layers=pools, drop_prob=0.0).eval()
    ours = Unet(1, 1, chans=chans, num_pool_layers=pools, drop_prob=0.0).eval()
    x = torch.randn(2, 1, 48, 40)  # not a power of two: both pad and crop the same way
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    torch.manual_seed(1)
    ours = Unet(1, 1, chans=chans, num_pool_layers=pools, drop_prob=0.0).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


@pytest.mark.parametrize("num_cols,cf,accel", [(368, 0.08, 4), (372, 0.04, 8), (320, 0.08, 4), (640, 0.04, 8)])
def test_centre_block_matches_fastmri_masks(num_cols, cf, accel):
    """The fully sampled centre (the ACS block): same width and position as fastMRI's mask functions."""
    for mask_func, kind in ((RandomMaskFunc([cf], [accel]), "random"),
                            (EquispacedMaskFractionFunc([cf], [accel]), "equispaced")):
        theirs, num_low = mask_func((1, num_cols, 1), seed=0)
        theirs = theirs.reshape(-1).numpy()
        centre = masks.center_lines(num_cols, cf)
        assert centre.stop - centre.start == int(num_low), kind
        assert theirs[centre].all(), kind
        ours = masks.make_mask(num_cols, accel, cf, kind=kind, seed=0)
        assert ours[centre].all(), kind
        # the same budget: fastMRI's fraction-equispaced mask samples num_cols / R lines, as ours does
        if kind == "equispaced":
            assert abs(int(theirs.sum()) - int(ours.sum())) <= 1, (int(theirs.sum()), int(ours.sum()))


def test_fft_and_rss_agree_with_fastmri():
    rng = np.random.default_rng(0)
    k = torch.from_numpy((rng.standard_normal((4, 24, 20)) + 1j * rng.standard_normal((4, 24, 20))).astype(np.complex64))
    ours = fft.ifft2c(k)
    theirs = torch.view_as_complex(fastmri.ifft2c(torch.view_as_real(k)).contiguous())
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fft.fft2c(ours), torch.view_as_complex(fastmri.fft2c(torch.view_as_real(ours)).contiguous()),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rss(ours.abs(), dim=0), fastmri.rss(ours.abs(), dim=0), rtol=1e-6, atol=1e-7)


def test_fastmri_slice_dataset_reads_a_file_mrtl_wrote(tmp_path):
    """fastMRI's own SliceDataset reads the layout mrtl writes: k-space, target, header sizes, attributes."""
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((3, 4, 64, 32)) + 1j * rng.standard_normal((3, 4, 64, 32))).astype(np.complex64)
    write_fastmri_file(tmp_path / "file_p0.h5", k, field_strength_T=3.0, fov_mm=(220.0, 220.0, 5.0),
                       recon_size=(32, 32), patient_id="p0", acquisition="AXT2")
    theirs = FastmriSliceDataset(root=tmp_path, challenge="multicoil", transform=None)
    assert len(theirs) == 3
    kspace, mask, target, attrs, fname, slice_num = theirs[1]
    assert mask is None and fname == "file_p0.h5" and slice_num == 1
    np.testing.assert_array_equal(kspace, k[1])
    assert target.shape == (32, 32) and attrs["recon_size"] == (32, 32, 1) and attrs["encoding_size"] == (64, 32, 1)
    assert attrs["acquisition"] == "AXT2" and attrs["patient_id"] == "p0"
    with h5py.File(tmp_path / "file_p0.h5", "r") as f:
        volume = f["reconstruction_rss"][()]
    np.testing.assert_array_equal(target, volume[1])
    assert attrs["max"] == pytest.approx(float(volume.max()))  # fastMRI's data range: the volume's maximum


# --- metrics per volume: fastMRI's evaluate.py functions themselves -----------------------------------
def _theirs(gt, pred):
    """fastMRI's evaluate.py on one volume (its argument order: target first)."""
    return {"psnr": float(fastmri_evaluate.psnr(gt, pred)), "nmse": float(fastmri_evaluate.nmse(gt, pred)),
            "ssim": float(np.asarray(fastmri_evaluate.ssim(gt, pred)).reshape(-1)[0]),
            "rmse": float(np.sqrt(fastmri_evaluate.mse(gt, pred)))}


def _assert_volume_metrics_equal(ours, theirs):
    for key in ("ssim", "psnr", "nmse", "rmse"):
        assert abs(ours[key] - theirs[key]) <= 1e-6 * max(1.0, abs(theirs[key])), (key, ours[key], theirs[key])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_volume_metrics_equal_fastmri_evaluate_on_random_volumes(dtype, seed):
    rng = np.random.default_rng(seed)
    gt = (rng.random((5, 40, 36)) * np.linspace(0.3, 2.0, 5)[:, None, None]).astype(dtype)  # slices of unequal brightness
    pred = np.abs(gt + rng.standard_normal(gt.shape) * np.linspace(0.02, 0.4, 5)[:, None, None]).astype(dtype)
    theirs = _theirs(gt, pred)
    _assert_volume_metrics_equal(metrics.volume_metrics(pred, gt), theirs)
    # the per-slice mean, which the issue found +0.8 dB off on a test volume, is not fastMRI's number
    assert abs(float(np.mean(metrics.psnr(pred, gt, data_range=gt.max()))) - theirs["psnr"]) > 0.05


def test_volume_metrics_of_an_evaluation_equal_fastmri_evaluate_on_simulated_volumes(tmp_path):
    files = [write_subject(tmp_path / f"{dom}_{i}.h5", simulate_subject(dom, i, 4, 32), with_sens_maps=False)
             for dom, i in (("brain-1.5T", 0), ("knee-1.5T", 0))]
    ds = SliceDataset(files, acceleration=4, with_kspace=True)
    result = evaluate("zero-filled", ds, batch_size=3, device="cpu")
    assert result.volumes == [f.name for f in files]
    per_volume = result.volume_metrics()
    for v, path in enumerate(files):
        with h5py.File(path, "r") as f:
            gt = f["reconstruction_rss"][()]
        pred = np.stack([unnormalize(ds[i].image[0], ds[i].mean, ds[i].std).numpy()
                         for i in range(len(ds)) if ds[i].fname == path.name])
        theirs = _theirs(gt.astype(np.float64), pred)
        _assert_volume_metrics_equal({k: per_volume[k][v] for k in ("ssim", "psnr", "nmse", "rmse")}, theirs)
        _assert_volume_metrics_equal(metrics.volume_metrics(pred, gt), _theirs(gt, pred.astype(np.float32)))
    summary = result.volume_summary()
    assert summary["psnr"]["n"] == 2 and summary["psnr"]["mean"] == pytest.approx(float(np.mean(per_volume["psnr"])))
    assert result.summary()["psnr"]["n"] == 8  # the per-slice summary is as it was: one value per slice


# --- masks with fastMRI's signature: the same draws as fastMRI's own -------------------------------
SEEDS = [0, 1, 7, 12345, tuple(map(ord, "file1000001.h5")), tuple(map(ord, "file_brain_AXT2_200_2000019.h5"))]


@pytest.mark.parametrize("ours,theirs", [(masks.RandomMaskFunc, RandomMaskFunc),
                                         (masks.EquispacedMaskFractionFunc, EquispacedMaskFractionFunc),
                                         (masks.EquispacedMaskFunc, EquiSpacedMaskFunc)])
@pytest.mark.parametrize("shape", [(1, 640, 368, 2), (1, 64, 32, 1), (4, 1, 320, 1), (1, 396, 1)])
def test_fastmri_mask_functions_equal_fastmris_own(ours, theirs, shape):
    for pairs, combine in ((([0.08], [4]), False), (([0.08, 0.04], [4, 8]), False), (([0.08, 0.04], [4, 8]), True)):
        for seed in SEEDS:
            a, na = ours(*pairs, allow_any_combination=combine)(shape, seed=seed)
            b, nb = theirs(*pairs, allow_any_combination=combine)(shape, seed=seed)
            assert a.shape == b.shape and a.dtype == b.dtype and na == nb, (seed, shape)
            assert torch.equal(a, b), (seed, shape, pairs)
    # unseeded calls follow the object's own stream, as fastMRI's do; a given offset is honoured
    a, b = ours([0.08], [4], seed=3), theirs([0.08], [4], seed=3)
    for offset in (None, 0, 1, 3):
        for _ in range(3):
            assert torch.equal(a(shape, offset=offset)[0], b(shape, offset=offset)[0])


def test_fastmri_equispaced_samples_about_0_31_at_4x_and_mrtl_exact_count_keeps_fastmris_centre():
    fractions = [float(EquiSpacedMaskFunc([0.08], [4])((1, 368, 1), seed=s)[0].mean()) for s in range(8)]
    assert np.mean(fractions) == pytest.approx(0.309, abs=0.005)
    for seed in SEEDS:
        theirs, num_low = RandomMaskFunc([0.08], [4])((1, 368, 1), seed=seed)
        ours, our_low = masks.ExactMaskFunc([0.08], [4])((1, 368, 1), seed=seed)
        assert our_low == num_low and ours.shape == theirs.shape
        start = (368 - num_low + 1) // 2
        assert ours.reshape(-1)[start:start + num_low].all() and int(ours.sum()) == round(368 / 4)


# --- the crop of narrow k-space and one mask per volume: fastMRI's UnetDataTransform on the same file ----
def test_narrow_kspace_and_volume_masks_match_fastmris_unet_transform(tmp_path):
    """A brain file narrower than its recon matrix (fastMRI's FLAIR 203 case), masked per volume:
    fastMRI's SliceDataset + UnetDataTransform (use_seed=True) and mrtl's SliceDataset give the same
    crop, mask, image and target on every slice."""
    rng = np.random.default_rng(0)
    for i in range(2):
        k = (rng.standard_normal((3, 4, 64, 28)) + 1j * rng.standard_normal((3, 4, 64, 28))).astype(np.complex64)
        k[..., 30:34, 12:16] *= 30
        target = np.abs(rng.standard_normal((3, 32, 32))).astype(np.float32) + 1.0
        path = write_fastmri_file(tmp_path / f"file_brain_{i}.h5", k, field_strength_T=3.0, fov_mm=(220.0, 220.0, 5.0),
                                  recon_size=(32, 32), patient_id=f"p{i}", acquisition="AXFLAIR",
                                  reconstruction_rss=target)
        with h5py.File(path, "a") as f:  # a scanner's vendor, as in real fastMRI files: per-volume masks by default
            header = f["ismrmrd_header"][()].replace(b"mrtl (simulated)", b"SIEMENS")
            del f["ismrmrd_header"]
            f.create_dataset("ismrmrd_header", data=np.bytes_(header))
    theirs = FastmriSliceDataset(root=tmp_path, challenge="multicoil", transform=fastmri_transforms.UnetDataTransform(
        "multicoil", mask_func=RandomMaskFunc([0.08], [4]), use_seed=True))
    ours = SliceDataset(tmp_path, mask_func=masks.RandomMaskFunc([0.08], [4]), with_kspace=True)  # "auto": per volume
    assert ours.mask_seed == "auto"
    assert len(theirs) == len(ours) == 6
    index = {(s.fname, s.slice_idx): s for s in (ours[i] for i in range(len(ours)))}
    for j in range(len(theirs)):
        t = theirs[j]
        o = index[(t.fname, t.slice_num)]
        assert tuple(t.image.shape) == tuple(o.image.shape[-2:]) == (28, 28)  # the square of the width, not 32x28
        assert tuple(t.target.shape) == tuple(o.target.shape[-2:]) == (28, 28)
        with h5py.File(tmp_path / t.fname, "r") as f:
            raw = fastmri_transforms.to_tensor(f["kspace"][t.slice_num])
        _, their_mask, _ = fastmri_transforms.apply_mask(raw, RandomMaskFunc([0.08], [4]), seed=tuple(map(ord, t.fname)))
        np.testing.assert_array_equal(o.mask.numpy(), their_mask.reshape(-1).numpy() > 0)
        torch.testing.assert_close(o.image[0], t.image, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(o.target[0], t.target, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(o.mean, t.mean, rtol=1e-5, atol=0)
    masks_by_file = {}
    for s in index.values():
        masks_by_file.setdefault(s.fname, set()).add(s.mask.numpy().tobytes())
    assert all(len(v) == 1 for v in masks_by_file.values())  # one mask per volume
    assert len(set.union(*masks_by_file.values())) == 2       # seeded by the file's name: each its own


def test_zero_filled_columns_reach_the_header_as_fastmri_reads_them(tmp_path):
    """A k-space whose outer phase-encode columns were never acquired (a clinical site's matrix):
    the header's encoding limits give exactly the acquired columns by fastMRI's own padding rule
    (its SliceDataset's metadata), and mrtl's reader agrees; a fully sampled file keeps all columns."""
    from mrtl_core.data import read_header

    rng = np.random.default_rng(5)
    k = (rng.standard_normal((2, 3, 32, 24)) + 1j * rng.standard_normal((2, 3, 32, 24))).astype(np.complex64)
    full = write_fastmri_file(tmp_path / "full_p0.h5", k, field_strength_T=3.0, fov_mm=(220.0, 220.0, 4.0),
                              recon_size=(16, 16), patient_id="p0", acquisition="AXT2")
    k_cut = k.copy()
    k_cut[..., :5] = 0
    k_cut[..., 21:] = 0        # columns 5..20 acquired
    cut = write_fastmri_file(tmp_path / "cut_p0.h5", k_cut, field_strength_T=3.0, fov_mm=(220.0, 220.0, 4.0),
                             recon_size=(16, 16), patient_id="p0", acquisition="AXT2",
                             protocol={"TR": 5000.0, "TE": 100.0, "sequence": "TSE", "echo_train_length": 16,
                                       "echo_spacing": 10.0, "refocusing_flip_deg": 140.0, "bandwidth_hz_per_px": 220.0})
    assert read_header(full)["kspace_padding"] == (0, 24)
    assert read_header(cut)["kspace_padding"] == (5, 21)
    ds = FastmriSliceDataset(tmp_path, challenge="multicoil")
    theirs = {Path(r.fname).name: r.metadata for r in ds.raw_samples}
    assert (theirs["cut_p0.h5"]["padding_left"], theirs["cut_p0.h5"]["padding_right"]) == (5, 21)
    assert (theirs["full_p0.h5"]["padding_left"], theirs["full_p0.h5"]["padding_right"]) == (0, 24)
    text = h5py.File(cut, "r")["ismrmrd_header"][()].decode()
    assert "<echo_spacing>10.0</echo_spacing>" in text and "refocusing_flip_deg" in text and "bandwidth_hz_per_px" in text


def test_masks_leave_out_the_columns_never_acquired_as_fastmris_transform_does(tmp_path):
    """With zero-filled outer columns (header padding), fastMRI's UnetDataTransform calls apply_mask
    with the acquired columns as ``padding`` (from its SliceDataset's metadata), which zeroes the mask
    outside them; mrtl's SliceDataset gives that same mask."""
    rng = np.random.default_rng(3)
    k = (rng.standard_normal((2, 4, 64, 32)) + 1j * rng.standard_normal((2, 4, 64, 32))).astype(np.complex64)
    k[..., :6] = 0
    k[..., 26:] = 0            # columns 6..25 acquired
    path = write_fastmri_file(tmp_path / "file_brain_pad.h5", k, field_strength_T=3.0, fov_mm=(220.0, 220.0, 4.0),
                              recon_size=(32, 32), patient_id="p0", acquisition="AXT2",
                              reconstruction_rss=np.ones((2, 32, 32), np.float32))
    with h5py.File(path, "a") as f:  # a scanner's file: per-volume masks, as fastMRI seeds them
        header = f["ismrmrd_header"][()].replace(b"mrtl (simulated)", b"SIEMENS")
        del f["ismrmrd_header"]
        f.create_dataset("ismrmrd_header", data=np.bytes_(header))
    meta = FastmriSliceDataset(root=tmp_path, challenge="multicoil").raw_samples[0].metadata
    padding = (meta["padding_left"], meta["padding_right"])
    assert padding == (6, 26)
    ours = SliceDataset(tmp_path, mask_func=masks.RandomMaskFunc([0.08], [4]), with_kspace=True)
    for j in range(len(ours)):
        o = ours[j]
        _, their_mask, _ = fastmri_transforms.apply_mask(fastmri_transforms.to_tensor(k[j]), RandomMaskFunc([0.08], [4]),
                                                         seed=tuple(map(ord, o.fname)), padding=padding)
        their_mask = their_mask.reshape(-1).numpy() != 0
        our_mask = o.mask.reshape(-1).numpy() != 0
        np.testing.assert_array_equal(our_mask, their_mask)
        assert not our_mask[:6].any() and not our_mask[26:].any() and our_mask[6:26].any()
