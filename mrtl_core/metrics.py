"""Image-quality metrics for magnitude reconstructions: SSIM, PSNR, RMSE, NMSE, line profiles.

Every metric takes ``pred`` and ``target`` of the same shape ``(..., H, W)`` -- NumPy arrays or
torch tensors on any device and dtype (moved to the CPU and computed in float64; complex input is
reduced to its magnitude) -- and returns one value per image: a ``float`` for a single ``(H, W)``
image, else a float64 array of shape ``(...)``.

``data_range`` (SSIM, PSNR) is the dynamic range of the images. fastMRI's evaluation uses the
maximum of the whole target **volume**, so that every slice of a subject is scored on one scale;
pass it explicitly (``SliceDataset`` returns it as ``max_value``), as a scalar or an array
broadcastable to the batch shape ``(...)``. The default, ``None``, uses each target *image*'s
own maximum, which is only the same thing for single-slice data.

Per volume, as fastMRI's ``evaluate.py`` computes them: :func:`volume_psnr`, :func:`volume_nmse`,
:func:`volume_rmse`, :func:`volume_ssim` and :func:`volume_metrics` take one subject's volume
``(slices, H, W)`` and return one number. PSNR, RMSE and NMSE pool the error over every pixel of
the volume (not a mean of per-slice values: a slice with a large error weighs in by its squared
error, not by its logarithm); SSIM is the mean over slices of each slice's SSIM. Their default
``data_range`` is the **volume's** maximum (fastMRI's ``gt.max()``), where the per-image functions
above default to each image's own maximum: the two agree when ``data_range`` is passed. Two
conventions of mrtl's own, on purpose: arguments come ``(pred, target)`` as everywhere in mrtl
(fastMRI's are ``(gt, pred)``), and arithmetic is float64 whatever the input (scikit-image, under
fastMRI, computes SSIM in float32 for float32 images: the two differ by less than 1e-7). fastMRI's
``evaluate.py`` script also centre-crops both volumes to a square of the target's width before
scoring; mrtl's targets are already the recon crop, so no crop is made here.

SSIM is scikit-image's ``structural_similarity`` as fastMRI calls it (``gaussian_weights=False``,
``use_sample_covariance=True``): local means, variances and covariance over a ``win_size`` x
``win_size`` uniform window, the sample covariance scaled by ``N / (N - 1)``,
``K1 = 0.01``, ``K2 = 0.03``, and the mean of the SSIM map over the pixels whose window lies
inside the image (a border of ``(win_size - 1) // 2`` pixels is left out).

``mask`` (bool, broadcastable to ``(..., H, W)``) restricts a metric to the foreground, for
"foreground" scores that the background noise does not dominate (see :func:`foreground_mask`):
SSIM averages its map over the masked pixels (inside the valid border), PSNR and RMSE use the
mean squared error over the masked pixels, NMSE sums over them.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from scipy import ndimage

__all__ = ["ssim", "ssim_map", "psnr", "rmse", "nmse", "volume_ssim", "volume_psnr", "volume_rmse", "volume_nmse",
           "volume_metrics", "line_profile", "foreground_mask"]

ArrayLike = Union[np.ndarray, torch.Tensor]

K1, K2 = 0.01, 0.03


def _as_float64(x, name: str) -> np.ndarray:
    """NumPy float64 copy of ``x`` (magnitude if complex), from NumPy or torch on any device."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        x = x.abs() if x.is_complex() else x
        x = x.to(device="cpu", dtype=torch.float64).numpy()
    else:
        x = np.asarray(x)
        if np.iscomplexobj(x):
            x = np.abs(x)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"{name} must be a numeric array or tensor, got dtype {x.dtype}")
        x = x.astype(np.float64, copy=False)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., H, W), got shape {x.shape}")
    return x


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_float64(pred, "pred"), _as_float64(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} and target shape {t.shape} differ")
    return p, t


