"""Centred orthonormal FFTs: against a dense centred DFT, Parseval, inverses, centring, twins."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrtl_core.fft import fft2c, fft2c_np, ifft2c, ifft2c_np

SIZES = [(8, 8), (7, 5), (6, 9), (1, 4)]


def _centred_dft(n: int) -> np.ndarray:
    """Dense unitary DFT with both index origins at n // 2 (DC in the middle of the array)."""
    idx = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(idx, idx) / n) / np.sqrt(n)


def _random_complex(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("size", SIZES)
def test_matches_dense_centred_dft(size):
    x = _random_complex((3, *size))
    fh, fw = _centred_dft(size[0]), _centred_dft(size[1])
    want = fh @ x @ fw.T
    got = fft2c(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(want)).numpy(), x, atol=1e-12)


@pytest.mark.parametrize("size", SIZES)
def test_parseval_and_inverse(size):
    x = torch.from_numpy(_random_complex((2, 4, *size), seed=1))
    k = fft2c(x)
    torch.testing.assert_close(torch.linalg.vector_norm(k), torch.linalg.vector_norm(x))
    torch.testing.assert_close(ifft2c(k), x)
    torch.testing.assert_close(fft2c(ifft2c(x)), x)
    # Unitary: <F x, y> == <x, F^H y>.
    y = torch.from_numpy(_random_complex((2, 4, *size), seed=2))
    torch.testing.assert_close(torch.vdot(k.flatten(), y.flatten()), torch.vdot(x.flatten(), ifft2c(y).flatten()))


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (6, 9)])
def test_centred_delta_gives_a_constant(size):
    h, w = size
    delta = torch.zeros(size, dtype=torch.complex128)
    delta[h // 2, w // 2] = 1.0
    k = fft2c(delta)
    torch.testing.assert_close(k, torch.full(size, 1 / np.sqrt(h * w), dtype=torch.complex128))


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (6, 9)])
def test_dc_of_a_constant_image_is_at_the_centre(size):
    h, w = size
    k = fft2c(torch.ones(size, dtype=torch.complex128))
    expected = torch.zeros(size, dtype=torch.complex128)
    expected[h // 2, w // 2] = np.sqrt(h * w)  # sum / sqrt(N), orthonormal scaling
    torch.testing.assert_close(k, expected)


@pytest.mark.parametrize("size", SIZES)
def test_numpy_twins_agree(size):
    x = _random_complex((2, *size), seed=3)
    np.testing.assert_allclose(fft2c_np(x), fft2c(torch.from_numpy(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(ifft2c_np(x), ifft2c(torch.from_numpy(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(ifft2c_np(fft2c_np(x)), x, atol=1e-12)


def test_complex64_and_real_input():
    x = torch.randn(2, 6, 5)
    k = fft2c(x)  # real input is promoted
    assert k.dtype == torch.complex64 and k.shape == x.shape
    torch.testing.assert_close(ifft2c(k).real, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ifft2c(k).imag, torch.zeros_like(x), atol=1e-5, rtol=0)
    assert fft2c(x.to(torch.complex64)).dtype == torch.complex64


def test_only_last_two_dims_are_transformed():
    x = torch.from_numpy(_random_complex((3, 2, 4, 6), seed=4))
    k = fft2c(x)
    for i in range(3):
        torch.testing.assert_close(k[i, 1], fft2c(x[i, 1]))


def test_type_errors_name_the_function():
    with pytest.raises(TypeError, match="fft2c"):
        fft2c(np.ones((4, 4)))
    with pytest.raises(TypeError, match="ifft2c"):
        ifft2c(np.ones((4, 4)))
