"""Cartesian under-sampling masks over the phase-encode direction, with fastMRI's semantics.

A mask is a boolean vector over the ``W`` phase-encode columns of k-space ``(..., coils, H, W)``;
it broadcasts over everything else. Every mask keeps a fully sampled centre block of
``round(W * center_fraction)`` columns (the auto-calibration, or ACS, region), and spends the rest
of its budget of ``round(W / acceleration)`` columns outside it:

* ``"random"``     uniformly random columns (fastMRI's ``RandomMaskFunc``),
* ``"equispaced"`` evenly spaced columns with a random offset (fastMRI's ``EquispacedMaskFractionFunc``),
* ``variable_density=p`` (random kind only) draws outer columns with probability proportional to
  ``(1 - |k| / k_max) ** p``: denser near the centre, as in compressed-sensing practice.

Unlike fastMRI's Bernoulli draw, the number of sampled columns is exact, so the effective
acceleration of every mask is ``W / round(W / acceleration)`` -- within one line of the request,
whatever the seed. Masks are seedable: the same seed gives the same mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "MASK_KINDS",
    "default_center_fraction",
    "make_mask",
    "check_mask_settings",
    "MaskFunc",
    "effective_acceleration",
    "center_lines",
    "apply_mask",
    "point_spread_function",
    "peak_sidelobe",
]

MASK_KINDS = ("random", "equispaced")


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's pairing of centre fraction with acceleration: 4x -> 0.08, 8x -> 0.04 (0.32 / R)."""
    _check_acceleration(acceleration)
    return min(0.32 / float(acceleration), 1.0)


def _check_acceleration(acceleration: float) -> None:
    # bool is an int to Python: make_mask(acceleration=True) would silently mean R = 1
    if (isinstance(acceleration, (bool, np.bool_)) or not isinstance(acceleration, (int, float, np.integer, np.floating))
            or not math.isfinite(acceleration)):
        raise ValueError(f"acceleration must be a finite number >= 1, got {acceleration!r}")
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration!r}")


def center_lines(num_cols: int, center_fraction: float) -> slice:
    """The slice of fully sampled centre columns (the ACS block) for ``num_cols`` columns."""
    num_low = max(1, int(round(num_cols * center_fraction)))
    start = (num_cols - num_low + 1) // 2
    return slice(start, start + num_low)


def make_mask(
    num_cols: int,
    acceleration: float,
    center_fraction: float | None = None,
    kind: str = "random",
    seed: int | None = None,
    variable_density: float | None = None,
) -> np.ndarray:
    """A 1-D boolean Cartesian mask over ``num_cols`` phase-encode columns.

    Args:
        num_cols: number of phase-encode columns ``W`` (>= 2).
        acceleration: the requested ``R >= 1``; ``round(W / R)`` columns are sampled.
        center_fraction: fraction of columns in the fully sampled centre block, in (0, 1];
            ``None`` uses :func:`default_center_fraction`.
        kind: ``"random"`` or ``"equispaced"``.
        seed: seeds the mask's own generator; the same seed gives the same mask.
        variable_density: for ``kind="random"``, the exponent ``p`` of the density
            ``(1 - |k|/k_max) ** p`` over the outer columns (``None`` or 0 is uniform).

    Returns:
        ``(num_cols,)`` boolean array.
    """
    if isinstance(num_cols, bool) or not isinstance(num_cols, (int, np.integer)) or num_cols < 2:
        raise ValueError(f"num_cols must be an integer >= 2, got {num_cols!r}")
    if center_fraction is None:
        _check_acceleration(acceleration)
        center_fraction = default_center_fraction(acceleration)
    check_mask_settings(acceleration, center_fraction, kind, variable_density)
    if acceleration > num_cols:
        # round(W / R) would still sample one column: the mask's R would be W, not the R asked for
        raise ValueError(f"acceleration={acceleration:g} exceeds the {num_cols} phase-encode columns "
                         f"(at most R = {num_cols}, one column)")

    centre = center_lines(num_cols, center_fraction)
    num_low = centre.stop - centre.start
    budget = max(1, int(round(num_cols / acceleration)))
    if num_low > budget:
        raise ValueError(
            f"center_fraction={center_fraction} gives {num_low} centre lines, more than the "
            f"{budget} lines that acceleration={acceleration} allows for num_cols={num_cols}; "
            f"lower center_fraction (e.g. {default_center_fraction(acceleration):.3f}) or the acceleration"
        )
    mask = np.zeros(num_cols, dtype=bool)
    mask[centre] = True
    outer = np.flatnonzero(~mask)
    num_outer = budget - num_low
    if num_outer == 0:
        return mask
    rng = np.random.default_rng(seed)
    if kind == "random":
        weights = None
        if variable_density:
            k = np.abs(outer - (num_cols // 2)) / (num_cols / 2)
            weights = np.clip(1.0 - k, 1e-3, None) ** variable_density
            weights = weights / weights.sum()
        chosen = rng.choice(outer, size=num_outer, replace=False, p=weights)
    else:
        step = len(outer) / num_outer
        offset = rng.uniform(0, step)
        chosen = outer[np.minimum((offset + step * np.arange(num_outer)).astype(int), len(outer) - 1)]
    mask[chosen] = True
    return mask


def check_mask_settings(acceleration: float, center_fraction: float, kind: str = "random",
                        variable_density: float | None = None) -> None:
    """Raise ``ValueError`` naming the first mask setting out of range (the column count aside)."""
    _check_acceleration(acceleration)
    if (isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float, np.integer, np.floating))
            or not 0 < center_fraction <= 1):
        raise ValueError(f"center_fraction must lie in (0, 1], got {center_fraction!r}")
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    if variable_density is not None and (variable_density < 0 or not math.isfinite(variable_density)):
        raise ValueError(f"variable_density must be a finite exponent >= 0, got {variable_density!r}")
    if variable_density and kind != "random":
        raise ValueError(f"variable_density applies to kind='random' only, got kind={kind!r}")


