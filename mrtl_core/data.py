"""fastMRI-layout HDF5 files: the sample record and U-Net transform, writer, validating reader, slice dataset, splits.

One loader serves synthetic and real data. A file holds one subject (a volume of slices):

* ``kspace``             complex64 ``(S, C, Hk, Wk)``: slices, coils, readout (2x oversampled), phase encode
* ``reconstruction_rss`` float32 ``(S, H, W)``: root-sum-of-squares of the fully sampled coil images,
  centre-cropped to the recon matrix (the reference every metric compares with)
* ``ismrmrd_header``     XML bytes (ISMRMRD schema): encoded and recon matrix and FOV, field strength, coils
* attrs ``acquisition``, ``max`` (of the RSS volume: the metrics' data range), ``norm``, ``patient_id``
* ``sens_maps``          optional complex64, like ``kspace``: the true coil maps (synthetic files only)
* ``mask``               optional ``(Wk,)`` column mask of fastMRI's test/challenge files, whose ``kspace`` is
  already under-sampled and which carry no ``reconstruction_rss`` (nor ``max``/``norm``): their own
  mask is the one used (never a new one on top), and their slices have no target (inference only)

The U-Net transform (fastMRI's ``UnetDataTransform``): mask k-space -> ``ifft2c`` -> centre crop to the
recon matrix -> magnitude -> RSS over coils -> instance normalisation ``(x - mean) / (std + eps)``,
clamped to +-6; the target is ``reconstruction_rss`` normalised with the same ``mean`` and ``std``.
A k-space narrower than the recon matrix (``Wk < W``, some real fastMRI brain files, e.g. FLAIR
with 203 columns) is cropped as fastMRI crops it: to the square ``(Wk, Wk)``.
:class:`SliceDataset` reads a slice, draws its mask and hands both to a transform (default
:class:`UnetTransform`), which returns a :class:`UnetSample`; :func:`collate` batches samples.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import h5py
import numpy as np
import torch

from . import cache
from .fft import fft2c, ifft2c
from .masks import MaskFunc, apply_mask, check_mask_settings, default_center_fraction, effective_acceleration, make_mask

__all__ = [
    "DATA_VERSION",
    "DataError",
    "write_fastmri_file",
    "write_subject",
    "make_ismrmrd_header",
    "read_header",
    "FastMRIFile",
    "inspect_file",
    "list_files",
    "center_crop",
    "remove_readout_oversampling",
    "rss",
    "zero_filled_rss",
    "normalize_instance",
    "unnormalize",
    "UnetSample",
    "CALIBRATION_COLUMNS",
    "calibration_kspace",
    "unet_transform",
    "UnetTransform",
    "collate",
    "SliceDataset",
    "patient_id",
    "split_by_subject",
]

#: Bump when the file layout changes: cached domains (:mod:`mrtl_core.domains`) rebuild.
DATA_VERSION = 1

_REQUIRED_KEYS = ("kspace", "reconstruction_rss", "ismrmrd_header")
_REQUIRED_ATTRS = ("acquisition", "max", "norm", "patient_id")
_GAMMA_HZ_PER_T = 42.577478e6  # proton gyromagnetic ratio / 2 pi
_MRTL_VENDOR = "mrtl (simulated)"  # the header's systemVendor in every file mrtl writes
_EPS = 1e-11
_CLAMP = 6.0

#: Phase-encode columns of the calibration (reference) scan a scanner acquires for its coil maps,
#: apart from the accelerated scan: the vendors' default of 24 reference lines. CG-SENSE baselines
#: estimate their maps from it (:func:`mrtl_core.evaluate.sample_maps`), whatever the mask's centre.
CALIBRATION_COLUMNS = 24


class DataError(ValueError):
    """A data file (or directory) that cannot be used; the message names the path and the fault."""


# --------------------------------------------------------------------------------------------------
# Transform (shared by the writer, which stores the target, and the loader, which makes the input)
# --------------------------------------------------------------------------------------------------


def center_crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Centre crop the last two dims of ``x`` to ``shape`` (fastMRI's offsets: ``(n - h) // 2``)."""
    h, w = int(shape[0]), int(shape[1])
    if not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise ValueError(f"crop shape {(h, w)} must be positive and fit inside the input {tuple(x.shape[-2:])}")
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def remove_readout_oversampling(kspace: torch.Tensor | np.ndarray, num_rows: int) -> torch.Tensor:
    """Crop the readout field of view of k-space: ``(..., Hk, W)`` -> ``(..., num_rows, W)``.

    The readout is oversampled (2x in fastMRI) to keep the anatomy from wrapping; dropping the
    extra field of view is a centre crop of the image rows, so: ``ifft2c`` -> :func:`center_crop`
    -> ``fft2c``. Coil maps live in the image domain: crop them with :func:`center_crop` alone.
    """
    k = torch.as_tensor(kspace)
    if not k.is_complex() or k.ndim < 2:
        raise ValueError(f"kspace must be complex (..., Hk, W), got dtype {k.dtype} shape {tuple(k.shape)}")
    return fft2c(center_crop(ifft2c(k), (int(num_rows), k.shape[-1])))


