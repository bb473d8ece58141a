"""Multi-coil SENSE: the forward model ``A = M F S``, CG-SENSE, coil sensitivities from ACS lines, the g-factor.

Shapes (fastMRI conventions): k-space and maps are complex ``(..., C, H, W)`` with ``H`` the
readout (fully sampled) axis and ``W`` the phase-encode axis; an image is ``(..., H, W)``; a mask
is broadcastable to the k-space, usually ``(W,)`` over the phase-encode columns or ``(H, W)``.

``A x = M * fft2c(S * x)`` with ``fft2c`` the centred orthonormal FFT of :mod:`mrtl_core.fft`
(the same transform as sigpy's ``sp.fft`` over the image axes), so ``A`` is sigpy's
``mri.linop.Sense(maps, weights=mask)`` and ``cg_sense(..., lam)`` solves sigpy's
``SenseRecon(..., lamda=lam)`` problem: ``min_x 1/2 ||A x - y||^2 + lam/2 ||x||^2``, whose normal
equations are ``(A^H A + lam I) x = A^H y``.

Two tricks make the normal operator cheap (both exact, both tested against the plain definition):

* **No shifts inside the loop.** ``fft2c = fftshift . fft2 . ifftshift``. Shifts are permutations,
  they commute with element-wise products once *every* factor is permuted the same way
  (``a * fftshift(b) == fftshift(ifftshift(a) * b)``), and inner products are permutation
  invariant. So CG runs on ``x' = ifftshift(x)`` with ``S' = ifftshift(S)`` and the k-space weights
  ``|M'|^2 = ifftshift(|M|^2)``; the normal operator becomes ``sum_c conj(S'_c) F^-1 |M'|^2 F (S'_c x')``
  with plain ``torch.fft`` calls, and the image is shifted back once at the end.
* **Readout decoupling.** A column mask ``(W,)`` does not vary along the readout ``H``. The 2-D DFT is
  ``F_H (x) F_W`` and the mask acts on ``W`` only, so ``F^-1 M F = I_H (x) F_W^-1 M F_W``: the
  readout FFTs cancel and each CG iteration needs ``C`` 1-D FFTs (and ``C`` inverse ones) along
  ``W`` -- half the work of 2-D FFTs. (A full ``(H, W)`` mask uses 2-D FFTs.)

The forward/adjoint pair is the plain definition and is what the adjoint (dot) test checks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .fft import fft2c, ifft2c
from .masks import center_lines

__all__ = ["Linop", "SenseOp", "cg_sense", "data_consistency", "estimate_maps", "detect_acs", "g_factor"]

ArrayLike = torch.Tensor | np.ndarray

# CG checks "has every item converged?" on the host once every this many iterations: one
# device-to-host sync per block instead of one per iteration. Convergence itself is decided on the
# device every iteration (converged items are frozen), so checking late costs only a few cheap
# no-op iterations and never changes the answer.
CHECK_EVERY = 5


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _as_tensor(name: str, value: ArrayLike) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _as_complex(name: str, value: ArrayLike, min_ndim: int) -> torch.Tensor:
    t = _as_tensor(name, value)
    if not t.is_complex():
        raise TypeError(f"{name} must be complex (complex64 or complex128), got dtype {t.dtype}")
    if t.dtype not in (torch.complex64, torch.complex128):
        raise TypeError(f"{name} must be complex64 or complex128, got dtype {t.dtype}")
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dims, got shape {tuple(t.shape)}")
    return t


def _check_finite(name: str, t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} non-finite values (NaN or Inf), shape {tuple(t.shape)}")


def _as_mask(mask: ArrayLike, shape: Sequence[int], real_dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A real weight tensor broadcastable to ``shape`` = (..., C, H, W); validates its columns."""
    m = _as_tensor("mask", mask)
    if m.is_complex():
        raise TypeError(f"mask must be real (bool, integer or float), got dtype {m.dtype}")
    if m.ndim == 0:
        raise ValueError(f"mask must have a last axis of length W={shape[-1]}, got a scalar")
    if m.shape[-1] != shape[-1]:
        raise ValueError(
            f"mask has {m.shape[-1]} columns but the k-space has W={shape[-1]} phase-encode columns "
            f"(mask shape {tuple(m.shape)}, k-space shape {tuple(shape)})"
        )
    try:
        full = torch.broadcast_shapes(tuple(m.shape), tuple(shape))
    except RuntimeError:
        full = None
    if full != tuple(shape):
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to the k-space shape {tuple(shape)}")
    m = m.to(device=device, dtype=real_dtype)
    _check_finite("mask", m)
    return m


