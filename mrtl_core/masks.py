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

fastMRI's own calling convention, for code written against it (``UnetDataTransform(mask_func=...)``,
``apply_mask``): :class:`FastmriMaskFunc` objects are called as ``mask_func(shape, offset=None,
seed=None)`` and return ``(mask, num_low_frequencies)``, the mask a float32 torch tensor of shape
``(1, ..., 1, W, 1)`` (``W = shape[-2]``) that broadcasts over k-space held as fastMRI does
(``(..., coils, H, W, 2)``), seeded through ``np.random.RandomState`` (an int or a tuple of ints,
e.g. fastMRI's per-volume ``tuple(map(ord, fname))``). Four kinds:

* :class:`RandomMaskFunc`, :class:`EquispacedMaskFractionFunc`, :class:`EquispacedMaskFunc`: fastMRI's
  three algorithms, draw for draw (the same masks for the same seed): a Bernoulli draw of the outer
  columns (the number sampled varies with the seed), equispaced columns at an adjusted spacing, and
  equispaced columns ``offset::acceleration`` on top of the centre (fastMRI's ``EquiSpacedMaskFunc``:
  about 0.31 of the columns at 4x with 8 % centre, more than ``1 / R``);
* :class:`ExactMaskFunc`: mrtl's own exact-count kinds (:func:`make_mask`, ``kind="random"`` or
  ``"equispaced"``) behind the same signature.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "MASK_KINDS",
    "default_center_fraction",
    "make_mask",
    "check_mask_settings",
    "MaskFunc",
    "FastmriMaskFunc",
    "RandomMaskFunc",
    "EquispacedMaskFractionFunc",
    "EquispacedMaskFunc",
    "ExactMaskFunc",
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


class FastmriMaskFunc:
    """fastMRI's ``MaskFunc`` protocol: ``mask_func(shape, offset=None, seed=None) -> (mask, num_low_frequencies)``.

    Args:
        center_fractions, accelerations: the pairs to draw from, one per call (uniformly, through the
            object's ``np.random.RandomState``, as fastMRI does); ``allow_any_combination`` draws the
            fraction and the acceleration independently.
        seed: seeds the object's own generator (used by calls without a ``seed``).

    A call with ``seed`` (an int or a tuple of ints) reseeds the generator for that call only and
    restores it after, as fastMRI's ``temp_seed`` does, so one seed always gives one mask. ``shape``
    has at least 3 entries, the columns at ``shape[-2]``; the mask is float32 ``(1, ..., W, 1)``
    with ``len(shape)`` dimensions: the centre's ``num_low_frequencies = round(W * fraction)``
    columns (from ``(W - n + 1) // 2``) and the kind's outer columns. Subclasses implement
    :meth:`outer_columns`.
    """

    def __init__(self, center_fractions: Sequence[float], accelerations: Sequence[float],
                 allow_any_combination: bool = False, seed: int | None = None) -> None:
        if not accelerations or not center_fractions or (
                len(center_fractions) != len(accelerations) and not allow_any_combination):
            raise ValueError("center_fractions and accelerations must be non-empty and of equal length (unless "
                             f"allow_any_combination), got {list(center_fractions)} and {list(accelerations)}")
        for r in accelerations:
            _check_acceleration(r)
        for cf in center_fractions:
            if isinstance(cf, bool) or not isinstance(cf, (int, float, np.integer, np.floating)) or not 0 < cf <= 1:
                raise ValueError(f"center_fraction must lie in (0, 1], got {cf!r}")
        self.center_fractions, self.accelerations = list(center_fractions), list(accelerations)
        self.allow_any_combination = bool(allow_any_combination)
        self.rng = np.random.RandomState(seed)

    def choose_acceleration(self) -> tuple[float, float]:
        """One ``(center_fraction, acceleration)`` pair, drawn from the object's generator as fastMRI draws it."""
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        choice = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[choice], self.accelerations[choice]

    def outer_columns(self, num_cols: int, acceleration: float, offset: int | None,
                      num_low_frequencies: int) -> np.ndarray:
        """The ``(num_cols,)`` 0/1 mask of the columns sampled besides the centre block."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _seeded(self, seed: int | tuple[int, ...] | None) -> Iterator[None]:
        """The object's generator reseeded with ``seed`` inside the block and restored after it (as
        fastMRI's ``temp_seed``); unchanged and advancing when ``seed`` is ``None``."""
        if seed is None:
            yield
            return
        state = self.rng.get_state()
        self.rng.seed(seed)
        try:
            yield
        finally:
            self.rng.set_state(state)

    @staticmethod
    def _num_cols(shape: Sequence[int]) -> int:
        """``W`` of a k-space ``shape`` ``(..., W, 1 or 2)``, named in the error when too short."""
        if len(shape) < 3:
            raise ValueError(f"shape should have 3 or more dimensions (..., W, 1 or 2), got {tuple(shape)}")
        return int(shape[-2])

    @staticmethod
    def _as_view(mask: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
        """The ``(W,)`` mask as a float32 tensor broadcastable against ``shape`` (ones but at ``-2``)."""
        view = [1] * len(shape)
        view[-2] = mask.shape[0]
        return torch.from_numpy(mask.reshape(view).astype(np.float32))

    def __call__(self, shape: Sequence[int], offset: int | None = None,
                 seed: int | tuple[int, ...] | None = None) -> tuple[torch.Tensor, int]:
        num_cols = self._num_cols(shape)
        with self._seeded(seed):
            center_fraction, acceleration = self.choose_acceleration()
            num_low = round(num_cols * center_fraction)
            centre = np.zeros(num_cols, dtype=np.float32)
            pad = (num_cols - num_low + 1) // 2
            centre[pad: pad + num_low] = 1
            outer = self.outer_columns(num_cols, acceleration, offset, num_low)
        mask = np.maximum(centre, np.asarray(outer, dtype=np.float32))
        return self._as_view(mask, shape), int(num_low)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.center_fractions}, {self.accelerations})"