def _data_range(data_range, target: np.ndarray) -> np.ndarray:
    """Per-image data range, shape ``target.shape[:-2]``."""
    batch = target.shape[:-2]
    if data_range is None:
        dr = target.max(axis=(-2, -1))
        if np.any(dr <= 0):
            raise ValueError(
                "data_range=None uses each target's maximum, but a target image has maximum "
                f"{float(dr.min())} <= 0; pass data_range explicitly"
            )
        return dr
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.detach().to(device="cpu", dtype=torch.float64).numpy()
    dr = np.asarray(data_range, dtype=np.float64)
    try:
        dr = np.broadcast_to(dr, batch)
    except ValueError:
        raise ValueError(
            f"data_range of shape {dr.shape} does not broadcast to the batch shape {batch}"
        ) from None
    if not np.all(np.isfinite(dr)) or np.any(dr <= 0):
        raise ValueError(f"data_range must be finite and > 0, got {data_range!r}")
    return dr


def _mask(mask, shape: tuple) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.dtype != bool:
        raise TypeError(f"mask must be boolean, got dtype {m.dtype}")
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask shape {m.shape} does not broadcast to the image shape {shape}") from None


def _masked_mean(values: np.ndarray, mask: np.ndarray | None, what: str) -> np.ndarray:
    """Mean over the last two axes, over ``mask`` only when given."""
    if mask is None:
        return values.mean(axis=(-2, -1))
    count = mask.sum(axis=(-2, -1))
    if np.any(count == 0):
        raise ValueError(f"mask selects no pixel of {what} for at least one image")
    return np.where(mask, values, 0.0).sum(axis=(-2, -1)) / count


def _out(values: np.ndarray) -> float | np.ndarray:
    return float(values) if values.ndim == 0 else values


def _mse(p: np.ndarray, t: np.ndarray, mask) -> np.ndarray:
    return _masked_mean((p - t) ** 2, _mask(mask, t.shape), "the image")


def ssim_map(
    pred: ArrayLike, target: ArrayLike, data_range: float | ArrayLike | None = None, win_size: int = 7
) -> np.ndarray:
    """The local SSIM map over the valid window positions.

    Shapes: ``(..., H, W)`` -> ``(..., H - win_size + 1, W - win_size + 1)`` (float64): pixel
    ``[i, j]`` of the map is the SSIM of the window centred on image pixel
    ``[i + pad, j + pad]``, ``pad = (win_size - 1) // 2``.
    """
    p, t = _pair(pred, target)
    if not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size!r}")
    if min(t.shape[-2:]) < win_size:
        raise ValueError(f"images of shape {t.shape[-2:]} are smaller than win_size={win_size}")
    dr = _data_range(data_range, t)[..., None, None]
    size = (1,) * (t.ndim - 2) + (win_size, win_size)  # filter the image axes only

    def local_mean(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=size)

    num = win_size**2
    cov_norm = num / (num - 1.0)  # unbiased (sample) covariance, as fastMRI/scikit-image
    ux, uy = local_mean(p), local_mean(t)
    vx = cov_norm * (local_mean(p * p) - ux * ux)
    vy = cov_norm * (local_mean(t * t) - uy * uy)
    vxy = cov_norm * (local_mean(p * t) - ux * uy)
    c1, c2 = (K1 * dr) ** 2, (K2 * dr) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return s[..., pad : s.shape[-2] - pad, pad : s.shape[-1] - pad]


def ssim(
    pred: ArrayLike,
    target: ArrayLike,
    data_range: float | ArrayLike | None = None,
    win_size: int = 7,
    mask: ArrayLike | None = None,
) -> float | np.ndarray:
    """Structural similarity per image, as scikit-image / fastMRI compute it.

    Args:
        pred, target: magnitude images ``(..., H, W)``, NumPy or torch.
        data_range: scalar or ``(...)`` per image; ``None`` uses each target image's maximum
            (fastMRI uses the target volume's maximum: pass it).
        win_size: odd side of the uniform window.
        mask: optional bool ``(..., H, W)`` foreground; the SSIM map is averaged over the masked
            pixels that lie at least ``(win_size - 1) // 2`` pixels from the border.

    Returns:
        ``float`` for one image, else a float64 array of shape ``(...)``.
    """
    s = ssim_map(pred, target, data_range, win_size)
    pad = (win_size - 1) // 2
    full_shape = s.shape[:-2] + (s.shape[-2] + 2 * pad, s.shape[-1] + 2 * pad)
    m = _mask(mask, full_shape)
    if m is not None:
        m = m[..., pad : full_shape[-2] - pad, pad : full_shape[-1] - pad]
    return _out(_masked_mean(s, m, f"the SSIM map (border of {pad} pixels excluded)"))


