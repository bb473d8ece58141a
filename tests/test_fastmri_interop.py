"""mrtl_core beside fastMRI's own code on the same inputs (issue: fastMRI's conventions exactly).

``scripts/setup-env.sh`` installs ``fastmri`` 0.3.0 with ``--no-deps`` (no Lightning: only its
torch, NumPy and h5py modules are imported here) and ``runstats``. Where it is absent (the conda
route, or an install that failed) every test here skips and says so.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

fastmri = pytest.importorskip("fastmri", reason="fastmri is not installed: scripts/setup-env.sh installs it "
                              "with `pip install --no-deps fastmri==0.3.0 runstats`")
from fastmri.data import SliceDataset as FastmriSliceDataset  # noqa: E402
from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc  # noqa: E402
from fastmri.models.unet import Unet as FastmriUnet  # noqa: E402

from mrtl_core import fft, masks  # noqa: E402
from mrtl_core.data import rss, write_fastmri_file  # noqa: E402
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
