"""Multi-coil SENSE: the forward model ``A = M F S``, CG-SENSE, coil sensitivities from ACS lines, the g-factor.

Shapes (fastMRI conventions): k-space and maps are complex ``(..., C, H, W)`` with ``H`` the
readout (fully sampled) axis and ``W`` the phase-encode axis; an image is ``(..., H, W)``; a mask
is broadcastable to the k-space, usually ``(W,)`` over the phase-encode columns or ``(H, W)``.

``A x = M * fft2c(S * x)`` with ``fft2c`` the centred orthonormal FFT of :mod:`mrtl_core.fft`
(the same transform as sigpy's ``sp.fft`` over the image axes), so ``A`` is sigpy's
``mri.linop.Sense(maps, weights=mask)`` and ``cg_sense(..., lam)`` solves sigpy's
``SenseRecon(..., lamda=lam)`` problem: ``min_x 1/2 ||A x - y||^2 + lam/2 ||x||^2``, whose normal
equations are ``(A^H A + lam I) x = A^H y``.

Three tricks make the normal operator cheap (all exact, all tested against the plain definition):

* **No shifts at all.** ``fft2c = fftshift . fft2 . ifftshift``, and the shifts are cyclic rolls.
  ``ifft2c |M|^2 fft2c = roll . G . roll^-1`` with ``G = F^-1 |M'|^2 F`` and ``|M'|^2 = ifftshift(|M|^2)``
  (the weights in plain FFT order); ``G`` is a convolution (circulant), so it commutes with rolls and
  ``ifft2c |M|^2 fft2c = G``. The normal operator is ``sum_c conj(S_c) G (S_c x)`` on the image and
  maps as they are, with plain ``torch.fft`` calls. (:meth:`SenseOp.normal_shifted` offers the same
  kernel in rolled coordinates, ``x' = ifftshift(x)``, ``S' = ifftshift(S)``, for callers that keep
  them.) :func:`cg_sense`'s right-hand side ``A^H y`` uses the even-size identity
  ``ifft2c(u) = s c * ifft2(c * u)`` (``c`` the ``(-1)^(row+col)`` checkerboard, ``s`` a sign):
  sign flips instead of two rolls of the coil stack.
* **Unnormalised FFTs.** The ``1/W`` (``1/(H W)``) of the forward/inverse pair is folded into the
  weights ``|M'|^2``: an ``"ortho"`` FFT scales in a separate pass over the coil stack.
* **Readout decoupling.** A column mask ``(W,)`` does not vary along the readout ``H``. The 2-D DFT is
  ``F_H (x) F_W`` and the mask acts on ``W`` only, so ``F^-1 M F = I_H (x) F_W^-1 M F_W``: the
  readout FFTs cancel and each CG iteration needs ``C`` 1-D FFTs (and ``C`` inverse ones) along
  ``W`` -- half the work of 2-D FFTs. (A full ``(H, W)`` mask uses 2-D FFTs.) The rows are then
  independent, and on a CPU the kernel runs them in blocks whose coil stack stays in cache across the
  five passes of an iteration (multiply, FFT, weight, inverse FFT, multiply-and-sum over coils).

The forward/adjoint pair is the plain definition and is what the adjoint (dot) test checks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .fft import fft2c, ifft2c
from .masks import center_lines

__all__ = ["Linop", "SenseOp", "cg_sense", "data_consistency", "estimate_maps", "scanner_maps", "maps_estimator", "MAPS_CODE_VERSION", "detect_acs",
           "g_factor"]

ArrayLike = torch.Tensor | np.ndarray

# CG checks "has every item converged?" on the host once every this many iterations: one
# device-to-host sync per block instead of one per iteration. Convergence itself is decided on the
# device every iteration (converged items are frozen), so checking late costs only a few cheap
# no-op iterations and never changes the answer.
CHECK_EVERY = 5

# Bytes of coil stack the CPU normal operator processes per block of rows (column masks): the block's
# intermediates and maps rows stay in a core's L2 share across the passes of one block (measured on a
# 2-core Xeon: 256 KiB-1 MiB within a few %, the whole stack 15-25 % slower).
ROW_BLOCK_BYTES = 1 << 19


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
    # On the real view: a complex isfinite goes through abs() (a pass and a temporary) on CPU.
    if not bool(torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all()):
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
        # The maps' conjugates (and their rolled copies for normal_shifted) are built on first use.
        self._maps_pair: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        # M^H M for real weights, times the FFT normalisation: the kernel calls unnormalised FFTs
        # (an "ortho" FFT scales in a separate pass over the whole coil stack, ~40 % of a 1-D FFT's
        # time on CPU), so 1/W (1/(H W) for 2-D) is applied once here, in the pass that masks.
        n = self.oshape[-1] if self.columns_only else self.oshape[-1] * self.oshape[-2]
        weights = self.mask * self.mask / n
        self._weights_s = torch.fft.ifftshift(weights, dim=self.shift_dims).contiguous()
        self._buffers: dict[tuple, torch.Tensor] = {}

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
        return self._normal_into(x_s, out, shifted=True)

    def _maps_for(self, shifted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S, conj(S))``, rolled by ``ifftshift`` over :attr:`shift_dims` when ``shifted``; cached."""
        if shifted not in self._maps_pair:
            maps = self.maps
            if shifted:
                maps = torch.fft.ifftshift(maps, dim=self.shift_dims).contiguous()
            self._maps_pair[shifted] = (maps, maps.conj().resolve_conj())
        return self._maps_pair[shifted]

    def _normal_into(self, x: torch.Tensor, out: torch.Tensor | None, shifted: bool) -> torch.Tensor:
        """``sum_c conj(S_c) G (S_c x)`` (module docstring) into ``out`` ``(..., H, W)``; ``shifted``
        picks the rolled maps (:meth:`normal_shifted`) or the maps as given (:func:`cg_sense`)."""
        maps, maps_conj = self._maps_for(shifted)
        shape = torch.broadcast_shapes(x.shape[:-2] + (1,) + x.shape[-2:], maps.shape)
        if out is None:
            out = torch.empty(shape[:-3] + shape[-2:], dtype=x.dtype, device=x.device)
        rows = shape[-2]
        step = self._row_block(shape, x) if self.columns_only else rows
        key = (shape[:-2] + (step, shape[-1]), x.dtype, x.device)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(key[0], dtype=x.dtype, device=x.device)
        buf = self._buffers[key]
        xe = x.unsqueeze(-3)
        # A column mask leaves the rows independent: blocks of rows keep the coil stack's
        # intermediates in cache between the passes instead of streaming them from memory.
        for h0 in range(0, rows, step):
            h1 = min(h0 + step, rows)
            c = buf if h1 - h0 == step else buf[..., : h1 - h0, :]
            torch.mul(maps[..., h0:h1, :], xe[..., h0:h1, :], out=c)
            # torch.fft's out= path costs a copy on CPU: take its fresh result and work on it in place.
            if self.columns_only:
                f = torch.fft.fft(c, dim=-1).mul_(self._weights_s)
                g = torch.fft.ifft(f, dim=-1, norm="forward")
            else:
                f = torch.fft.fft2(c).mul_(self._weights_s)
                g = torch.fft.ifft2(f, norm="forward")
            torch.sum(g.mul_(maps_conj[..., h0:h1, :]), dim=-3, out=out[..., h0:h1, :])
        return out

    def _row_block(self, shape: tuple[int, ...], x: torch.Tensor) -> int:
        """Rows per block of the column-mask kernel: the whole image on a GPU (one launch per pass),
        else about ``ROW_BLOCK_BYTES`` of coil stack per block."""
        rows = shape[-2]
        if x.device.type != "cpu":
            return rows
        row_bytes = x.element_size() * math.prod(shape) // rows
        return max(1, min(rows, ROW_BLOCK_BYTES // max(row_bytes, 1)))

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
    # (torch.linalg.vecdot is faster but sums a batch in another order than one image: batched and
    # per-slice solves would differ beyond round-off after 40 iterations.)
    return (torch.view_as_real(a) * torch.view_as_real(b)).sum(dim=(-3, -2, -1)).unsqueeze(-1).unsqueeze(-1)


def _rhs(op: SenseOp, y: torch.Tensor) -> torch.Tensor:
    """``A^H y`` ``(..., H, W)``, as :meth:`SenseOp.adjoint` (which stays the plain definition).

    For even ``H`` and ``W``, ``ifft2c(u) = s c * ifft2(c * u)`` with the checkerboard
    ``c = (-1)^(row + col)`` and ``s = (-1)^((H + W) / 2)``: the input factor joins the mask in one
    pass, the output factor is applied once to the coil sum, and the coil stack is never rolled.
    """
    h, w = y.shape[-2:]
    if h % 2 or w % 2:
        return op.adjoint(y)
    rows = torch.arange(h, device=y.device)[:, None]
    cols = torch.arange(w, device=y.device)[None, :]
    checker = (1 - 2 * ((rows + cols) % 2)).to(op.real_dtype)               # (H, W), +-1
    z = torch.fft.ifft2(y * (op.mask * checker), norm="ortho")
    torch.mul(z, op._maps_for(False)[1], out=z)
    sign = -1.0 if ((h + w) // 2) % 2 else 1.0
    return z.sum(dim=-3) * (sign * checker)


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
    if not bool(torch.view_as_real(maps_t).any()):
        raise ValueError(f"maps are all zero (shape {tuple(maps_t.shape)}): no coil sensitivity, nothing to reconstruct")
    lam = float(lam)

    # Right-hand side; the kernel works on the image as it is (no shifts, module docstring).
    b = _rhs(op, y).contiguous()
    if x0 is not None:
        x0 = _as_complex("x0", x0, 2)
        if x0.shape != b.shape:
            raise ValueError(f"x0 shape {tuple(x0.shape)} must be the image shape {tuple(b.shape)}")
        _check_finite("x0", x0)
        x = x0.to(device=b.device, dtype=b.dtype).contiguous().clone()
        r = b - op._normal_into(x, None, shifted=False)
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
        op._normal_into(p, ap, shifted=False)
        if lam:
            ap.add_(p, alpha=lam)
        pap = _redot(p, ap)
        # p^H (A^H A + lam I) p > 0 unless p = 0; guard the 0/0 of an exactly solved item.
        alpha = torch.where(active & (pap > 0), rs / pap.clamp_min(tiny), torch.zeros_like(rs)).to(b.dtype)
        # fused multiply-adds, the step as a complex tensor (a real one takes a slower mixed-type path)
        x.addcmul_(p, alpha)
        r.addcmul_(ap, alpha, value=-1)
        rs_new = _sqnorm(r)
        beta = torch.where(active, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs)).to(b.dtype)
        torch.addcmul(r, p, beta, out=p)          # p = r + beta p
        rs = rs_new
        history[..., k] = (rs.sqrt() * inv_bnorm)[..., 0, 0]
        active = active & (rs > thresh)
        n_run = k + 1
        if n_run % CHECK_EVERY == 0 and n_run < max_iter and not bool(active.any()):
            break

    if return_history:
        return x, history[..., :n_run]
    return x


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
    max_iter: int = 30,
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
        max_iter: ESPIRiT's power iterations per pixel (sigpy's default is 100; 30 give maps within
            1e-7 of those on the standard brain at a third of the time, and the time is what every
            CG-SENSE baseline of the book pays per slice).

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
            flat[i], calib_width=width, thresh=thresh, kernel_width=kernel_width, crop=crop, max_iter=max_iter,
            show_pbar=False
        ).run()
    # sigpy divides by |maps[0]|: a pixel where coil 0 is exactly zero would be NaN; make it 0.
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    maps = torch.from_numpy(out.reshape(lead + arr.shape[-3:]).astype(arr.dtype, copy=False))
    return maps.to(y.device)