class RandomMaskFunc(FastmriMaskFunc):
    """fastMRI's ``RandomMaskFunc``: each outer column sampled with probability
    ``(W / R - n_low) / (W - n_low)``, so ``W / R`` columns on average (the count varies with the seed;
    :class:`ExactMaskFunc` ``kind="random"`` samples exactly ``round(W / R)``). ``offset`` is not used."""

    def outer_columns(self, num_cols, acceleration, offset, num_low_frequencies):
        prob = (num_cols / acceleration - num_low_frequencies) / (num_cols - num_low_frequencies)
        return self.rng.uniform(size=num_cols) < prob


class EquispacedMaskFractionFunc(FastmriMaskFunc):
    """fastMRI's ``EquispacedMaskFractionFunc``: outer columns at the spacing
    ``R (n_low - W) / (n_low R - W)`` (rounded positions from ``offset``, random in
    ``[0, round(spacing))`` when ``None``), so that about ``W / R`` columns are sampled in all."""

    def outer_columns(self, num_cols, acceleration, offset, num_low_frequencies):
        adjusted = (acceleration * (num_low_frequencies - num_cols)) / (num_low_frequencies * acceleration - num_cols)
        if offset is None:
            offset = self.rng.randint(0, high=round(adjusted))
        mask = np.zeros(num_cols)
        mask[np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint)] = 1.0
        return mask


class EquispacedMaskFunc(FastmriMaskFunc):
    """fastMRI's ``EquiSpacedMaskFunc``: every ``R``-th column from ``offset`` (random in ``[0, R)`` when
    ``None``) on top of the centre block, as GRAPPA acquisitions space their lines. The centre comes
    on top of ``W / R`` lines, so the sampled fraction exceeds ``1 / R`` (about 0.31 at 4x with an 8 %
    centre): the effective acceleration is below the nominal one. ``R`` must be an integer."""

    def outer_columns(self, num_cols, acceleration, offset, num_low_frequencies):
        if float(acceleration) != int(acceleration):
            raise ValueError(f"EquispacedMaskFunc samples every R-th column: R must be an integer, got {acceleration!r}")
        step = int(acceleration)
        if offset is None:
            offset = self.rng.randint(0, high=round(acceleration))
        mask = np.zeros(num_cols, dtype=np.float32)
        mask[offset::step] = 1
        return mask


class ExactMaskFunc(FastmriMaskFunc):
    """mrtl's exact-count masks (:func:`make_mask`) behind fastMRI's signature.

    ``ExactMaskFunc([0.08], [4], kind="random")((1, 640, 368, 2), seed=(102, 105))`` samples exactly
    ``round(368 / 4)`` columns. The pair is drawn as fastMRI draws it, then the generator gives
    :func:`make_mask` its seed. ``offset``: not used by ``kind="random"`` (as fastMRI's random mask);
    ``kind="equispaced"`` places its own random offset and refuses a given one (use
    :class:`EquispacedMaskFunc` to fix it). ``variable_density`` as in :func:`make_mask`.
    """

    def __init__(self, center_fractions: Sequence[float], accelerations: Sequence[float], kind: str = "random",
                 variable_density: float | None = None, allow_any_combination: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(center_fractions, accelerations, allow_any_combination, seed)
        for cf, r in zip(self.center_fractions, self.accelerations):
            check_mask_settings(r, cf, kind, variable_density)
        self.kind, self.variable_density = kind, variable_density

    def outer_columns(self, num_cols, acceleration, offset, num_low_frequencies):
        raise NotImplementedError("ExactMaskFunc draws whole masks: see __call__")

    def __call__(self, shape: Sequence[int], offset: int | None = None,
                 seed: int | tuple[int, ...] | None = None) -> tuple[torch.Tensor, int]:
        num_cols = self._num_cols(shape)
        if offset is not None and self.kind == "equispaced":
            raise ValueError("ExactMaskFunc(kind='equispaced') draws its own offset; use EquispacedMaskFunc for a "
                             f"given one (got offset={offset!r})")
        with self._seeded(seed):
            center_fraction, acceleration = self.choose_acceleration()
            sub_seed = int(self.rng.randint(2**31 - 1))
        mask = make_mask(num_cols, acceleration, center_fraction, kind=self.kind, seed=sub_seed,
                         variable_density=self.variable_density)
        centre = center_lines(num_cols, center_fraction)
        return self._as_view(np.asarray(mask), shape), int(centre.stop - centre.start)


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