def psnr(
    pred: ArrayLike,
    target: ArrayLike,
    data_range: float | ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)`` per image.

    ``data_range`` and ``mask`` as in :func:`ssim`; identical images give ``inf``.
    """
    p, t = _pair(pred, target)
    dr = _data_range(data_range, t)
    mse = _mse(p, t, mask)
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(dr**2 / mse))


def rmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float | np.ndarray:
    """Root-mean-square error per image (over ``mask`` when given), in the images' units."""
    p, t = _pair(pred, target)
    return _out(np.sqrt(_mse(p, t, mask)))


def nmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float | np.ndarray:
    """Normalised MSE per image, fastMRI's ``||target - pred||**2 / ||target||**2`` (over ``mask``)."""
    p, t = _pair(pred, target)
    m = _mask(mask, t.shape)
    if m is None:
        m = np.ones(t.shape, dtype=bool)
    if np.any(m.sum(axis=(-2, -1)) == 0):
        raise ValueError("mask selects no pixel of the image for at least one image")
    err = np.where(m, (p - t) ** 2, 0.0).sum(axis=(-2, -1))
    ref = np.where(m, t**2, 0.0).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(err / ref)


def _volume(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _pair(pred, target)
    if t.ndim != 3:
        raise ValueError(f"a volume has shape (slices, H, W), got shape {t.shape}; score one subject at a time")
    return p, t


def _volume_range(data_range, target: np.ndarray) -> float:
    """One data range for the volume: given, or the volume's maximum (fastMRI's ``gt.max()``)."""
    if data_range is None:
        value = float(target.max())
        if not value > 0:
            raise ValueError(f"data_range=None uses the volume's maximum, but it is {value} <= 0; "
                             "pass data_range explicitly")
        return value
    if isinstance(data_range, torch.Tensor):
        data_range = data_range.detach().cpu()
    dr = np.asarray(data_range, dtype=np.float64)
    if dr.ndim != 0:
        raise ValueError(f"a volume has one data_range (a scalar), got shape {dr.shape}")
    if not (np.isfinite(dr) and dr > 0):
        raise ValueError(f"data_range must be finite and > 0, got {data_range!r}")
    return float(dr)


def _volume_sums(p: np.ndarray, t: np.ndarray, mask) -> tuple[float, float, int]:
    """Squared error, target energy and pixel count over the (masked) pixels of the whole volume."""
    m = _mask(mask, t.shape)
    if m is None:
        return float(((p - t) ** 2).sum()), float((t**2).sum()), int(t.size)
    count = int(m.sum())
    if count == 0:
        raise ValueError("mask selects no pixel of the volume")
    return float(np.where(m, (p - t) ** 2, 0.0).sum()), float(np.where(m, t**2, 0.0).sum()), count


def volume_psnr(pred: ArrayLike, target: ArrayLike, data_range: float | None = None,
                mask: ArrayLike | None = None) -> float:
    """PSNR of one volume in dB, fastMRI's ``evaluate.psnr``: ``10 log10(data_range**2 / MSE)``.

    Shapes: ``pred``, ``target`` ``(slices, H, W)``; the MSE is over every pixel of the volume (over
    ``mask``, bool broadcastable to the volume, when given: mrtl's foreground score, not fastMRI's);
    ``data_range`` defaults to the target volume's maximum. Identical volumes give ``inf``.
    """
    p, t = _volume(pred, target)
    dr = _volume_range(data_range, t)
    sse, _, count = _volume_sums(p, t, mask)
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(np.float64(dr) ** 2 / np.float64(sse / count)))