#: The narrowest ACS block :func:`scanner_maps` runs ESPIRiT's 6 x 6 kernel on: with fewer columns its
#: square calibration region holds too few kernel positions for the 8-16 coils' signal subspace and
#: the maps come back empty (chapter 2 measures it; ``tests/test_sense.py`` checks both sides).
ESPIRIT_MIN_ACS = 12


def scanner_maps(kspace: ArrayLike, center_fraction: float | None = None, acs: slice | None = None) -> torch.Tensor:
    """Coil maps ``(..., C, H, W)`` from a k-space's own fully sampled centre, as a scanner can compute them.

    The book's CG-SENSE baseline passes a calibration scan (24 central columns, the vendors' default
    reference lines); on its own ACS block an accelerated scan at a small matrix has fewer.
    ESPIRiT (:func:`estimate_maps`, kernel 6) on the ACS block (``center_fraction``'s block, ``acs``,
    or the sampled centre found in the data) when it has at least :data:`ESPIRIT_MIN_ACS` columns;
    the low-resolution maps of the same block otherwise (fastMRI's 4 % centre at 8x leaves 5 columns
    of a 128-column matrix). The synthetic files also store the true maps; a reconstruction with
    those is an oracle no scanner has (``evaluate(..., maps_method="true")``).
    """
    y = _as_complex("kspace", kspace, 3)
    if acs is None:
        acs = center_lines(y.shape[-1], float(center_fraction)) if center_fraction is not None else detect_acs(y)
    start, stop, _ = acs.indices(y.shape[-1])
    method = "espirit" if stop - start >= ESPIRIT_MIN_ACS else "lowres"
    return estimate_maps(y, acs=acs, method=method)


#: Bump when :func:`estimate_maps` or :func:`scanner_maps` change what they compute in a way their
#: default arguments do not show: it keys the maps cached on disk (:func:`maps_estimator`).
MAPS_CODE_VERSION = 1


def maps_estimator() -> dict:
    """What the coil maps :func:`scanner_maps` and :func:`estimate_maps` return depend on, besides the
    k-space: the code version, :func:`estimate_maps`' defaults, :data:`ESPIRIT_MIN_ACS` and sigpy's
    version (ESPIRiT is sigpy's). A cache of estimated maps keys its entries by this, so changed code
    or a changed sigpy is a new entry, never a stale hit."""
    import inspect

    import sigpy

    defaults = {name: p.default for name, p in inspect.signature(estimate_maps).parameters.items()
                if p.default is not inspect.Parameter.empty and name not in ("center_fraction", "acs", "method")}
    return {"code_version": MAPS_CODE_VERSION, "defaults": defaults, "espirit_min_acs": ESPIRIT_MIN_ACS,
            "sigpy": sigpy.__version__}


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