@dataclass
class MaskFunc:
    """fastMRI-style mask generator: picks one ``(acceleration, center_fraction)`` pair per call.

    ``MaskFunc([0.08], [4])(368, seed=7)`` gives a 4x random mask over 368 columns. Pairs are
    chosen uniformly at random, as fastMRI does when training over several accelerations.
    """

    center_fractions: Sequence[float]
    accelerations: Sequence[float]
    kind: str = "random"
    variable_density: float | None = None

    def __post_init__(self) -> None:
        if len(self.center_fractions) != len(self.accelerations) or not self.accelerations:
            raise ValueError(
                "center_fractions and accelerations must be non-empty and of equal length, got "
                f"{list(self.center_fractions)} and {list(self.accelerations)}"
            )
        for r in self.accelerations:
            _check_acceleration(r)
        if self.kind not in MASK_KINDS:
            raise ValueError(f"kind must be one of {MASK_KINDS}, got {self.kind!r}")

    def __call__(self, num_cols: int, seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        choice = int(rng.integers(len(self.accelerations)))
        sub_seed = int(rng.integers(2**31 - 1))
        return make_mask(
            num_cols,
            self.accelerations[choice],
            self.center_fractions[choice],
            kind=self.kind,
            seed=sub_seed,
            variable_density=self.variable_density,
        )


def effective_acceleration(mask: np.ndarray | torch.Tensor) -> float:
    """``W / (number of sampled columns)`` of a 1-D mask (or of any mask, over its last axis)."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.reshape(-1, m.shape[-1]).any(axis=0) if m.ndim > 1 else m
    sampled = int(np.count_nonzero(m))
    if sampled == 0:
        raise ValueError("mask samples no column: its effective acceleration is infinite")
    return m.shape[-1] / sampled


def apply_mask(kspace: torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Zero the unsampled columns of ``kspace`` ``(..., H, W)`` with a ``(W,)`` mask."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.shape[-1] != kspace.shape[-1]:
        raise ValueError(f"mask has {m.shape[-1]} columns but kspace has W={kspace.shape[-1]} (shape {tuple(kspace.shape)})")
    return kspace * m.to(device=kspace.device, dtype=kspace.real.dtype if kspace.is_complex() else kspace.dtype)


def point_spread_function(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """Normalised magnitude of the point-spread function of a ``(W,)`` column mask.

    Zero-filling multiplies k-space by the mask, so along the phase-encode axis the image is
    convolved with the inverse DFT of the mask. By the triangle inequality no offset exceeds
    offset 0 (the sum of the mask), so normalising by it gives peak 1.

    Returns:
        float64 ``(W,)`` ``|PSF|``, fftshift-ordered: index ``W // 2`` is offset 0 and holds 1;
        index ``i`` is offset ``i - W // 2`` pixels.
    """
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim != 1:
        raise ValueError(f"mask must be 1-D (W,), got shape {m.shape}")
    if not np.any(m):
        raise ValueError("mask samples no column: its point-spread function is zero")
    psf = np.abs(np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(m.astype(np.float64)))))
    return psf / psf[m.shape[0] // 2]


def peak_sidelobe(mask: np.ndarray | torch.Tensor, exclude: int = 2) -> float:
    """Largest normalised ``|PSF|`` more than ``exclude`` pixels from offset 0.

    This is the strongest aliasing replica (equispaced masks) or incoherent side lobe (random
    masks); ``exclude`` skips the main lobe, which the ACS block widens by a pixel or two.
    """
    if not isinstance(exclude, (int, np.integer)) or exclude < 0:
        raise ValueError(f"exclude must be a non-negative integer, got {exclude!r}")
    psf = point_spread_function(mask)
    offsets = np.arange(psf.shape[0]) - psf.shape[0] // 2
    outside = np.abs(offsets) > exclude
    if not outside.any():
        raise ValueError(f"exclude={exclude} leaves no offset of the {psf.shape[0]}-column PSF")
    return float(psf[outside].max())