def rss(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Root-sum-of-squares of ``|x|`` over ``dim`` (the coil axis)."""
    power = torch.view_as_real(x).square().sum(-1) if x.is_complex() else x.square()  # |x|^2 without a sqrt
    return torch.sqrt(power.sum(dim))


def _fit_crop(recon_size: Sequence[int], image_shape: Sequence[int]) -> tuple[int, int]:
    # Some real fastMRI brain files have fewer phase-encode columns than the recon matrix: fastMRI's
    # UnetDataTransform then crops the square of the image's width ("FLAIR 203"), and so does mrtl.
    # (Rows fewer than the recon matrix, which fastMRI refuses, are clamped to the image.)
    h, w = int(recon_size[0]), int(recon_size[1])
    rows, cols = int(image_shape[-2]), int(image_shape[-1])
    if cols < w:
        h = w = cols
    return min(h, rows), w


def zero_filled_rss(kspace: torch.Tensor | np.ndarray, recon_size: Sequence[int]) -> torch.Tensor:
    """RSS magnitude image of (already masked) multi-coil k-space.

    Args:
        kspace: complex ``(..., C, Hk, Wk)``; the coil axis is the third from last.
        recon_size: ``(H, W)`` of the centre crop; for k-space narrower than ``W`` (``Wk < W``) the
            square ``(Wk, Wk)``, as fastMRI's ``UnetDataTransform`` crops it.

    Returns:
        float32 ``(..., H, W)``.
    """
    k = torch.as_tensor(kspace)
    if not k.is_complex() or k.ndim < 3:
        raise ValueError(f"kspace must be complex with shape (..., C, H, W), got dtype {k.dtype} shape {tuple(k.shape)}")
    image = center_crop(ifft2c(k.to(torch.complex64)), _fit_crop(recon_size, k.shape))
    return rss(image, dim=-3).to(torch.float32)


def normalize_instance(x: torch.Tensor, eps: float = _EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``((x - mean) / (std + eps), mean, std)`` with the image's own mean and std (fastMRI)."""
    mean, std = x.mean(), x.std()
    return (x - mean) / (std + eps), mean, std


def unnormalize(x: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Back to physical units, in float64: ``x * std + mean`` (the inverse of :func:`normalize_instance`
    up to its ``eps``). ``mean`` and ``std`` are 0-dim for one image, or ``(B,)`` for a batch
    ``(B, H, W)``: one pair per image."""
    mean, std = torch.as_tensor(mean).double(), torch.as_tensor(std).double()
    if mean.ndim:
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return x.double() * std + mean


class UnetSample(NamedTuple):
    """One slice as the U-Net and the physics baselines see it: fastMRI's ``UnetSample``, extended.

    ``H, W`` is the recon crop, ``C`` the coils, ``Hk, Wk`` the k-space grid (readout oversampled).

    Attributes:
        image: float32 ``(1, H, W)``: the zero-filled RSS image, instance-normalised, clamped to +-6.
        target: float32 ``(1, H, W)``: ``reconstruction_rss`` normalised with the image's ``mean`` and
            ``std``, clamped; ``None`` for test/challenge slices (no target: inference only).
        mean, std: float32 0-dim: the image's normalisation (:func:`unnormalize` undoes it).
        max_value: float32 0-dim: the volume's maximum ``attrs["max"]``, the metrics' ``data_range``
            (nan without a target).
        fname: the file's name; slice_idx: the slice's index in it; subject: the file's ``patient_id``.
        masked_kspace: complex64 ``(C, Hk, Wk)``, the k-space under ``mask``; ``None`` unless asked for
            (``with_kspace``).
        mask: bool ``(Wk,)``, the column mask; ``None`` unless ``with_kspace``.
        sens_maps: complex64 ``(C, Hk, Wk)``, the true coil maps of a synthetic file; ``None`` unless
            ``with_kspace`` and the file stores them.
        target_raw: float32 ``(H, W)``, ``reconstruction_rss`` in physical units (not clamped); ``None``
            unless ``with_kspace`` and the slice has a target.
        calibration: complex64 ``(C, Hk, Wk)``, the stored k-space in its central
            :data:`CALIBRATION_COLUMNS` columns and zero elsewhere: the separate reference scan a
            scanner calibrates its coil maps on; ``None`` unless ``with_kspace``.

    A batch (:func:`collate`, as a ``DataLoader`` uses it) is the same record with a leading batch
    dimension ``B`` on every tensor (``mean`` ``(B,)``, ``image`` ``(B, 1, H, W)``, ...), ``fname`` and
    ``subject`` lists of ``B`` strings, ``slice_idx`` an int64 ``(B,)`` tensor; a field that is
    ``None`` in every sample stays ``None``.
    """

    image: torch.Tensor
    target: torch.Tensor | None
    mean: torch.Tensor
    std: torch.Tensor
    max_value: torch.Tensor
    fname: str
    slice_idx: int
    subject: str
    masked_kspace: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    sens_maps: torch.Tensor | None = None
    target_raw: torch.Tensor | None = None
    calibration: torch.Tensor | None = None


def calibration_kspace(kspace: torch.Tensor, columns: int = CALIBRATION_COLUMNS) -> torch.Tensor:
    """``kspace`` ``(..., Hk, Wk)`` kept in its central ``columns`` columns (:func:`mrtl_core.masks.center_lines`
    of the same width) and zero elsewhere: a calibration scan of the same slice."""
    from .masks import center_lines

    k = torch.as_tensor(kspace)
    w = k.shape[-1]
    keep = center_lines(w, min(1.0, columns / w))
    out = torch.zeros_like(k)
    out[..., keep] = k[..., keep]
    return out


def unet_transform(
    kspace: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None,
    recon_size: Sequence[int],
    target: torch.Tensor | np.ndarray | None = None,
    eps: float = _EPS,
    clamp: float = _CLAMP,
) -> UnetSample:
    """The standard U-Net input and target of one slice, without any file.

    Args:
        kspace: complex ``(C, Hk, Wk)`` fully sampled (or already masked) k-space.
        mask: ``(Wk,)`` boolean column mask applied here, or ``None`` for none.
        recon_size: ``(H, W)`` centre crop.
        target: optional ``(H', W')`` reference magnitude (centre-cropped to the image's size);
            ``None`` returns no target.

    Returns:
        A :class:`UnetSample` with ``image`` float32 ``(1, H, W)`` (normalised, clamped), ``mean``,
        ``std`` (0-dim) and, if ``target`` is given, ``target`` ``(1, H, W)`` normalised with the same
        mean/std and ``target_raw`` ``(H, W)``; no file, so ``max_value`` is nan, ``fname`` and
        ``subject`` are ``""``, ``slice_idx`` is 0 and the k-space fields are ``None``
        (:class:`UnetTransform` fills them).
    """
    k = torch.as_tensor(kspace)
    if mask is not None:
        k = apply_mask(k, mask)
    zf = zero_filled_rss(k, recon_size)
    image, mean, std = normalize_instance(zf, eps)
    target_norm = target_raw = None
    if target is not None:
        t = torch.as_tensor(np.asarray(target, dtype=np.float32) if not isinstance(target, torch.Tensor) else target)
        t = center_crop(t.to(torch.float32), zf.shape[-2:])
        target_norm = ((t - mean) / (std + eps)).clamp(-clamp, clamp).unsqueeze(0)
        target_raw = t
    return UnetSample(image=image.clamp(-clamp, clamp).unsqueeze(0), target=target_norm, mean=mean, std=std,
                      max_value=torch.tensor(math.nan, dtype=torch.float32), fname="", slice_idx=0, subject="",
                      target_raw=target_raw)


class UnetTransform:
    """The default transform of :class:`SliceDataset`: :func:`unet_transform` of one slice, as a :class:`UnetSample`.

    Args:
        with_kspace: also return ``masked_kspace``, ``mask``, ``sens_maps`` (if given) and ``target_raw``.
        eps, clamp: the instance normalisation's ``eps`` and the clamp of image and target.

    Called as :class:`SliceDataset` calls any transform (fastMRI's signature, plus the coil maps)::

        transform(kspace, mask, target, attrs, fname, slice_idx, sens_maps=None)

    with ``kspace`` complex64 ``(C, Hk, Wk)`` as stored (fully sampled, or a test/challenge file's
    under-sampled data), ``mask`` the bool ``(Wk,)`` column mask the dataset drew for the slice (or
    the file's own), ``target`` float32 ``(H', W')`` ``reconstruction_rss`` or ``None``, ``attrs`` the
    file's HDF5 attributes plus ``recon_size`` (the ``(H, W)`` crop), ``max`` (float, nan without a
    target), ``patient_id`` and ``path`` (str), ``fname`` the file's name, ``slice_idx`` the slice,
    ``sens_maps`` the slice's stored complex ``(C, Hk, Wk)`` maps or ``None``.

    A NaN or Inf in the k-space (found from the image's mean and std: it spreads through the FFT)
    or in the target raises :class:`DataError` naming the file and slice.
    """

    def __init__(self, with_kspace: bool = False, eps: float = _EPS, clamp: float = _CLAMP) -> None:
        self.with_kspace, self.eps, self.clamp = bool(with_kspace), float(eps), float(clamp)

    def __call__(
        self,
        kspace: torch.Tensor,
        mask: np.ndarray | torch.Tensor,
        target: torch.Tensor | None,
        attrs: Mapping[str, Any],
        fname: str,
        slice_idx: int,
        sens_maps: np.ndarray | torch.Tensor | None = None,
    ) -> UnetSample:
        where_file = attrs.get("path", fname)
        out = unet_transform(kspace, mask, attrs["recon_size"], target=target, eps=self.eps, clamp=self.clamp)
        # A NaN/Inf anywhere in k-space spreads through the FFT (even from a masked-out column,
        # as 0 * NaN = NaN) into the image's mean and std: two scalars checked instead of the slice.
        if not (torch.isfinite(out.mean) and torch.isfinite(out.std)):
            bad = ~torch.isfinite(torch.view_as_real(kspace)).all(-1)
            where = f" at (coil, row, col) {tuple(int(v) for v in bad.nonzero()[0])}" if bad.any() else " (overflow)"
            raise DataError(f"{where_file}: kspace slice {slice_idx} contains NaN or Inf{where}")
        if target is not None and not torch.isfinite(out.target_raw).all():
            raise DataError(f"{where_file}: reconstruction_rss slice {slice_idx} contains NaN or Inf")
        extra: dict[str, Any] = {"masked_kspace": None, "mask": None, "sens_maps": None, "target_raw": None,
                                 "calibration": None}
        if self.with_kspace:
            mask_t = torch.from_numpy(np.asarray(mask, dtype=bool))
            extra = {"masked_kspace": apply_mask(kspace, mask_t), "mask": mask_t,
                     "sens_maps": None if sens_maps is None else torch.from_numpy(np.asarray(sens_maps, dtype=np.complex64)),
                     "target_raw": out.target_raw, "calibration": calibration_kspace(torch.as_tensor(kspace))}
        return out._replace(max_value=torch.tensor(float(attrs.get("max", math.nan)), dtype=torch.float32),
                            fname=fname, slice_idx=slice_idx, subject=str(attrs.get("patient_id", "")), **extra)

    def __repr__(self) -> str:
        return f"UnetTransform(with_kspace={self.with_kspace}, eps={self.eps}, clamp={self.clamp})"


def collate(batch: Sequence[Any]) -> Any:
    """Batch samples for a ``DataLoader`` (``collate_fn=collate``): a :class:`UnetSample` of batches.

    Field by field, as torch's ``default_collate`` batches a NamedTuple (tensors stacked along a new
    first dimension, strings listed, ints made an int64 tensor), except that a field that is ``None``
    in every sample stays ``None``: ``default_collate`` refuses ``None``, which a sample without
    k-space (or without a target) holds. Samples that are not NamedTuples go to ``default_collate``.
    """
    from torch.utils.data import default_collate

    first = batch[0]
    if not (isinstance(first, tuple) and hasattr(first, "_fields")):
        return default_collate(batch)
    fields: dict[str, Any] = {}
    for name in first._fields:
        values = [getattr(s, name) for s in batch]
        missing = sum(v is None for v in values)
        if missing and missing < len(values):
            raise ValueError(f"cannot batch field {name!r}: None in {missing} of {len(values)} samples")
        fields[name] = None if missing else default_collate(values)
    return type(first)(**fields)


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def make_ismrmrd_header(
    encoded_matrix: Sequence[int],
    recon_matrix: Sequence[int],
    fov_mm: Sequence[float],
    field_strength_T: float,
    num_coils: int,
    num_slices: int,
    patient_id: str | None = None,
    protocol: Mapping[str, Any] | None = None,
    acquired_columns: tuple[int, int] | None = None,
) -> bytes:
    """ISMRMRD XML header, built with the ``ismrmrd`` package's schema classes.

    ``fov_mm`` is the reconstructed image's FOV ``(readout, phase, slice)``; the encoded FOV scales it
    by encoded / recon matrix per in-plane axis (a crop keeps the pixel size), which gives the 2x
    readout FOV of oversampled acquisitions as real fastMRI headers carry it. ``acquired_columns``
    ``(first, last)``: the phase-encode columns actually acquired when the outer ones are zero-filled
    (a matrix larger than the acquisition, as clinical sites reconstruct); written as the encoding
    limits of ``kspace_encoding_step_1`` so that fastMRI's padding rule (``padding_left = W // 2 -
    center``, ``padding_right = padding_left + maximum + 1``) recovers them. The protocol's
    ``echo_spacing`` goes to the sequence parameters, its ``refocusing_flip_deg`` and
    ``bandwidth_hz_per_px`` to user parameters.
    """
    import ismrmrd.xsd as x

    ex, ey = int(encoded_matrix[0]), int(encoded_matrix[1])
    rx, ry = int(recon_matrix[0]), int(recon_matrix[1])
    fx, fy, fz = (float(v) for v in fov_mm)
    space = lambda mx, my, ffx, ffy: x.encodingSpaceType(  # noqa: E731
        matrixSize=x.matrixSizeType(x=mx, y=my, z=1), fieldOfView_mm=x.fieldOfViewMm(x=ffx, y=ffy, z=fz)
    )
    encoding = x.encodingType(
        encodedSpace=space(ex, ey, fx * ex / rx, fy * ey / ry),
        reconSpace=space(rx, ry, fx, fy),
        encodingLimits=x.encodingLimitsType(
            kspace_encoding_step_1=(x.limitType(minimum=0, maximum=ey - 1, center=ey // 2) if acquired_columns is None
                                    else x.limitType(minimum=0, maximum=int(acquired_columns[1] - acquired_columns[0]),
                                                     center=ey // 2 - int(acquired_columns[0]))),
            slice=x.limitType(minimum=0, maximum=max(num_slices - 1, 0), center=0),
        ),
        trajectory=x.trajectoryType.CARTESIAN,
    )
    protocol = dict(protocol or {})
    if protocol.get("echo_train_length"):
        encoding.echoTrainLength = int(protocol["echo_train_length"])
    seq = None
    if "TR" in protocol or "TE" in protocol:
        as_list = lambda key: [float(protocol[key])] if protocol.get(key) is not None else []  # noqa: E731
        seq = x.sequenceParametersType(
            TR=as_list("TR"), TE=as_list("TE"), TI=as_list("TI"),
            flipAngle_deg=as_list("flip_angle_deg") or [90.0],  # spin-echo excitation
            sequence_type=str(protocol["sequence"]) if protocol.get("sequence") else None,
            echo_spacing=as_list("echo_spacing"),
        )
    extra = [x.userParameterDoubleType(name=k, value=float(protocol[k]))
             for k in ("refocusing_flip_deg", "bandwidth_hz_per_px") if protocol.get(k) is not None]
    header = x.ismrmrdHeader(
        subjectInformation=x.subjectInformationType(patientID=str(patient_id)) if patient_id else None,
        acquisitionSystemInformation=x.acquisitionSystemInformationType(
            systemVendor=_MRTL_VENDOR, systemFieldStrength_T=float(field_strength_T), receiverChannels=int(num_coils)
        ),
        experimentalConditions=x.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(round(_GAMMA_HZ_PER_T * float(field_strength_T)))
        ),
        encoding=[encoding],
        sequenceParameters=seq,
        userParameters=x.userParametersType(userParameterDouble=extra) if extra else None,
    )
    return x.ToXML(header).encode("ascii")


def write_fastmri_file(
    path: str | os.PathLike,
    kspace: np.ndarray,
    *,
    field_strength_T: float,
    fov_mm: Sequence[float],
    recon_size: Sequence[int],
    patient_id: str,
    acquisition: str,
    sens_maps: np.ndarray | None = None,
    reconstruction_rss: np.ndarray | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
    protocol: Mapping[str, Any] | None = None,
) -> Path:
    """Write one subject in the fastMRI multi-coil layout, atomically (temp file + rename).

    Args:
        kspace: complex ``(S, C, Hk, Wk)`` fully sampled k-space (stored as complex64).
        field_strength_T, fov_mm: go into the ISMRMRD header (``fov_mm`` = recon FOV, see
            :func:`make_ismrmrd_header`).
        recon_size: ``(H, W)`` recon matrix: the centre crop of the image.
        sens_maps: optional complex ``(S, C, Hk, Wk)`` coil maps.
        reconstruction_rss: optional float ``(S, H, W)``; ``None`` computes it from ``kspace`` with
            the loader's own transform (:func:`zero_filled_rss` of the full k-space).
        extra_attrs: more HDF5 attributes (e.g. ``domain``).

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    kspace = np.asarray(kspace)
    if not np.iscomplexobj(kspace) or kspace.ndim != 4:
        raise ValueError(f"kspace must be complex (S, C, Hk, Wk), got dtype {kspace.dtype} shape {kspace.shape}")
    if not np.isfinite(kspace).all():
        raise ValueError(f"kspace for {path} contains NaN or Inf")
    kspace = kspace.astype(np.complex64, copy=False)
    if sens_maps is not None:
        sens_maps = np.asarray(sens_maps)
        if sens_maps.shape != kspace.shape or not np.iscomplexobj(sens_maps):
            raise ValueError(f"sens_maps must be complex with kspace's shape {kspace.shape}, got {sens_maps.dtype} {sens_maps.shape}")
        sens_maps = sens_maps.astype(np.complex64, copy=False)
    recon_size = (int(recon_size[0]), int(recon_size[1]))
    if reconstruction_rss is None:
        reconstruction_rss = np.stack([zero_filled_rss(torch.from_numpy(k), recon_size).numpy() for k in kspace])
    reconstruction_rss = np.asarray(reconstruction_rss, dtype=np.float32)
    if reconstruction_rss.ndim != 3 or reconstruction_rss.shape[0] != kspace.shape[0]:
        raise ValueError(f"reconstruction_rss must be (S={kspace.shape[0]}, H, W), got {reconstruction_rss.shape}")
    # zero-filled outer phase-encode columns (never acquired) go into the header's encoding limits
    sampled = np.flatnonzero(np.any(kspace != 0, axis=(0, 1, 2)))
    acquired = ((int(sampled[0]), int(sampled[-1])) if sampled.size and (sampled[0] > 0 or sampled[-1] < kspace.shape[-1] - 1)
                else None)
    header = make_ismrmrd_header(
        kspace.shape[-2:], recon_size, fov_mm, field_strength_T, kspace.shape[1], kspace.shape[0], patient_id, protocol,
        acquired_columns=acquired,
    )

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace)  # contiguous: one slice is one cheap read
            f.create_dataset("reconstruction_rss", data=reconstruction_rss)
            f.create_dataset("ismrmrd_header", data=np.bytes_(header))
            if sens_maps is not None:
                f.create_dataset("sens_maps", data=sens_maps)
            f.attrs["acquisition"] = str(acquisition)
            f.attrs["max"] = float(reconstruction_rss.max())
            f.attrs["norm"] = float(np.linalg.norm(reconstruction_rss))
            f.attrs["patient_id"] = str(patient_id)
            for key, value in (extra_attrs or {}).items():
                f.attrs[key] = value

    return cache.atomic_write(path, write)


def write_subject(path: str | os.PathLike, subject: Any, *, with_sens_maps: bool = True) -> Path:
    """Write a :class:`mrtl_core.simulate.SimulatedSubject` with :func:`write_fastmri_file`."""
    size = int(subject.kspace.shape[-1])
    protocol = dict(getattr(subject, "protocol", {}) or {})
    extra = {"domain": str(subject.domain), "field_strength_T": float(subject.field_strength_T),
             "simulated": True, "data_version": DATA_VERSION}
    for name in ("noise_std", "subject_index", "seed"):
        value = getattr(subject, name, None)
        if isinstance(value, (int, float, np.integer, np.floating)):
            extra[name] = value
    acquisition = protocol.get("acquisition") or protocol.get("name") or protocol.get("sequence") or str(subject.domain)
    return write_fastmri_file(
        path,
        subject.kspace,
        field_strength_T=float(subject.field_strength_T),
        fov_mm=tuple(subject.fov_mm),
        recon_size=(size, size),
        patient_id=str(subject.patient_id),
        acquisition=str(acquisition),
        sens_maps=subject.sens_maps if with_sens_maps and getattr(subject, "sens_maps", None) is not None else None,
        extra_attrs=extra,
        protocol=protocol,
    )


# --------------------------------------------------------------------------------------------------
# Reader and validation
# --------------------------------------------------------------------------------------------------


def _parse_header(xml: bytes | str, where: Path) -> dict[str, Any]:
    if isinstance(xml, np.ndarray):
        xml = xml.item()
    if isinstance(xml, str):
        xml = xml.encode()
    import ismrmrd.xsd as x

    try:
        h = x.CreateFromDocument(xml)
        enc = h.encoding[0]
        axis = lambda v: tuple(int(getattr(v, a)) for a in "xyz")  # noqa: E731
        faxis = lambda v: tuple(float(getattr(v, a)) for a in "xyz")  # noqa: E731
        sysinfo = h.acquisitionSystemInformation
        out = {
            "encoded_matrix": axis(enc.encodedSpace.matrixSize),
            "recon_matrix": axis(enc.reconSpace.matrixSize),
            "encoded_fov_mm": faxis(enc.encodedSpace.fieldOfView_mm),
            "recon_fov_mm": faxis(enc.reconSpace.fieldOfView_mm),
            "field_strength_T": None if sysinfo is None or sysinfo.systemFieldStrength_T is None else float(sysinfo.systemFieldStrength_T),
            "num_coils": None if sysinfo is None or sysinfo.receiverChannels is None else int(sysinfo.receiverChannels),
            "system_vendor": None if sysinfo is None or sysinfo.systemVendor is None else str(sysinfo.systemVendor),
        }
        limits = enc.encodingLimits.kspace_encoding_step_1 if enc.encodingLimits is not None else None
        out["_limits"] = None if limits is None else (int(limits.center), int(limits.maximum))
    except Exception:  # real scanners' headers may hold elements this schema version rejects
        out = _parse_header_etree(xml, where)
    out["recon_size"] = out["recon_matrix"][:2]
    out["kspace_padding"] = _padding(out.pop("_limits", None), out["encoded_matrix"][1])
    return out


def _padding(limits: tuple[int, int] | None, encoded_cols: int) -> tuple[int, int]:
    """``(left, right)``: the acquired phase-encode columns are ``left <= column < right``, by
    fastMRI's rule from the encoding limits of ``kspace_encoding_step_1`` (``mri_data.py``:
    ``left = W // 2 - center``, ``right = left + maximum + 1``); all columns without limits."""
    if limits is None or None in limits:
        return (0, int(encoded_cols))
    center, maximum = limits
    left = int(encoded_cols) // 2 - int(center)
    return (left, left + int(maximum) + 1)


def _parse_header_etree(xml: bytes, where: Path) -> dict[str, Any]:
    # fastMRI's own route (mri_data.py): plain ElementTree with the ISMRMRD namespace.
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise DataError(f"{where}: ismrmrd_header is not valid XML ({err})") from None
    ns = {"m": "http://www.ismrm.org/ISMRMRD"}

    def find(path: str, cast=float):
        node = root.find("/".join(f"m:{p}" for p in path.split("/")), ns)
        return None if node is None or node.text is None else cast(node.text)

    try:
        def triple(base: str, cast):
            return tuple(find(f"encoding/{base}/{a}", cast) for a in "xyz")

        out = {
            "encoded_matrix": triple("encodedSpace/matrixSize", int),
            "recon_matrix": triple("reconSpace/matrixSize", int),
            "encoded_fov_mm": triple("encodedSpace/fieldOfView_mm", float),
            "recon_fov_mm": triple("reconSpace/fieldOfView_mm", float),
            "field_strength_T": find("acquisitionSystemInformation/systemFieldStrength_T"),
            "num_coils": find("acquisitionSystemInformation/receiverChannels", int),
            "system_vendor": find("acquisitionSystemInformation/systemVendor", str),
            "_limits": (find("encoding/encodingLimits/kspace_encoding_step_1/center", int),
                        find("encoding/encodingLimits/kspace_encoding_step_1/maximum", int)),
        }
    except ValueError as err:
        raise DataError(f"{where}: ismrmrd_header has a malformed number ({err})") from None
    if None in out["recon_matrix"][:2] or None in out["encoded_matrix"][:2]:
        raise DataError(f"{where}: ismrmrd_header lacks encoding/encodedSpace or reconSpace matrixSize")
    return out


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The ISMRMRD header of a file as a dict.

    Keys: ``encoded_matrix`` and ``recon_matrix`` ``(x, y, z)`` (x = readout = rows H), ``encoded_fov_mm``,
    ``recon_fov_mm``, ``field_strength_T`` (float or None), ``num_coils`` (int or None), ``system_vendor``
    (str or None; ``"mrtl (simulated)"`` in the files mrtl writes), ``recon_size`` ``(H, W)``,
    ``kspace_padding`` ``(left, right)``: the acquired phase-encode columns, as fastMRI derives them
    (all of them unless the header's encoding limits say the outer ones are zero-filled).
    """
    path = Path(path)
    with _open(path) as f:
        if "ismrmrd_header" not in f:
            raise DataError(f"{path}: missing dataset 'ismrmrd_header'")
        return _parse_header(f["ismrmrd_header"][()], path)


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    if not is_hdf5:
        raise DataError(f"{path}: not an HDF5 file (no HDF5 signature; {path.stat().st_size} bytes)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: HDF5 file cannot be opened, truncated or corrupt? ({err})") from None


@dataclass(frozen=True)
class FastMRIFile:
    """What :func:`inspect_file` found in a valid file."""

    path: Path
    num_slices: int
    num_coils: int
    kspace_shape: tuple[int, int, int, int]
    recon_size: tuple[int, int]  # (H, W) of the crop actually used (header recon matrix, clamped)
    target_shape: tuple[int, int]
    has_sens_maps: bool
    patient_id: str
    acquisition: str
    max_value: float                # nan when the file has no target
    norm: float
    field_strength_T: float | None
    header: dict = field(repr=False, default_factory=dict)
    attrs: dict = field(repr=False, default_factory=dict)
    has_target: bool = True         # reconstruction_rss present (fastMRI test/challenge files have none)
    mask: np.ndarray | None = field(repr=False, compare=False, default=None)  # the file's own (Wk,) mask, if any

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the slices' images (the recon crop)."""
        return self.recon_size


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_dataset(f: h5py.File, key: str, rank: int, kinds: str, path: Path, what: str) -> h5py.Dataset:
    if key not in f:
        raise DataError(f"{path}: missing dataset '{key}' (expected {what}); found keys {sorted(f.keys())}")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: '{key}' is a {type(ds).__name__}, expected a dataset ({what})")
    if ds.dtype.kind not in kinds:
        raise DataError(f"{path}: dataset '{key}' has dtype {ds.dtype}, expected {what}")
    if ds.ndim != rank:
        raise DataError(f"{path}: dataset '{key}' has rank {ds.ndim} (shape {ds.shape}), expected rank {rank} {what}")
    return ds


def _check_storage(ds: h5py.Dataset, file_size: int, path: Path) -> None:
    # A truncated file may still open (its metadata sits before the cut); a contiguous dataset whose
    # bytes end past the end of the file is the tell-tale, found without reading the data.
    offset = ds.id.get_offset()
    if offset is not None and offset + ds.id.get_storage_size() > file_size:
        raise DataError(
            f"{path}: dataset '{ds.name.lstrip('/')}' ends at byte {offset + ds.id.get_storage_size()} but the "
            f"file has {file_size} bytes: the file is truncated"
        )


def inspect_file(path: str | os.PathLike, check_values: bool = False) -> FastMRIFile:
    """Validate a fastMRI-layout file and describe it; raise :class:`DataError` naming the fault.

    Checks keys, dtypes, ranks, slice and coil counts (``kspace`` vs ``sens_maps`` vs
    ``reconstruction_rss`` vs header), attrs, the header, and truncation; ``check_values=True`` also
    reads every k-space slice and rejects NaN/Inf (the loader checks each slice it reads anyway).
    """
    path = Path(path)
    with _open(path) as f:
        size = path.stat().st_size
        try:
            ks = _check_dataset(f, "kspace", 4, "c", path, "complex (S, C, Hk, Wk)")
            file_mask = _read_mask(f, ks.shape, path) if "mask" in f else None
            # a test/challenge file (own mask) may lack the target; any other file must have it
            has_target = file_mask is None or "reconstruction_rss" in f
            tg = _check_dataset(f, "reconstruction_rss", 3, "f", path, "float (S, H, W)") if has_target else None
            if "ismrmrd_header" not in f:
                raise DataError(f"{path}: missing dataset 'ismrmrd_header' (ISMRMRD XML); found keys {sorted(f.keys())}")
            header = _parse_header(f["ismrmrd_header"][()], path)
            has_maps = "sens_maps" in f
            if has_maps:
                sm = _check_dataset(f, "sens_maps", 4, "c", path, "complex (S, C, Hk, Wk) like kspace")
                if sm.shape[1] != ks.shape[1]:
                    raise DataError(f"{path}: sens_maps has {sm.shape[1]} coils but kspace has {ks.shape[1]} "
                                    f"(sens_maps shape {sm.shape}, kspace shape {ks.shape})")
                if sm.shape != ks.shape:
                    raise DataError(f"{path}: sens_maps shape {sm.shape} differs from kspace shape {ks.shape}")
            s, c, hk, wk = ks.shape
            if s == 0:
                raise DataError(f"{path}: kspace has no slices (shape {ks.shape})")
            if tg is not None and tg.shape[0] != s:
                raise DataError(f"{path}: reconstruction_rss has {tg.shape[0]} slices but kspace has {s} "
                                f"(shapes {tg.shape} and {ks.shape})")
            if header["num_coils"] is not None and header["num_coils"] != c:
                raise DataError(f"{path}: ismrmrd_header says {header['num_coils']} receiver channels but kspace has {c} coils")
            crop = _fit_crop(header["recon_size"], (hk, wk))
            if tg is not None and (tg.shape[1] < crop[0] or tg.shape[2] < crop[1]):
                raise DataError(f"{path}: reconstruction_rss slices are {tg.shape[1:]} but the recon crop is {crop}")
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            for key in _REQUIRED_ATTRS if has_target else ("acquisition", "patient_id"):
                if key not in attrs:
                    raise DataError(f"{path}: missing attribute '{key}'; found attributes {sorted(attrs)}")
            max_value = _check_max(attrs, path) if has_target else float("nan")
            for ds in (ks, *([tg] if tg is not None else []), *([f["sens_maps"]] if has_maps else [])):
                _check_storage(ds, size, path)
            if check_values:
                for i in range(s):
                    if not np.isfinite(ks[i]).all():
                        raise DataError(f"{path}: kspace slice {i} contains NaN or Inf")
        except DataError:
            raise
        except (OSError, KeyError, RuntimeError) as err:
            raise DataError(f"{path}: unreadable, truncated or corrupt? ({err})") from None
        return FastMRIFile(
            path=path, num_slices=s, num_coils=c, kspace_shape=tuple(ks.shape), recon_size=crop,
            target_shape=tuple(tg.shape[1:]) if tg is not None else crop, has_sens_maps=has_maps,
            patient_id=str(attrs["patient_id"]), acquisition=str(attrs["acquisition"]), max_value=max_value,
            norm=float(attrs.get("norm", float("nan"))), field_strength_T=header["field_strength_T"], header=header,
            attrs=attrs, has_target=has_target, mask=file_mask,
        )


def _read_mask(f: h5py.File, kspace_shape: tuple[int, ...], path: Path) -> np.ndarray:
    """The ``(Wk,)`` boolean column mask a test/challenge file stores (0/1 of any numeric dtype)."""
    ds = f["mask"]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf":
        raise DataError(f"{path}: 'mask' must be a numeric (Wk,) dataset of 0/1, got {ds!r}")
    m = np.asarray(ds[()]).reshape(-1) if ds.ndim > 1 and max(ds.shape) == ds.size else np.asarray(ds[()])
    if m.ndim != 1 or m.shape[0] != kspace_shape[-1]:
        raise DataError(f"{path}: 'mask' has shape {ds.shape} but kspace has Wk={kspace_shape[-1]} columns "
                        f"(kspace shape {tuple(kspace_shape)}); expected ({kspace_shape[-1]},)")
    if not np.isin(m, (0, 1)).all():
        raise DataError(f"{path}: 'mask' holds values other than 0 and 1 ({np.unique(m)[:5].tolist()} ...)")
    m = m.astype(bool)
    if not m.any():
        raise DataError(f"{path}: 'mask' samples no column (all {m.shape[0]} are 0)")
    return m


def _check_max(attrs: Mapping[str, Any], path: Path) -> float:
    """``attrs["max"]`` is the metrics' data range: a finite number > 0."""
    try:
        value = float(attrs["max"])
    except (TypeError, ValueError):
        raise DataError(f"{path}: attribute 'max' is {attrs['max']!r}, expected a number") from None
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{path}: attribute 'max' is {value!r}; it is the metrics' data range and must be finite "
                        f"and > 0 (the maximum of reconstruction_rss)")
    return value


def list_files(files: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """A directory's ``*.h5`` files (sorted), or the given files; :class:`DataError` if none."""
    if isinstance(files, (str, os.PathLike)):
        root = Path(files)
        if root.is_dir():
            found = sorted(p for p in root.glob("*.h5") if not p.name.startswith("."))
            if not found:
                raise DataError(f"{root}: directory holds no .h5 files")
            return found
        return [root]
    out = [Path(p) for p in files]
    if not out:
        raise DataError("no files given (an empty list)")
    return out


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


def _stable_seed(*parts: Any) -> int:
    """A seed from a stable hash (unlike ``hash()``, the same in every process and run)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class SliceDataset(torch.utils.data.Dataset):
    """Slices of fastMRI-layout files with on-the-fly Cartesian masking and a transform (the U-Net's by default).

    Args:
        files: a directory (its ``*.h5``) or a list of files; one subject per file.
        acceleration, center_fraction, mask_kind: a fixed mask distribution (``center_fraction=None``
            uses :func:`mrtl_core.masks.default_center_fraction`, 0.08 at 4x).
        mask_func: a :class:`~mrtl_core.masks.MaskFunc` instead (e.g. random accelerations), called
            ``mask_func(num_cols, seed=seed)``; or any mask function with fastMRI's signature
            (:class:`~mrtl_core.masks.FastmriMaskFunc`, or fastMRI's own), called as fastMRI's
            ``apply_mask`` calls it: ``mask_func((1, Hk, Wk, 2), None, seed)`` -> ``(mask, num_low)``.
        crop_size: ``(H, W)`` instead of the header's recon matrix.
        split_seed: an integer mixed into the per-slice mask seeds (``None`` = 0), so that e.g. a
            validation and a test view of the same file can be given different fixed masks.
        seed_masks: ``True`` (validation/test): fixed masks, seeded as ``mask_seed`` says, so every
            evaluation sees the same masks. ``False`` (training): a fresh mask per access, drawn
            from torch's RNG (reproducible under ``torch.manual_seed``; DataLoader workers get
            distinct streams).
        mask_seed: how ``seed_masks`` seeds a slice's mask. ``"slice"``: mrtl's own, a stable hash of
            (file name, slice, split_seed), a mask of its own for every slice. ``"volume"``:
            fastMRI's (``UnetDataTransform(use_seed=True)``), the seed ``tuple(map(ord, fname))``,
            one mask for every slice of a file, the same in every split (``split_seed`` unused).
            ``"auto"`` (default): ``"slice"`` for the files mrtl writes (:func:`write_fastmri_file`,
            whose header names the vendor ``"mrtl (simulated)"``: the book's data keep their masks)
            and ``"volume"`` for every other file, e.g. real fastMRI data. With one of fastMRI's
            mask functions (``mask_func=masks.RandomMaskFunc(...)``, or fastMRI's own objects) and
            ``"volume"``, a file's mask is the one fastMRI's transform draws for it.
        with_kspace: the default transform also returns ``masked_kspace``, ``mask``, ``sens_maps``
            (if stored) and ``target_raw``; with any transform, stored coil maps are read and passed
            to it only when this (or the transform's own ``with_kspace`` attribute) is true.
        skip_bad_files: warn about (file, reason) and skip invalid files instead of raising.
        max_open_files: h5py handles kept open per process (least recently used are closed).
        transform: called on every slice read as ``transform(kspace, mask, target, attrs, fname,
            slice_idx, sens_maps=...)`` (see :class:`UnetTransform` for the arguments); its return
            value is the item. ``None``: ``UnetTransform(with_kspace=with_kspace)``.

    With the default transform each item is a :class:`UnetSample` (fields and shapes there): ``image``
    and ``target`` ``(1, H, W)``, ``mean``, ``std``, ``max_value``, ``fname``, ``slice_idx``,
    ``subject``, and with ``with_kspace`` ``masked_kspace``, ``mask``, ``sens_maps``, ``target_raw``.
    A ``DataLoader`` over it needs ``collate_fn=collate`` where a field is ``None``.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike] | str | os.PathLike,
        acceleration: float = 4.0,
        center_fraction: float | None = None,
        mask_kind: str = "random",
        crop_size: Sequence[int] | None = None,
        split_seed: int | None = None,
        seed_masks: bool = True,
        with_kspace: bool = False,
        skip_bad_files: bool = False,
        mask_func: MaskFunc | Callable[..., Any] | None = None,
        variable_density: float | None = None,
        max_open_files: int = 32,
        transform: Callable[..., Any] | None = None,
        mask_seed: str = "auto",
    ) -> None:
        if mask_seed not in ("auto", "slice", "volume"):
            raise ValueError(f"mask_seed must be 'auto', 'slice' or 'volume', got {mask_seed!r}")
        self.mask_seed = mask_seed
        self.mask_func = mask_func
        if mask_func is None:
            cf = default_center_fraction(acceleration) if center_fraction is None else center_fraction
            # validate the mask settings now, not in the first __getitem__ of a worker; against each
            # file's own column count once the files are known (_check_consistent)
            check_mask_settings(acceleration, cf, kind=mask_kind, variable_density=variable_density)
            center_fraction = cf
        self.acceleration, self.center_fraction, self.mask_kind = acceleration, center_fraction, mask_kind
        self.variable_density = variable_density
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.split_seed = 0 if split_seed is None else int(split_seed)
        self.transform = UnetTransform(with_kspace=bool(with_kspace)) if transform is None else transform
        self.seed_masks = bool(seed_masks)
        self.with_kspace = bool(with_kspace) or bool(getattr(self.transform, "with_kspace", False))
        self.max_open_files = int(max_open_files)

        self.files: list[FastMRIFile] = []
        for path in list_files(files):
            try:
                info = inspect_file(path)
                if self.crop_size is not None:
                    hk, wk = info.kspace_shape[-2:]
                    if self.crop_size[0] > min(hk, info.target_shape[0]) or self.crop_size[1] > min(wk, info.target_shape[1]):
                        raise DataError(f"{path}: crop_size {self.crop_size} exceeds the image {(hk, wk)} "
                                        f"or reconstruction_rss {info.target_shape}")
            except DataError as err:
                if not skip_bad_files:
                    raise
                warnings.warn(f"skipping bad file: {err}", stacklevel=2)
                continue
            self.files.append(info)
        if not self.files:
            raise DataError(f"no usable files in {files!r}")
        self._check_consistent()
        # which files get one mask per volume (fastMRI's seeding) when seed_masks
        self._volume_seeded = {f.path.name: mask_seed == "volume" or (
            mask_seed == "auto" and f.header.get("system_vendor") != _MRTL_VENDOR) for f in self.files}
        self.index: list[tuple[int, int]] = [(i, s) for i, f in enumerate(self.files) for s in range(f.num_slices)]
        self._handles: OrderedDict[int, h5py.File] = OrderedDict()
        self._pid = os.getpid()

    def _check_consistent(self) -> None:
        """Refuse now what would fail at a random batch later: mixed image shapes (collate), files
        with and without targets, and masks the settings cannot draw for a file's column count."""
        def describe(groups: dict) -> str:
            parts = []
            for key, paths in groups.items():
                more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
                parts.append(f"{key} in {paths[0].name}{more}")
            return "; ".join(parts)

        shapes: dict[tuple[int, int], list[Path]] = {}
        for f in self.files:
            shapes.setdefault(self.crop_size or f.image_shape, []).append(f.path)
        if len(shapes) > 1:
            raise DataError(f"{self.files[0].path.parent}: images of {len(shapes)} shapes cannot be batched together: "
                            f"{describe({f'{h}x{w}': v for (h, w), v in shapes.items()})}; "
                            f"use one shape per dataset or a common crop_size (--crop-size H W)")
        targets = {f.has_target for f in self.files}
        if len(targets) > 1:
            without = [f.path for f in self.files if not f.has_target]
            raise DataError(f"{without[0]}: has no reconstruction_rss but other files have one; keep test/challenge "
                            f"files ({len(without)}) apart from files with targets")
        if self.mask_func is None:
            checked: set[int] = set()
            for f in self.files:
                w = f.kspace_shape[-1]
                if f.mask is None and w not in checked:
                    try:
                        make_mask(w, self.acceleration, self.center_fraction, kind=self.mask_kind, seed=0,
                                  variable_density=self.variable_density)
                    except ValueError as err:
                        raise DataError(f"{f.path}: {err}") from None
                    checked.add(w)

    @property
    def has_targets(self) -> bool:
        """Whether the slices have a target (``reconstruction_rss``); test/challenge files do not."""
        return self.files[0].has_target

    def effective_acceleration(self, max_slices: int | None = None) -> float:
        """Mean ``W / sampled columns`` of the masks of the first ``max_slices`` slices (all by default)."""
        rates = []
        for file_idx, slice_idx in self.index[: max_slices or len(self.index)]:
            info = self.files[file_idx]
            rates.append(effective_acceleration(self._mask(info, slice_idx)))
        return float(np.mean(rates))

    def _mask(self, info: FastMRIFile, slice_idx: int) -> np.ndarray:
        # a test/challenge file's k-space is already under-sampled: its own mask is the only one
        if info.mask is not None:
            return info.mask
        mask = self.mask_for(info.path.name, slice_idx, info.kspace_shape[-1], num_rows=info.kspace_shape[-2])
        left, right = info.header.get("kspace_padding", (0, info.kspace_shape[-1]))
        if left > 0 or right < mask.shape[0]:
            # fastMRI's apply_mask(padding=...): columns the scanner never acquired are not "sampled"
            mask = mask.copy()
            mask[:left] = False
            mask[right:] = False
        return mask

    # h5py handles must not cross a fork or a pickle: each worker opens its own, lazily.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's open file handles."""
        handles = self.__dict__.get("_handles") or {}
        if self.__dict__.get("_pid") == os.getpid():
            for h in handles.values():
                try:
                    h.close()
                except Exception:
                    pass
        self._handles = OrderedDict()

    def _handle(self, file_idx: int) -> h5py.File:
        if self._pid != os.getpid():  # forked worker: the parent's handles are not ours
            self._handles, self._pid = OrderedDict(), os.getpid()
        h = self._handles.get(file_idx)
        if h is None:
            path = self.files[file_idx].path
            try:
                h = h5py.File(path, "r")
            except OSError as err:
                raise DataError(f"{path}: cannot be opened ({err})") from None
            self._handles[file_idx] = h
            while len(self._handles) > self.max_open_files:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(file_idx)
        return h

    def __len__(self) -> int:
        return len(self.index)

    @property
    def subjects(self) -> list[str]:
        """Patient ids of the files, in order."""
        return [f.patient_id for f in self.files]

    def mask_for(self, fname: str, slice_idx: int, num_cols: int, num_rows: int | None = None) -> np.ndarray:
        """The bool ``(num_cols,)`` mask this dataset uses for ``(fname, slice_idx)`` when ``seed_masks``.

        Seeded per slice or per volume as ``mask_seed`` says (a name that is not one of the
        dataset's files: per volume only under ``mask_seed="volume"``); ``num_rows`` (``Hk``) completes
        the k-space shape a fastMRI-signature ``mask_func`` is given (1 when ``None``).
        """
        name = Path(fname).name
        if not self.seed_masks:
            seed: Any = int(torch.randint(0, 2**31 - 1, (1,)).item())
        elif self._volume_seeded.get(name, self.mask_seed == "volume"):
            seed = tuple(map(ord, name))  # fastMRI's seed: one mask for the whole volume
        else:
            seed = _stable_seed(name, slice_idx, self.split_seed)
        if isinstance(self.mask_func, MaskFunc):
            return self.mask_func(num_cols, seed=seed)
        if self.mask_func is not None:
            mask, _ = self.mask_func((1, int(num_rows or 1), int(num_cols), 2), None, seed)
            return np.asarray(torch.as_tensor(mask).reshape(-1).cpu().numpy() != 0, dtype=bool)
        return make_mask(num_cols, self.acceleration, self.center_fraction, kind=self.mask_kind,
                         seed=seed, variable_density=self.variable_density)

    def __getitem__(self, idx: int) -> Any:
        """The ``idx``-th slice through the transform: a :class:`UnetSample` with the default one."""
        file_idx, slice_idx = self.index[idx]
        info = self.files[file_idx]
        f = self._handle(file_idx)
        try:
            kspace = torch.from_numpy(np.asarray(f["kspace"][slice_idx], dtype=np.complex64))
            target = (torch.from_numpy(np.asarray(f["reconstruction_rss"][slice_idx], dtype=np.float32))
                      if info.has_target else None)
            maps = f["sens_maps"][slice_idx] if (self.with_kspace and info.has_sens_maps) else None
        except OSError as err:
            raise DataError(f"{info.path}: slice {slice_idx} cannot be read, truncated or corrupt? ({err})") from None
        mask = self._mask(info, slice_idx)
        attrs = {**info.attrs, "recon_size": self.crop_size or info.recon_size, "max": info.max_value,
                 "patient_id": info.patient_id, "path": str(info.path)}
        return self.transform(kspace, mask, target, attrs, info.path.name, slice_idx, sens_maps=maps)


# --------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------


def patient_id(path: str | os.PathLike) -> str:
    """The subject a file holds: its ``attrs["patient_id"]`` (what :func:`split_by_subject` groups by).

    Raises :class:`DataError` naming the file if it cannot be opened or lacks the attribute.
    """
    path = Path(path)
    with _open(path) as f:
        if "patient_id" not in f.attrs:
            raise DataError(f"{path}: missing attribute 'patient_id' (needed to split by subject)")
        return str(_attr(f.attrs["patient_id"]))


def split_by_subject(
    files: Sequence[str | os.PathLike] | str | os.PathLike,
    splits: Mapping[str, float | int | None] | Sequence[float | int | None] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Split files into named sets by subject (``attrs["patient_id"]``): no subject is in two sets.

    Args:
        files: a directory or a list of files.
        splits: ``{name: size}`` or a sequence of sizes named ``train``, ``val``, ``test`` (in order).
            Sizes are all fractions (floats summing to <= 1; largest-remainder rounding) or all subject
            counts (ints; at most one ``None`` meaning "the remaining subjects").
        seed: the shuffle of subjects (sorted by id first, so the split does not depend on file order).

    Returns:
        ``{name: [paths]}``, each list sorted. Raises :class:`DataError` if a set would be empty.
    """
    paths = list_files(files)
    if not isinstance(splits, Mapping):
        names = ("train", "val", "test")
        if len(splits) > len(names):
            raise ValueError(f"at most {len(names)} unnamed split sizes, got {list(splits)}; pass a dict")
        splits = dict(zip(names, splits))
    if not splits:
        raise ValueError("splits is empty")
    by_subject: dict[str, list[Path]] = {}
    for p in paths:
        by_subject.setdefault(patient_id(p), []).append(p)
    subjects = sorted(by_subject)
    order = [subjects[i] for i in np.random.default_rng(seed).permutation(len(subjects))]
    n = len(order)

    values = list(splits.values())
    if all(isinstance(v, (float, np.floating)) for v in values):
        if any(v < 0 for v in values) or sum(values) > 1 + 1e-9:
            raise ValueError(f"split fractions must be >= 0 and sum to <= 1, got {dict(splits)}")
        exact = [v * n for v in values]
        counts = [int(np.floor(e)) for e in exact]
        budget = min(n, int(round(sum(exact))))
        for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: budget - sum(counts)]:
            counts[i] += 1
    elif all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) for v in values):
        if sum(v is None for v in values) > 1 or any(v is not None and v < 0 for v in values):
            raise ValueError(f"split counts must be ints >= 0 with at most one None (the rest), got {dict(splits)}")
        fixed = sum(v for v in values if v is not None)
        if fixed > n:
            raise DataError(f"split counts {dict(splits)} ask for {fixed} subjects but only {n} exist")
        counts = [n - fixed if v is None else int(v) for v in values]
    else:
        raise ValueError(f"split sizes must be all fractions (floats) or all counts (ints), got {dict(splits)}")

    out: dict[str, list[Path]] = {}
    start = 0
    for name, count in zip(splits, counts):
        if count <= 0:
            raise DataError(f"split '{name}' would be empty: {n} subjects, sizes {dict(splits)}")
        out[name] = sorted(p for s in order[start : start + count] for p in by_subject[s])
        start += count
    return out