# --------------------------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------------------------
class Linop:
    """A linear map as a callable with its adjoint, sigpy style: ``L(x)``, ``L.H(y)``, shapes.

    Args:
        apply: ``x -> L x`` for inputs of shape ``ishape``.
        apply_adjoint: ``y -> L^H y`` for inputs of shape ``oshape``.
        ishape, oshape: the input and output shapes (leading dims broadcast).

    :attr:`SenseOp.H` and :attr:`SenseOp.N` are ``Linop`` views of a SENSE operator's adjoint and
    normal operator; they call the operator's own methods, so they compute exactly what those do.
    """

    def __init__(self, apply: Callable[[torch.Tensor], torch.Tensor],
                 apply_adjoint: Callable[[torch.Tensor], torch.Tensor],
                 ishape: tuple[int, ...], oshape: tuple[int, ...]):
        self._apply, self._apply_adjoint = apply, apply_adjoint
        self.ishape, self.oshape = tuple(ishape), tuple(oshape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``L x``: ``ishape`` -> ``oshape``."""
        return self._apply(x)

    @property
    def H(self) -> "Linop":
        """The adjoint ``L^H``: ``oshape`` -> ``ishape``."""
        return Linop(self._apply_adjoint, self._apply, self.oshape, self.ishape)

    def __repr__(self) -> str:
        return f"Linop(ishape={self.ishape}, oshape={self.oshape})"


class SenseOp:
    """The multi-coil Cartesian SENSE operator ``A = M F S`` (sigpy-style linear operator).

    Args:
        maps: coil sensitivities ``(..., C, H, W)`` complex64/complex128 (torch or numpy).
        mask: sampling mask broadcastable to ``maps`` -- ``(W,)`` columns (fastMRI), ``(H, W)``, or
            per-slice ``(..., 1, 1, W)``; boolean or real weights (``A`` multiplies by it).

    Attributes:
        ishape: image shape ``(..., H, W)``; oshape: k-space shape ``(..., C, H, W)``.
        columns_only: the mask is constant along the readout ``H`` (1-D FFTs in ``A^H A``).
        shift_dims: the image axes the normal operator's shifted coordinates permute: ``(-1,)``
            for a column mask, else ``(-2, -1)`` (see :meth:`to_shifted`).

    ``forward(x)`` (also ``op(x)``) image -> masked k-space, ``adjoint(y)`` k-space -> image,
    ``normal(x)`` is ``A^H A x`` computed with the shift-free, readout-decoupled kernel described in
    the module docstring; ``op.H`` and ``op.N`` are the same adjoint and normal operator as
    :class:`Linop` objects (sigpy's ``A.H``, ``A.N``). Iterative solvers work in the shifted
    coordinates: :meth:`to_shifted`, :meth:`normal_shifted`, :meth:`from_shifted` (as
    :func:`cg_sense` does). Image leading dims broadcast against the maps' leading dims.
    """

    def __init__(self, maps: ArrayLike, mask: ArrayLike):
        self.maps = _as_complex("maps", maps, 3)
        _check_finite("maps", self.maps)
        self.real_dtype = self.maps.real.dtype
        self.mask = _as_mask(mask, self.maps.shape, self.real_dtype, self.maps.device)
        self.oshape = tuple(self.maps.shape)
        self.ishape = self.oshape[:-3] + self.oshape[-2:]
        # A column mask (constant along H) lets the readout FFT cancel in A^H A.
        self.columns_only = self.mask.ndim < 2 or self.mask.shape[-2] == 1
        self.shift_dims: tuple[int, ...] = (-1,) if self.columns_only else (-2, -1)
        # Pre-shifted copies for the normal operator (see the module docstring).
        self._maps_s = torch.fft.ifftshift(self.maps, dim=self.shift_dims).contiguous()
        self._maps_s_conj = self._maps_s.conj().resolve_conj()
        weights = self.mask * self.mask  # M^H M for real weights
        self._weights_s = torch.fft.ifftshift(weights, dim=self.shift_dims).contiguous()
        self._buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- plain definitions -----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``M F S x``: image ``(..., H, W)`` -> masked k-space ``(..., C, H, W)``."""
        return fft2c(self.maps * x.unsqueeze(-3)) * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``S^H F^H M y``: k-space ``(..., C, H, W)`` -> image ``(..., H, W)``."""
        return (self.maps.conj() * ifft2c(y * self.mask)).sum(dim=-3)

    __call__ = forward

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for an image ``(..., H, W)`` (fast kernel; equals ``adjoint(forward(x))``)."""
        return self.from_shifted(self.normal_shifted(self.to_shifted(x)))

    @property
    def H(self) -> Linop:
        """The adjoint ``A^H`` as a :class:`Linop` (k-space ``(..., C, H, W)`` -> image): calls :meth:`adjoint`."""
        return Linop(self.adjoint, self.forward, self.oshape, self.ishape)

    @property
    def N(self) -> Linop:
        """The normal operator ``A^H A`` as a :class:`Linop` (image -> image, self-adjoint): calls :meth:`normal`."""
        return Linop(self.normal, self.normal, self.ishape, self.ishape)

    # -- fast kernel, in shifted coordinates -------------------------------------------------
    def to_shifted(self, x: torch.Tensor) -> torch.Tensor:
        """An image ``(..., H, W)`` in the normal operator's coordinates: ``ifftshift`` over :attr:`shift_dims`."""
        return torch.fft.ifftshift(x, dim=self.shift_dims)

    def from_shifted(self, x_s: torch.Tensor) -> torch.Tensor:
        """Back from :meth:`to_shifted`'s coordinates: ``fftshift`` over :attr:`shift_dims`."""
        return torch.fft.fftshift(x_s, dim=self.shift_dims)

    def normal_shifted(self, x_s: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A^H A`` in shifted coordinates: ``to_shifted(normal(x)) == normal_shifted(to_shifted(x))``.

        Computes ``sum_c conj(S'_c) F^-1 |M'|^2 F (S'_c x')`` with plain (unshifted) FFTs and
        buffers reused between calls of the same shape, so a solver that stays in these
        coordinates pays for no shift per iteration.

        Args:
            x_s: image ``(..., H, W)`` in shifted coordinates (:meth:`to_shifted`).
            out: optional ``(..., H, W)`` tensor to write the result into.

        Returns:
            ``(..., H, W)``, shifted coordinates (``out`` if given).
        """
        shape = torch.broadcast_shapes(x_s.shape[:-2] + (1,) + x_s.shape[-2:], self._maps_s.shape)
        key = (shape, x_s.dtype, x_s.device)
        if key not in self._buffers:
            self._buffers[key] = (
                torch.empty(shape, dtype=x_s.dtype, device=x_s.device),
                torch.empty(shape, dtype=x_s.dtype, device=x_s.device),
            )
        b1, b2 = self._buffers[key]
        torch.mul(self._maps_s, x_s.unsqueeze(-3), out=b1)
        if self.columns_only:
            torch.fft.fft(b1, dim=-1, norm="ortho", out=b2)
            b2.mul_(self._weights_s)
            torch.fft.ifft(b2, dim=-1, norm="ortho", out=b1)
        else:
            torch.fft.fft2(b1, norm="ortho", out=b2)
            b2.mul_(self._weights_s)
            torch.fft.ifft2(b2, norm="ortho", out=b1)
        b1.mul_(self._maps_s_conj)
        if out is None:
            return b1.sum(dim=-3)
        return torch.sum(b1, dim=-3, out=out)

    def __repr__(self) -> str:
        kind = "columns (1-D FFTs in A^H A)" if self.columns_only else "2-D"
        return f"SenseOp(ishape={self.ishape}, oshape={self.oshape}, mask={kind}, dtype={self.maps.dtype})"


# --------------------------------------------------------------------------------------------
# CG-SENSE
# --------------------------------------------------------------------------------------------
def _sqnorm(t: torch.Tensor) -> torch.Tensor:
    """Per-image ``||t||^2`` over the last two dims, shape ``(..., 1, 1)``, real."""
    return torch.view_as_real(t).square().sum(dim=(-3, -2, -1)).unsqueeze(-1).unsqueeze(-1)


def _redot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image ``Re <a, b>`` over the last two dims, shape ``(..., 1, 1)``."""
    return (torch.view_as_real(a) * torch.view_as_real(b)).sum(dim=(-3, -2, -1)).unsqueeze(-1).unsqueeze(-1)


def cg_sense(
    kspace: ArrayLike,
    maps: ArrayLike,
    mask: ArrayLike,
    lam: float = 0.0,
    max_iter: int = 30,
    tol: float = 1e-6,
    x0: torch.Tensor | None = None,
    return_history: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """CG-SENSE: solve ``(A^H A + lam I) x = A^H y`` by conjugate gradients, batched.

    Args:
        kspace: measured k-space ``y`` ``(..., C, H, W)`` complex (unsampled entries are ignored:
            ``A^H`` applies the mask).
        maps: sensitivities, same shape as ``kspace`` (or with fewer/broadcastable leading dims).
        mask: broadcastable to ``kspace``: ``(W,)``, ``(H, W)`` or per-slice ``(..., 1, 1, W)``.
        lam: Tikhonov weight ``>= 0`` (sigpy ``SenseRecon``'s ``lamda``: ``+ lam/2 ||x||^2``).
        max_iter: maximum CG iterations (>= 1).
        tol: stop an item once ``||r_k|| / ||A^H y|| <= tol`` (``r_k`` the normal-equation residual).
        x0: optional starting image ``(..., H, W)``.
        return_history: also return the relative residuals.

    Returns:
        The complex image ``(..., H, W)`` on the k-space's device and dtype; with
        ``return_history``, also a real tensor ``(..., n)`` of ``||r_k|| / ||A^H y||`` after each of
        the ``n`` iterations run (an item that converged early keeps its final value).

    Each batch item has its own step sizes (``alpha``, ``beta`` are ``(..., 1, 1)`` tensors) and is
    frozen on the device once it meets ``tol``. The loop never calls ``.item()``: the host checks
    "all converged?" once every ``CHECK_EVERY`` iterations (one sync per block).
    """
    y = _as_complex("kspace", kspace, 3)
    maps_t = _as_complex("maps", maps, 3)
    if maps_t.shape[-3:] != y.shape[-3:]:
        raise ValueError(
            f"maps shape {tuple(maps_t.shape)} does not match kspace shape {tuple(y.shape)} "
            "(need the same (C, H, W))"
        )
    try:
        bshape = torch.broadcast_shapes(maps_t.shape, y.shape)
    except RuntimeError:
        bshape = None
    if bshape != tuple(y.shape):
        raise ValueError(f"maps shape {tuple(maps_t.shape)} does not broadcast to kspace shape {tuple(y.shape)}")
    if maps_t.dtype != y.dtype or maps_t.device != y.device:
        raise TypeError(
            f"maps ({maps_t.dtype}, {maps_t.device}) must match kspace ({y.dtype}, {y.device}) in dtype and device"
        )
    if not isinstance(lam, (int, float, np.integer, np.floating)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not isinstance(tol, (int, float, np.integer, np.floating)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    _check_finite("kspace", y)

    # Shared maps (fewer leading dims) become a view of the k-space's shape, so that per-slice
    # masks broadcast against them too.
    op = SenseOp(maps_t.expand(y.shape), mask)  # checks maps (finite) and mask
    # Both would give A = 0 and a silent all-zero image: no coil sees anything, or nothing was measured.
    if not bool((op.mask != 0).any()):
        raise ValueError(f"mask samples no k-space column (mask shape {tuple(op.mask.shape)}): nothing to reconstruct")
    if not bool((maps_t != 0).any()):
        raise ValueError(f"maps are all zero (shape {tuple(maps_t.shape)}): no coil sensitivity, nothing to reconstruct")
    lam = float(lam)

    # Right-hand side, then everything in shifted coordinates (module docstring).
    b = op.to_shifted(op.adjoint(y)).contiguous()
    if x0 is not None:
        x0 = _as_complex("x0", x0, 2)
        if x0.shape != b.shape:
            raise ValueError(f"x0 shape {tuple(x0.shape)} must be the image shape {tuple(b.shape)}")
        _check_finite("x0", x0)
        x = op.to_shifted(x0.to(device=b.device, dtype=b.dtype)).contiguous()
        r = b - op.normal_shifted(x)
        if lam:
            r.sub_(x, alpha=lam)
    else:
        x = torch.zeros_like(b)
        r = b.clone()

    tiny = torch.finfo(op.real_dtype).tiny
    bnorm2 = _sqnorm(b)
    thresh = (float(tol) ** 2) * bnorm2  # converged when ||r||^2 <= tol^2 ||b||^2
    inv_bnorm = bnorm2.clamp_min(tiny).rsqrt()
    p = r.clone()
    ap = torch.empty_like(b)
    rs = _sqnorm(r)
    active = rs > thresh
    history = torch.zeros(b.shape[:-2] + (max_iter,), dtype=op.real_dtype, device=b.device)

    n_run = 0
    for k in range(max_iter):
        op.normal_shifted(p, out=ap)
        if lam:
            ap.add_(p, alpha=lam)
        pap = _redot(p, ap)
        # p^H (A^H A + lam I) p > 0 unless p = 0; guard the 0/0 of an exactly solved item.
        alpha = torch.where(active & (pap > 0), rs / pap.clamp_min(tiny), torch.zeros_like(rs))
        x.add_(p * alpha)
        r.sub_(ap * alpha)
        rs_new = _sqnorm(r)
        beta = torch.where(active, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p.mul_(beta).add_(r)
        rs = rs_new
        history[..., k] = (rs.sqrt() * inv_bnorm)[..., 0, 0]
        active = active & (rs > thresh)
        n_run = k + 1
        if n_run % CHECK_EVERY == 0 and n_run < max_iter and not bool(active.any()):
            break

    image = op.from_shifted(x)
    if return_history:
        return image, history[..., :n_run]
    return image


def data_consistency(
    image: ArrayLike,
    kspace: ArrayLike,
    maps: ArrayLike,
    mask: ArrayLike,
    lam: float = 0.05,
    max_iter: int = 30,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Pull an image estimate toward the measured data: ``argmin_x ||A x - y||^2 + lam ||x - x_ref||^2``.

    Solves the normal equations ``(A^H A + lam I) x = A^H y + lam x_ref`` with ``A = M F S``.
    Writing ``x = x_ref + d`` turns them into CG-SENSE on the data residual,
    ``(A^H A + lam I) d = A^H (y - A x_ref)``, so this is :func:`cg_sense` (same kernel, same
    batching) applied to ``y - A x_ref``. Small ``lam`` trusts the measured k-space where it was
    sampled; large ``lam`` keeps ``x_ref``. Where ``A`` has a null space (unsampled columns that
    the coils cannot recover) the answer keeps ``x_ref``'s content for any ``lam > 0``.

    Args:
        image: the reference ``x_ref`` ``(..., H, W)``, complex (e.g. a network's magnitude with a
            phase estimate), on the k-space grid (``H`` includes any readout oversampling).
        kspace, maps, mask: as in :func:`cg_sense`.
        lam: weight ``> 0`` of the pull toward ``image``.
        max_iter, tol: CG settings, as in :func:`cg_sense`.

    Returns:
        The complex image ``(..., H, W)``, the k-space's dtype and device.
    """
    if not isinstance(lam, (int, float, np.integer, np.floating)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    y = _as_complex("kspace", kspace, 3)
    x_ref = _as_complex("image", image, 2)
    if x_ref.shape[-2:] != y.shape[-2:]:
        raise ValueError(
            f"image shape {tuple(x_ref.shape)} must match the k-space grid (H, W) = {tuple(y.shape[-2:])}"
        )
    _check_finite("image", x_ref)
    x_ref = x_ref.to(device=y.device, dtype=y.dtype)
    maps_t = _as_complex("maps", maps, 3)
    if maps_t.shape[-3:] != y.shape[-3:] or maps_t.dtype != y.dtype:
        raise ValueError(
            f"maps ({maps_t.dtype}, shape {tuple(maps_t.shape)}) must match kspace ({y.dtype}, shape {tuple(y.shape)})"
        )
    op = SenseOp(maps_t.expand(y.shape), mask)
    residual = y * op.mask - op.forward(x_ref)
    return x_ref + cg_sense(residual, maps_t, mask, lam=float(lam), max_iter=max_iter, tol=tol)


# --------------------------------------------------------------------------------------------
# sensitivity maps from the ACS block
# --------------------------------------------------------------------------------------------
def detect_acs(kspace: ArrayLike) -> slice:
    """The contiguous block of fully sampled columns around the centre of ``kspace`` ``(..., H, W)``.

    A column counts as sampled when it holds any non-zero value (in any slice, coil or row).
    """
    y = _as_tensor("kspace", kspace)
    w = y.shape[-1]
    sampled = (y.reshape(-1, y.shape[-2], w) != 0).any(dim=1).all(dim=0).cpu().numpy()
    c = w // 2
    if not sampled[c]:
        raise ValueError(f"kspace has no sampled centre column (W={w}, column {c} is empty): cannot find the ACS block")
    lo, hi = c, c + 1
    while lo > 0 and sampled[lo - 1]:
        lo -= 1
    while hi < w and sampled[hi]:
        hi += 1
    return slice(lo, hi)


def estimate_maps(
    kspace: ArrayLike,
    center_fraction: float | None = None,
    acs: slice | None = None,
    method: str = "espirit",
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Coil sensitivities ``(..., C, H, W)`` from the fully sampled centre (ACS) columns.

    Args:
        kspace: k-space ``(..., C, H, W)`` complex, torch or numpy, fully or under-sampled.
        center_fraction: the ACS block is :func:`mrtl_core.masks.center_lines` ``(W, center_fraction)``
            -- the same block the masks keep.
        acs: explicit slice of ACS columns (overrides ``center_fraction``). With neither, the block
            of fully sampled columns around the centre is found from the data (:func:`detect_acs`).
        method: ``"espirit"`` -- sigpy's ``mri.app.EspiritCalib`` with ``calib_width`` = the ACS
            width, ``kernel_width``, ``thresh``, ``crop`` (maps are zero where no eigenvalue exceeds
            ``crop``, i.e. outside the object); ``"lowres"`` -- low-resolution coil images from the
            ACS block (Hann-windowed) divided by their root-sum-of-squares: fast, no background mask.
        eps: relative floor of the RSS in ``"lowres"``.

    Returns:
        torch complex ``(..., C, H, W)`` with the input's complex dtype (complex64 for numpy
        complex64) and device; ``sum_c |S_c|^2 = 1`` where the maps are defined.
    """
    y = _as_complex("kspace", kspace, 3)
    _check_finite("kspace", y)
    w = y.shape[-1]
    if method not in ("espirit", "lowres"):
        raise ValueError(f"method must be 'espirit' or 'lowres', got {method!r}")
    if acs is None:
        if center_fraction is not None:
            if not (isinstance(center_fraction, (int, float, np.floating)) and 0 < center_fraction <= 1):
                raise ValueError(f"center_fraction must lie in (0, 1], got {center_fraction!r}")
            acs = center_lines(w, float(center_fraction))
        else:
            acs = detect_acs(y)
    if not isinstance(acs, slice):
        raise TypeError(f"acs must be a slice of columns, got {type(acs).__name__}")
    start, stop, step = acs.indices(w)
    width = stop - start
    if step != 1 or width < 2:
        raise ValueError(f"acs must be a contiguous slice of >= 2 columns within W={w}, got {acs!r}")

    if method == "lowres":
        return _lowres_maps(y, slice(start, stop), eps)

    if width <= kernel_width:
        raise ValueError(
            f"the ACS block ({width} columns, {acs!r}) must be wider than kernel_width={kernel_width} for ESPIRiT"
        )
    import sigpy.mri  # deferred: importing sigpy takes seconds

    # EspiritCalib calibrates on a centred square of calib_width; centre the ACS block first so
    # that square is the ACS block even when the block is off by one from W // 2. The roll
    # multiplies every coil image by the same linear phase, which EspiritCalib removes when it
    # references all maps to coil 0's phase (maps *= conj(maps[0] / |maps[0]|)).
    shift = (w // 2) - (start + width // 2)
    arr = torch.roll(y, shifts=shift, dims=-1).detach().cpu().numpy() if shift else y.detach().cpu().numpy()
    lead = arr.shape[:-3]
    flat = arr.reshape((-1,) + arr.shape[-3:])
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i] = sigpy.mri.app.EspiritCalib(
            flat[i], calib_width=width, thresh=thresh, kernel_width=kernel_width, crop=crop, show_pbar=False
        ).run()
    # sigpy divides by |maps[0]|: a pixel where coil 0 is exactly zero would be NaN; make it 0.
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    maps = torch.from_numpy(out.reshape(lead + arr.shape[-3:]).astype(arr.dtype, copy=False))
    return maps.to(y.device)


def _lowres_maps(y: torch.Tensor, acs: slice, eps: float) -> torch.Tensor:
    w = y.shape[-1]
    width = acs.stop - acs.start
    window = torch.zeros(w, dtype=y.real.dtype, device=y.device)
    window[acs] = torch.hann_window(width + 2, periodic=False, dtype=y.real.dtype, device=y.device)[1:-1]
    low = ifft2c(y * window)
    rss = low.abs().square().sum(dim=-3, keepdim=True).sqrt()
    floor = eps * rss.flatten(-3).amax(dim=-1)[..., None, None, None]
    return low / torch.maximum(rss, floor.clamp_min(torch.finfo(rss.dtype).tiny))


def g_factor(maps: ArrayLike, acceleration: int, noise_cov: ArrayLike | None = None) -> torch.Tensor:
    """Analytic SENSE g-factor for regular 1-D Cartesian under-sampling along ``W``.

    Sampling every ``R``-th phase-encode column (equispaced, no ACS block; the offset does not
    matter) folds the image ``R`` times along ``W``: pixel ``w`` is aliased with
    ``w + k W/R`` (``k = 1..R-1``). For each such set, with ``S`` the ``C x R`` matrix of the
    coil sensitivities at the ``R`` pixels and ``Psi`` the coil noise covariance,

        g_p = sqrt( [(S^H Psi^-1 S)^-1]_pp [S^H Psi^-1 S]_pp )    (Pruessmann et al., 1999),

    so that the noise std of the unfolded image is ``g sqrt(R)`` times that of the fully sampled
    one (with k-space noise of the same variance per sample and the orthonormal FFT).

    Args:
        maps: sensitivities ``(..., C, H, W)`` complex; ``W`` must be divisible by ``acceleration``.
        acceleration: the integer ``R >= 1``.
        noise_cov: optional coil noise covariance ``(C, C)`` (Hermitian positive definite);
            ``None`` is white noise of equal variance in every coil (``Psi = I``).

    Returns:
        Real tensor ``(..., H, W)`` (float64 for complex128 maps, else float32). Where the maps
        vanish (``sum_c |s_c|^2`` at most ``eps`` times its maximum, ``eps`` the dtype's machine
        epsilon) the pixel carries no signal and is excluded from its aliased set (as SENSE with a
        support mask does): ``g`` is 0 there. If a set has more non-vanishing pixels than the coils
        can separate (more than ``C``, or a numerically singular ``S^H Psi^-1 S``), ``g`` is ``inf``
        for those pixels; nearly singular sets give very large finite values.
    """
    s = _as_complex("maps", maps, 3)
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, np.integer)) or acceleration < 1:
        raise ValueError(f"acceleration must be an integer >= 1, got {acceleration!r}")
    r = int(acceleration)
    c, h, w = s.shape[-3:]
    if w % r:
        raise ValueError(f"acceleration {r} does not divide the phase-encode size W = {w}")
    out_dtype = s.real.dtype
    s = s.to(torch.complex128)  # the small solves are cheap; do them in double precision
    if noise_cov is not None:
        psi = _as_tensor("noise_cov", noise_cov).to(s.device, torch.complex128)
        if psi.shape != (c, c):
            raise ValueError(f"noise_cov must be ({c}, {c}) for {c} coils, got {tuple(psi.shape)}")
        # Pre-whiten: with Psi = L L^H, S^H Psi^-1 S = (L^-1 S)^H (L^-1 S).
        chol, info = torch.linalg.cholesky_ex(psi)
        if int(info):
            raise ValueError("noise_cov is not Hermitian positive definite")
        flat = s.movedim(-3, -1).unsqueeze(-1)                                # (..., H, W, C, 1)
        s = torch.linalg.solve_triangular(chol, flat, upper=False).squeeze(-1).movedim(-1, -3)
    step = w // r
    # (..., C, H, W) -> (..., H, step, C, R): column k*step + j of the image is alias k of set j.
    nl = s.ndim - 3
    a = s.reshape(*s.shape[:-1], r, step)                                   # (..., C, H, R, step)
    a = a.permute(*range(nl), nl + 1, nl + 3, nl, nl + 2)                   # (..., H, step, C, R)
    gram = a.mH @ a                                                         # (..., H, step, R, R)
    diag = gram.diagonal(dim1=-2, dim2=-1).real                             # (..., H, step, R)
    peak = diag.flatten(-3).amax(dim=-1)[..., None, None, None]
    live = diag > torch.finfo(out_dtype).eps * peak
    # Decouple vanished pixels (identity rows/columns): the inverse on the live block is then
    # exactly the inverse of the live sub-matrix.
    both = live.unsqueeze(-1) & live.unsqueeze(-2)
    eye = torch.eye(r, dtype=gram.dtype, device=gram.device)
    gram_live = torch.where(both, gram, eye)
    chol, info = torch.linalg.cholesky_ex(gram_live)
    # More live aliases than coils is singular in exact arithmetic; round-off may hide it.
    info = torch.where(live.sum(dim=-1) > c, torch.ones_like(info), info)
    failed = (info != 0)[..., None, None]
    chol = torch.where(failed, eye, chol)                  # singular sets: set to inf below
    inv_diag = torch.cholesky_inverse(chol).diagonal(dim1=-2, dim2=-1).real
    g = (inv_diag * diag).clamp_min(0).sqrt()
    g = torch.where(live, g, torch.zeros_like(g))
    g = torch.where((info != 0)[..., None] & live, torch.full_like(g, math.inf), g)
    # (..., H, step, R) -> (..., H, W) with w = k*step + j.
    return g.transpose(-1, -2).reshape(*g.shape[:-2], w).to(out_dtype)
