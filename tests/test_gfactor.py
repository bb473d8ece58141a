"""sense.g_factor: the analytic SENSE g-factor against a dense encoding-matrix reference."""
import math

import numpy as np
import pytest
import torch

from mrtl_core import sense
from mrtl_core.fft import fft2c


def _smooth_maps(num_coils: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Loop-like maps (C, H, W), float64: Gaussian falloff from coils evenly spaced on a circle
    around the FOV, with a random smooth phase per coil."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64),
                            torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    angles = 2 * math.pi * (torch.arange(num_coils, dtype=torch.float64) / num_coils
                            + torch.rand(1, generator=gen, dtype=torch.float64))
    cy, cx = 1.3 * torch.sin(angles), 1.3 * torch.cos(angles)
    dist2 = (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2
    phase = torch.randn(num_coils, 3, generator=gen, dtype=torch.float64)
    phi = phase[:, :1, None] + phase[:, 1:2, None] * xx + phase[:, 2:, None] * yy
    return torch.exp(-dist2 / 1.2) * torch.exp(1j * phi)


def _dense_g(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """g from the explicit encoding matrix E = M F S (all coils stacked), white unit k-space noise:
    the noise covariance of the unfolded image is (E^H E)^-1, of the fully sampled one
    (S^H S)^-1 (F is orthonormal), and std_R = g sqrt(R) std_full."""
    c, h, w = maps.shape
    n = h * w
    eye = torch.eye(n, dtype=torch.complex128).reshape(n, h, w)
    cols = fft2c(maps[None] * eye[:, None])                      # (n, C, H, W): E applied to e_j
    cols = cols * mask                                           # keep the sampled columns
    enc = cols.reshape(n, c * h * w).T                           # (C H W, n)
    enc = enc[(mask.expand(c, h, w)).reshape(-1)]                # drop the unsampled rows
    var_r = torch.linalg.inv(enc.mH @ enc).diagonal().real
    var_full = 1 / maps.abs().square().sum(0).reshape(-1)
    r = w / int(mask.sum())
    return (var_r / var_full).sqrt().reshape(h, w) / math.sqrt(r)


def test_r1_is_one():
    maps = _smooth_maps(4, 8, 8)
    g = sense.g_factor(maps, 1)
    assert g.shape == (8, 8) and g.dtype == torch.float64
    torch.testing.assert_close(g, torch.ones(8, 8, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("offset", [0, 1])
def test_matches_dense_encoding_matrix(offset):
    maps = _smooth_maps(4, 8, 8, seed=1)
    mask = torch.zeros(8, dtype=torch.bool)
    mask[offset::2] = True                                       # R = 2, no ACS block
    ref = _dense_g(maps, mask)
    got = sense.g_factor(maps, 2)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    assert got.max() > 1.01                                      # not a trivial all-ones case


def test_noise_covariance_matches_prewhitened_maps():
    maps = _smooth_maps(4, 6, 8, seed=2)
    gen = torch.Generator().manual_seed(3)
    b = torch.randn(4, 4, 2, generator=gen, dtype=torch.float64)
    lower = torch.complex(b[..., 0], b[..., 1]).tril() + 3 * torch.eye(4)
    psi = lower @ lower.mH
    white = torch.linalg.solve_triangular(lower, maps.reshape(4, -1), upper=False).reshape(maps.shape)
    torch.testing.assert_close(sense.g_factor(maps, 2, noise_cov=psi), sense.g_factor(white, 2))
    assert not torch.allclose(sense.g_factor(maps, 2, noise_cov=psi), sense.g_factor(maps, 2))


def test_g_at_least_one_and_more_coils_help():
    maps = _smooth_maps(12, 16, 16, seed=4)
    means = []
    for coils in (4, 8, 12):
        g = sense.g_factor(maps[:coils], 4)
        assert torch.isfinite(g).all() and g.min() >= 1 - 1e-9   # Cauchy-Schwarz
        means.append(float(g.mean()))
    assert means[0] > means[1] > means[2], means


def test_grows_with_r_and_batches():
    maps = _smooth_maps(8, 12, 24, seed=5)
    means = [float(sense.g_factor(maps, r).mean()) for r in (1, 2, 3, 4, 6)]
    assert all(b > a for a, b in zip(means, means[1:])), means
    batch = torch.stack([maps, maps.flip(-1)])
    g = sense.g_factor(batch.to(torch.complex64), 3)
    assert g.shape == (2, 12, 24) and g.dtype == torch.float32
    torch.testing.assert_close(g[0].double(), sense.g_factor(maps, 3), rtol=1e-4, atol=1e-4)


def test_vanishing_maps_give_zero_and_do_not_poison_their_set():
    maps = _smooth_maps(4, 8, 8, seed=6)
    support = torch.ones(8, 8, dtype=torch.bool)
    support[:, 4:] = False                                       # right half empty
    g = sense.g_factor(maps * support, 2)
    assert (g[:, 4:] == 0).all()
    # the left pixels' aliases vanished: nothing to unfold, g == 1 there
    torch.testing.assert_close(g[:, :4], torch.ones(8, 4, dtype=torch.float64))


def test_singular_sets_are_inf():
    maps = _smooth_maps(2, 4, 8, seed=7)                         # 2 coils cannot unfold R = 4
    g = sense.g_factor(maps, 4)
    assert torch.isinf(g).all()


def test_bad_input():
    maps = _smooth_maps(4, 8, 8)
    with pytest.raises(ValueError, match="divide"):
        sense.g_factor(maps, 3)
    with pytest.raises(ValueError, match="acceleration"):
        sense.g_factor(maps, 0)
    with pytest.raises(ValueError, match="noise_cov"):
        sense.g_factor(maps, 2, noise_cov=np.eye(3))
