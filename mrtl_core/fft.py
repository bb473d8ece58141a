"""Centred, orthonormal 2-D Fourier transforms over the last two dimensions.

MRI k-space has its DC sample in the middle of the array, so every transform is wrapped in
``ifftshift`` / ``fftshift``. ``norm="ortho"`` makes the transform unitary: ``||fft2c(x)|| == ||x||``,
which keeps noise levels and the SENSE operator's adjoint exact.

Shapes: ``(..., H, W)`` complex in, ``(..., H, W)`` complex out. Real tensors are promoted.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["fft2c", "ifft2c", "fft2c_np", "ifft2c_np"]

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT: image ``(..., H, W)`` -> k-space ``(..., H, W)``."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"fft2c: expected a torch.Tensor, got {type(image).__name__}")
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT: k-space ``(..., H, W)`` -> image ``(..., H, W)``."""
    if not isinstance(kspace, torch.Tensor):
        raise TypeError(f"ifft2c: expected a torch.Tensor, got {type(kspace).__name__}")
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def fft2c_np(image: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`fft2c` (used by the simulator, which works in NumPy)."""
    shifted = np.fft.ifftshift(image, axes=_DIMS)
    return np.fft.fftshift(np.fft.fft2(shifted, axes=_DIMS, norm="ortho"), axes=_DIMS)


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`ifft2c`."""
    shifted = np.fft.ifftshift(kspace, axes=_DIMS)
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=_DIMS, norm="ortho"), axes=_DIMS)