def volume_rmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Root-mean-square error of one volume ``(slices, H, W)``: the square root of fastMRI's volume MSE."""
    p, t = _volume(pred, target)
    sse, _, count = _volume_sums(p, t, mask)
    return float(np.sqrt(sse / count))


def volume_nmse(pred: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> float:
    """NMSE of one volume, fastMRI's ``evaluate.nmse``: ``||target - pred||**2 / ||target||**2`` over the volume.

    Shapes: ``(slices, H, W)``; the norms run over every pixel of the volume (over ``mask`` when given).
    """
    p, t = _volume(pred, target)
    sse, energy, _ = _volume_sums(p, t, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(sse) / np.float64(energy))


def volume_ssim(pred: ArrayLike, target: ArrayLike, data_range: float | None = None, win_size: int = 7,
                mask: ArrayLike | None = None) -> float:
    """SSIM of one volume, fastMRI's ``evaluate.ssim``: the mean over slices of each slice's SSIM.

    Shapes: ``(slices, H, W)``. Every slice is scored with the same ``data_range``, by default the
    target volume's maximum (not each slice's, as :func:`ssim` would with ``None``); ``win_size``
    and ``mask`` as in :func:`ssim` (``mask`` per slice, mrtl's foreground score).
    """
    p, t = _volume(pred, target)
    dr = _volume_range(data_range, t)
    return float(np.mean(ssim(p, t, data_range=dr, win_size=win_size, mask=mask)))


def volume_metrics(pred: ArrayLike, target: ArrayLike, data_range: float | None = None,
                   mask: ArrayLike | None = None) -> dict[str, float]:
    """``{"ssim", "psnr", "rmse", "nmse"}`` of one volume ``(slices, H, W)``, as the ``volume_*`` functions.

    ``data_range`` (default: the target volume's maximum) and ``mask`` as there.
    """
    return {"ssim": volume_ssim(pred, target, data_range, mask=mask),
            "psnr": volume_psnr(pred, target, data_range, mask=mask),
            "rmse": volume_rmse(pred, target, mask=mask),
            "nmse": volume_nmse(pred, target, mask=mask)}


def line_profile(image: ArrayLike, axis: int = 1, index: int | None = None) -> np.ndarray:
    """A line of pixel values through the image(s).

    Args:
        image: ``(..., H, W)``, NumPy or torch (magnitude taken if complex).
        axis: the image axis the line runs along: ``1`` gives row ``index`` (a horizontal line,
            ``W`` values, across the phase-encode direction where Cartesian aliasing appears);
            ``0`` gives column ``index`` (a vertical line, ``H`` values).
        index: which row (``axis=1``) or column (``axis=0``); ``None`` takes the central one,
            ``H // 2`` or ``W // 2`` (the row/column through the k-space DC in the centred
            convention).

    Returns:
        float64 array ``(..., W)`` for ``axis=1``, ``(..., H)`` for ``axis=0``.
    """
    x = _as_float64(image, "image")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (a column) or 1 (a row), got {axis!r}")
    height, width = x.shape[-2:]
    n = height if axis == 1 else width
    if index is None:
        index = n // 2
    if not isinstance(index, (int, np.integer)) or not -n <= index < n:
        raise ValueError(f"index must be an integer in [{-n}, {n}), got {index!r}")
    return x[..., index, :].copy() if axis == 1 else x[..., :, index].copy()


def foreground_mask(target: ArrayLike, threshold: float = 0.1) -> np.ndarray:
    """The object's support in each image, for foreground metrics.

    Pixels above ``threshold * max`` (per image), reduced to the largest connected region
    (which drops isolated background-noise pixels) with its holes filled (dark tissue enclosed by
    the object, e.g. CSF or cortical bone, stays in).

    Shapes: ``(..., H, W)`` -> bool ``(..., H, W)``.
    """
    t = _as_float64(target, "target")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    flat = t.reshape(-1, *t.shape[-2:])
    out = np.zeros(flat.shape, dtype=bool)
    for i, img in enumerate(flat):
        above = img > threshold * img.max()
        labels, count = ndimage.label(above)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        out[i] = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return out.reshape(t.shape)
