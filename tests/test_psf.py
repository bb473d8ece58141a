"""Point-spread function of column masks, and the readout-oversampling crop chapters 1-2 use."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core.data import center_crop, remove_readout_oversampling
from mrtl_core.masks import make_mask, peak_sidelobe, point_spread_function


def _psf_direct(mask: np.ndarray) -> np.ndarray:
    # Independent reference: an explicit DFT sum over the sampled columns, offset x = i - W // 2.
    w = mask.shape[0]
    offsets = np.arange(w) - w // 2
    cols = np.flatnonzero(mask)
    values = np.exp(2j * np.pi * np.outer(offsets, cols) / w).sum(axis=1)
    return np.abs(values) / len(cols)


@pytest.mark.parametrize("w,kind,r", [(64, "random", 4), (65, "random", 3), (96, "equispaced", 6)])
def test_psf_matches_direct_dft(w, kind, r):
    mask = make_mask(w, r, kind=kind, seed=1)
    psf = point_spread_function(mask)
    assert psf.shape == (w,)
    assert psf[w // 2] == pytest.approx(1.0)
    np.testing.assert_allclose(psf, _psf_direct(mask), atol=1e-12)
    assert psf.max() <= 1.0 + 1e-12  # no offset exceeds the centre


def test_full_mask_gives_a_delta():
    psf = point_spread_function(np.ones(48, dtype=bool))
    expected = np.zeros(48)
    expected[24] = 1.0
    np.testing.assert_allclose(psf, expected, atol=1e-12)
    assert peak_sidelobe(np.ones(48, dtype=bool)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("w,r,start", [(64, 4, 0), (64, 4, 3), (96, 3, 1), (120, 8, 5)])
def test_equispaced_without_acs_has_full_height_replicas_at_w_over_r(w, r, start):
    mask = np.zeros(w, dtype=bool)
    mask[start::r] = True
    psf = point_spread_function(torch.as_tensor(mask))  # torch input is accepted too
    offsets = np.arange(w) - w // 2
    replicas = offsets % (w // r) == 0
    np.testing.assert_allclose(psf[replicas], 1.0, atol=1e-12)  # the R ghosts, offset W/R apart
    np.testing.assert_allclose(psf[~replicas], 0.0, atol=1e-12)  # nothing in between
    assert peak_sidelobe(mask) == pytest.approx(1.0)


def test_random_side_lobes_are_incoherent_and_acs_weakens_equispaced_replicas():
    w, r = 128, 4
    rand = peak_sidelobe(make_mask(w, r, 0.08, kind="random", seed=0))
    equi = peak_sidelobe(make_mask(w, r, 0.08, kind="equispaced", seed=0))
    assert 0.0 < rand < 0.6 < equi < 1.0  # ACS lines break the exact periodicity a little


def test_psf_rejects_bad_input():
    with pytest.raises(ValueError, match="no column"):
        point_spread_function(np.zeros(16, dtype=bool))
    with pytest.raises(ValueError, match="1-D"):
        point_spread_function(np.ones((2, 16), dtype=bool))
    with pytest.raises(ValueError, match="exclude"):
        peak_sidelobe(np.ones(16, dtype=bool), exclude=-1)
    with pytest.raises(ValueError, match="exclude"):
        peak_sidelobe(np.ones(16, dtype=bool), exclude=8)


def test_remove_readout_oversampling_matches_numpy_crop():
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((3, 32, 12)) + 1j * rng.standard_normal((3, 32, 12)))
    ortho = dict(axes=(-2, -1), norm="ortho")
    to_k = lambda x: np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), **ortho),
                                     axes=(-2, -1))  # noqa: E731
    out = remove_readout_oversampling(to_k(image).astype(np.complex128), 16)
    assert out.shape == (3, 16, 12) and out.dtype == torch.complex128
    np.testing.assert_allclose(out.numpy(), to_k(image[:, 8:24, :]), atol=1e-12)
    torch.testing.assert_close(center_crop(torch.as_tensor(image), (16, 12)),
                               torch.as_tensor(image[:, 8:24, :]))
    with pytest.raises(ValueError, match="complex"):
        remove_readout_oversampling(np.ones((4, 4)), 2)
