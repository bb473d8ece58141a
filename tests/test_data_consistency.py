"""sense.data_consistency against a dense solve of (A^H A + lam I) x = A^H y + lam x_ref."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core.fft import fft2c_np
from mrtl_core.sense import cg_sense, data_consistency


def _problem(seed: int = 0, coils: int = 3, h: int = 8, w: int = 6):
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((coils, h, w)) + 1j * rng.standard_normal((coils, h, w))
    mask = rng.random(w) > 0.5
    mask[w // 2] = True
    x_true = rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))
    y = fft2c_np(maps * x_true) * mask
    x_ref = x_true + 0.3 * (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w)))
    return maps, mask, y, x_ref


def _dense_A(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A = M F S as an explicit matrix, column by column from unit images (numpy FFT, float64)."""
    c, h, w = maps.shape
    cols = []
    for k in range(h * w):
        e = np.zeros(h * w, complex)
        e[k] = 1
        cols.append((fft2c_np(maps * e.reshape(h, w)) * mask).ravel())
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("lam", [0.01, 0.5, 10.0])
def test_matches_dense_solve(lam):
    maps, mask, y, x_ref = _problem()
    A = _dense_A(maps, mask)
    n = A.shape[1]
    rhs = A.conj().T @ y.ravel() + lam * x_ref.ravel()
    x_dense = np.linalg.solve(A.conj().T @ A + lam * np.eye(n), rhs).reshape(x_ref.shape)
    x = data_consistency(torch.from_numpy(x_ref), torch.from_numpy(y), torch.from_numpy(maps),
                         torch.from_numpy(mask), lam=lam, max_iter=200, tol=1e-12).numpy()
    assert np.linalg.norm(x - x_dense) / np.linalg.norm(x_dense) < 1e-8


def test_limits_and_batching():
    maps, mask, y, x_ref = _problem(seed=1)
    t = {k: torch.from_numpy(v) for k, v in dict(maps=maps, mask=mask, y=y, x=x_ref).items()}
    # huge lam keeps the reference; tiny lam approaches the minimum-norm-change least-squares fit
    far = data_consistency(t["x"], t["y"], t["maps"], t["mask"], lam=1e8, max_iter=50, tol=1e-14).numpy()
    assert np.linalg.norm(far - x_ref) / np.linalg.norm(x_ref) < 1e-6
    near = data_consistency(t["x"], t["y"], t["maps"], t["mask"], lam=1e-6, max_iter=300, tol=1e-14)
    resid_near = np.linalg.norm((fft2c_np(maps * near.numpy()) * mask) - y)
    resid_ref = np.linalg.norm((fft2c_np(maps * x_ref) * mask) - y)
    assert resid_near < 1e-3 * resid_ref
    # batched over a leading dim equals one item at a time; x_ref = 0 reduces to CG-SENSE
    xb = torch.stack([t["x"], 2 * t["x"]])
    yb = torch.stack([t["y"], t["y"]])
    batched = data_consistency(xb, yb, t["maps"].expand(2, *maps.shape), t["mask"], lam=0.1, max_iter=100, tol=1e-12)
    single = data_consistency(2 * t["x"], t["y"], t["maps"], t["mask"], lam=0.1, max_iter=100, tol=1e-12)
    assert torch.allclose(batched[1], single, atol=1e-9)
    zero = data_consistency(torch.zeros_like(t["x"]), t["y"], t["maps"], t["mask"], lam=0.1, max_iter=100, tol=1e-12)
    cg = cg_sense(t["y"], t["maps"], t["mask"], lam=0.1, max_iter=100, tol=1e-12)
    assert torch.allclose(zero, cg, atol=1e-9)


def test_bad_inputs():
    maps, mask, y, x_ref = _problem()
    t = {k: torch.from_numpy(v) for k, v in dict(maps=maps, mask=mask, y=y, x=x_ref).items()}
    with pytest.raises(ValueError, match="lam"):
        data_consistency(t["x"], t["y"], t["maps"], t["mask"], lam=0.0)
    with pytest.raises(ValueError, match="image shape"):
        data_consistency(t["x"][:-1], t["y"], t["maps"], t["mask"])
    with pytest.raises(TypeError, match="image"):
        data_consistency(t["x"].real, t["y"], t["maps"], t["mask"])
