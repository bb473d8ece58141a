"""Evaluation on test slices: reconstruct, un-normalise, score per slice and per volume.

:func:`evaluate` reconstructs each slice with a model, or with the classical ``"zero-filled"`` or
``"cg-sense"`` baselines (coil maps by ESPIRiT from a calibration scan of the central 24 columns, as
a scanner computes them, :func:`sample_maps`; the true maps a synthetic file stores only when asked
for, as a labelled oracle), un-normalises to physical units and reports SSIM, PSNR, RMSE and NMSE per slice
(:data:`METRICS`), over the whole image and over a foreground mask, with ``data_range`` the target
volume's maximum (fastMRI's convention). The result, :class:`EvalResult`, pairs slice by slice with
another on the same dataset (:func:`mrtl_core.stats.paired_difference`), and groups its slices by
volume (file) for the same metrics per volume as fastMRI's ``evaluate.py`` computes them
(:meth:`EvalResult.volume_metrics`, :meth:`EvalResult.volume_summary`).

:func:`reconstruct_files` writes the same reconstructions as fastMRI submission files, for data
without targets.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from . import stop
from .data import UnetSample, center_crop, unnormalize
from .stats import summarise
from .train import resolve_device, unwrap

__all__ = ["METRICS", "EvalResult", "evaluate", "reconstruct_files", "mean_over_runs"]

METRICS = ("ssim", "psnr", "rmse", "nmse", "ssim_fg", "psnr_fg", "rmse_fg", "nmse_fg")


# --------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-slice metrics of one method on one dataset, and a few example reconstructions.

    ``metrics[name]`` is a float64 array with one value per slice (``name`` in :data:`METRICS`;
    ``*_fg`` are over the target's foreground mask). ``slices`` lists ``(fname, slice_idx)`` in
    the same order. ``examples[i]`` holds physical-unit ``pred``, ``target``, ``zero_filled``
    (H, W) float32 arrays and ``foreground`` for the requested dataset indices. ``volume_terms``
    holds, per slice and in the same order, what the per-volume metrics pool: ``sse`` (squared
    error), ``energy`` (squared target), ``pixels``, their ``*_fg`` counterparts over the foreground,
    and ``data_range`` (the slice's ``max_value``).
    """

    method: str
    metrics: dict[str, np.ndarray]
    slices: list[tuple[str, int]]
    examples: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0
    volume_terms: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self, confidence: float = 0.95) -> dict[str, dict]:
        """Per metric, :func:`mrtl_core.stats.summarise` of the per-slice values (mean, std, t-interval)."""
        return {name: summarise(v, confidence) for name, v in self.metrics.items()}

    def mean(self, metric: str) -> float:
        """The mean over slices of one metric."""
        return float(np.mean(self.metrics[metric]))

    @property
    def volumes(self) -> list[str]:
        """The file names of the evaluated slices, each once, in the order first met."""
        return list(dict.fromkeys(name for name, _ in self.slices))

    def volume_metrics(self) -> dict[str, np.ndarray]:
        """Per metric of :data:`METRICS`, one value per volume (in the order of :attr:`volumes`).

        As fastMRI's ``evaluate.py`` scores a volume (:func:`mrtl_core.metrics.volume_metrics`):
        PSNR, RMSE and NMSE pool the squared error of all the volume's evaluated slices, PSNR with
        the volume's ``max_value`` as data range; SSIM is the mean of the slices' SSIM, each with the
        same data range. The ``*_fg`` metrics pool over the foreground masks the same way (mrtl's,
        not fastMRI's). A volume is scored over the slices evaluated (all of them unless
        ``max_slices`` cut the dataset short). The per-slice :attr:`metrics` and :meth:`summary`
        are unchanged by this; the two conventions differ (a mean of per-slice PSNR is not the PSNR
        of the pooled error), so a table says which one it shows.
        """
        terms = self.volume_terms
        if not terms:
            raise ValueError("this EvalResult records no per-volume terms (it was not made by evaluate)")
        names = [name for name, _ in self.slices]
        out: dict[str, list[float]] = {k: [] for k in METRICS}
        for volume in self.volumes:
            idx = np.flatnonzero(np.asarray([n == volume for n in names]))
            ranges = np.unique(terms["data_range"][idx])
            if ranges.size != 1:
                raise ValueError(f"{volume}: its slices carry {ranges.size} data ranges ({ranges.tolist()}); "
                                 "a volume has one (the file's max)")
            for fg in ("", "_fg"):
                sse, energy = terms["sse" + fg][idx].sum(), terms["energy" + fg][idx].sum()
                mse = sse / terms["pixels" + fg][idx].sum()
                with np.errstate(divide="ignore", invalid="ignore"):
                    out["psnr" + fg].append(float(10.0 * np.log10(ranges[0] ** 2 / mse)))
                    out["nmse" + fg].append(float(sse / energy))
                out["rmse" + fg].append(float(np.sqrt(mse)))
                out["ssim" + fg].append(float(np.mean(self.metrics["ssim" + fg][idx])))
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}

    def volume_summary(self, confidence: float = 0.95) -> dict[str, dict]:
        """Per metric, :func:`mrtl_core.stats.summarise` of the per-volume values (:meth:`volume_metrics`)."""
        return {name: summarise(v, confidence) for name, v in self.volume_metrics().items()}

    def to_dict(self) -> dict:
        """Method, seconds, summary, per-slice values and slice names (JSON-ready; no example images)."""
        return {"method": self.method, "seconds": self.seconds, "summary": self.summary(),
                "per_slice": {k: v.tolist() for k, v in self.metrics.items()},
                "slices": [list(s) for s in self.slices]}

    def __repr__(self) -> str:
        s = self.summary()
        parts = ", ".join(f"{k}={s[k]['mean']:.4g}" for k in ("ssim", "psnr", "ssim_fg") if k in s)
        return f"EvalResult({self.method!r}, n={len(self.slices)}, {parts})"


def mean_over_runs(results: Sequence[EvalResult], method: str | None = None) -> EvalResult:
    """One result whose per-slice metrics are the mean over ``results``: the same method trained with
    other seeds, scored on the same slices. A paired difference of two such means is the difference
    seed-averaged slice by slice, so its interval (over test subjects) holds the training runs'
    spread only through those averages; the examples are the first run's, and ``volume_terms`` are
    dropped (pooled errors of different networks do not add). ``method`` names it (default: the
    first's, with the number of runs)."""
    results = list(results)
    if not results:
        raise ValueError("mean_over_runs needs at least one result")
    first = results[0]
    for r in results[1:]:
        if r.slices != first.slices:
            raise ValueError(f"mean_over_runs needs results on the same slices in the same order: {first.method!r} has "
                             f"{len(first.slices)}, {r.method!r} has {len(r.slices)}")
        if set(r.metrics) != set(first.metrics):
            raise ValueError(f"{r.method!r} records metrics {sorted(r.metrics)}, {first.method!r} {sorted(first.metrics)}")
    metrics = {k: np.mean([np.asarray(r.metrics[k], dtype=np.float64) for r in results], axis=0) for k in first.metrics}
    return EvalResult(method if method is not None else f"{first.method} (mean of {len(results)} runs)", metrics,
                      list(first.slices), dict(first.examples), float(sum(r.seconds for r in results)))


#: How :func:`evaluate`'s CG-SENSE gets its coil maps: ``"scanner"`` (default: ESPIRiT on the
#: sample's calibration scan, the central :data:`mrtl_core.data.CALIBRATION_COLUMNS` columns, by
#: :func:`mrtl_core.sense.scanner_maps`; on the masked k-space's own ACS block where a file holds no
#: fully sampled centre), ``"espirit"`` / ``"lowres"`` (:func:`mrtl_core.sense.estimate_maps` on the
#: masked k-space's ACS block, its defaults), ``"true"`` (the maps a synthetic file stores: an oracle,
#: labelled ``"cg-sense (true maps)"``).
MAPS_METHODS = ("scanner", "espirit", "lowres", "true")


def sample_maps(sample: UnetSample, center_fraction: float | None = None, maps_method: str = "scanner") -> torch.Tensor:
    """The coil maps ``(C, Hk, Wk)`` CG-SENSE uses for one sample under ``maps_method`` (:data:`MAPS_METHODS`)."""
    from . import sense

    if maps_method not in MAPS_METHODS:
        raise ValueError(f"maps_method must be one of {MAPS_METHODS}, got {maps_method!r}")
    if maps_method == "true":
        if sample.sens_maps is None:
            raise ValueError(f"{sample.fname}: maps_method='true' needs the true coil maps, and the file has no "
                             "sens_maps (real data never has them): use maps_method='scanner'")
        return torch.as_tensor(sample.sens_maps)
    calibrate_on_scan = maps_method == "scanner" and sample.calibration is not None
    kspace = torch.as_tensor(sample.calibration if calibrate_on_scan else sample.masked_kspace)
    key = (_digest(kspace), None if calibrate_on_scan else center_fraction, maps_method)
    maps = _MAPS_CACHE.get(key)
    if maps is None:
        def estimate() -> torch.Tensor:
            if calibrate_on_scan:   # the calibration's sampled centre is found from the data
                return sense.scanner_maps(kspace)
            if maps_method == "scanner":
                return sense.scanner_maps(kspace, center_fraction=center_fraction)
            return sense.estimate_maps(kspace, center_fraction=center_fraction, method=maps_method)

        # ESPIRiT costs about half a second a slice and every chapter scores the same test slices:
        # keep its maps on disk too. Low-resolution maps cost less than reading them back.
        maps = estimate() if maps_method == "lowres" else _disk_maps(key, kspace, estimate)
        _MAPS_CACHE.put(key, maps)
    return maps


def _disk_maps(key: tuple, kspace: torch.Tensor, estimate: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Coil maps from the cache directory (``maps/``), estimated and written atomically on a miss.

    The entry's key is the k-space's hash, the ACS setting, the method and everything the estimate
    depends on (:func:`mrtl_core.sense.maps_estimator`); an entry whose maps do not have the
    k-space's shape is reported with its path and estimated again.
    """
    from . import cache, sense

    digest, center_fraction, method = key
    config = {"kspace": digest, "center_fraction": center_fraction, "method": method,
              "estimator": sense.maps_estimator()}

    def build(tmp: Path) -> None:
        torch.save(estimate().cpu().contiguous(), tmp / "maps.pt")

    def validate(entry: Path) -> None:
        maps = torch.load(entry / "maps.pt", weights_only=True)
        if tuple(maps.shape) != tuple(kspace.shape) or not maps.is_complex():
            raise ValueError(f"{entry / 'maps.pt'}: maps of shape {tuple(maps.shape)} ({maps.dtype}), "
                             f"expected complex {tuple(kspace.shape)}")

    entry = cache.cached_dir("maps", method, config, build, validate=validate)
    return torch.load(entry / "maps.pt", weights_only=True).to(kspace.device)


def _digest(t: torch.Tensor) -> str:
    """A hash of a tensor's bytes (shape and dtype included): the key of maps estimated from it."""
    import hashlib

    arr = t.detach().cpu().contiguous().numpy()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class _BytesLRU:
    """A least-recently-used store of tensors bounded by their total bytes.

    Map estimation (ESPIRiT: seconds a slice) is repeated for the same measured k-space when a
    chapter scores several networks with a data-consistency step, or CG-SENSE again: estimated maps
    depend only on that k-space, so they are kept, keyed by its hash, up to ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        from collections import OrderedDict

        self.max_bytes, self.items, self.bytes = int(max_bytes), OrderedDict(), 0

    def get(self, key: Any) -> torch.Tensor | None:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: Any, value: torch.Tensor) -> None:
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        self.items[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.element_size() * old.nelement()


_MAPS_CACHE = _BytesLRU(512 * 2**20)


def cg_sense_label(maps_method: str) -> str:
    """The method name of a CG-SENSE result: ``"cg-sense"``, or ``"cg-sense (true maps)"`` for the oracle."""
    return "cg-sense (true maps)" if maps_method == "true" else "cg-sense"


def _cg_sense_image(sample: UnetSample, shape: tuple[int, int], cg_iters: int, center_fraction: float | None,
                    maps_method: str = "scanner") -> torch.Tensor:
    """CG-SENSE magnitude of one sample, cropped like the target: (H, W) float."""
    from . import sense

    mask = torch.as_tensor(sample.mask).bool()
    maps = sample_maps(sample, center_fraction, maps_method)
    image = sense.cg_sense(sample.masked_kspace, maps, mask, max_iter=cg_iters)
    return center_crop(torch.as_tensor(image).abs(), shape).float()


def _num_slices(dataset: Dataset, max_slices: int | None) -> int:
    """How many slices to reconstruct: an empty selection would report a table of NaN."""
    if max_slices is not None and (isinstance(max_slices, bool) or not isinstance(max_slices, int) or max_slices < 1):
        raise ValueError(f"max_slices must be None or an integer >= 1, got {max_slices!r}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to evaluate")
    return len(dataset) if max_slices is None else min(max_slices, len(dataset))


def _named(func: Callable, sample: UnetSample, *args: Any) -> Any:
    """``func(sample, *args)``, with a ValueError prefixed by the sample's file and slice."""
    try:
        return func(sample, *args)
    except ValueError as err:
        raise ValueError(f"{sample.fname} slice {sample.slice_idx}: {err}") from err


def _batch_stats(samples: list[UnetSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(B,)`` instance-normalisation means and stds of a list of samples."""
    return (torch.stack([torch.as_tensor(s.mean) for s in samples]),
            torch.stack([torch.as_tensor(s.std) for s in samples]))


def _reconstruct_batch(reconstruct: Any, samples: list[UnetSample], device: torch.device, cg_iters: int,
                       center_fraction: float | None, maps_method: str) -> torch.Tensor:
    """Physical-unit magnitudes ``(B, H, W)`` of one batch: a model, "zero-filled" or "cg-sense"."""
    mean, std = _batch_stats(samples)
    image = torch.stack([s.image for s in samples])
    shape = tuple(image.shape[-2:])
    if isinstance(reconstruct, str) and reconstruct == "zero-filled":
        return unnormalize(image[:, 0], mean, std)
    if isinstance(reconstruct, str) and reconstruct == "cg-sense":
        return torch.stack([_named(_cg_sense_image, s, shape, cg_iters, center_fraction, maps_method)
                            for s in samples]).double()
    with torch.no_grad():
        out = reconstruct(image.to(device)).float().cpu()
    return unnormalize(out[:, 0], mean, std)


def reconstruct_files(
    reconstruct: nn.Module | str,
    dataset: Dataset,
    out_dir: Path | str,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    cg_iters: int = 30,
    center_fraction: float | None = None,
    maps_method: str = "scanner",
    max_slices: int | None = None,
) -> list[Path]:
    """Reconstruct every slice and write one fastMRI submission file per input file (no target needed).

    Each ``out_dir/<input file name>`` holds ``reconstruction`` float32 ``(S, H, W)`` in physical
    units, the layout fastMRI's leaderboard reads; files are written atomically.
    """
    import h5py

    from .cache import atomic_write

    if isinstance(reconstruct, str) and reconstruct not in ("zero-filled", "cg-sense"):
        raise ValueError(f"reconstruct must be a model, 'zero-filled' or 'cg-sense', got {reconstruct!r}")
    dev = resolve_device(device)
    if isinstance(reconstruct, nn.Module):
        reconstruct = unwrap(reconstruct).to(dev).eval()
    n = _num_slices(dataset, max_slices)
    volumes: dict[str, dict[int, np.ndarray]] = {}
    for start in range(0, n, batch_size):
        stop.check()
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        if reconstruct == "cg-sense" and samples[0].masked_kspace is None:
            raise ValueError("reconstruct_files('cg-sense', ...) needs a dataset built with with_kspace=True")
        pred = _reconstruct_batch(reconstruct, samples, dev, cg_iters, center_fraction, maps_method)
        for s, p in zip(samples, pred):
            volumes.setdefault(str(s.fname), {})[int(s.slice_idx)] = p.numpy().astype(np.float32)
    written = []
    for fname, by_slice in volumes.items():
        stack = np.stack([by_slice[i] for i in sorted(by_slice)])

        def write(tmp: Path, stack: np.ndarray = stack) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("reconstruction", data=stack)

        written.append(atomic_write(Path(out_dir) / fname, write))
    return written


def _slice_metrics(pred: np.ndarray, target: np.ndarray, data_range: float) -> tuple[dict[str, float], dict[str, float]]:
    """The slice's :data:`METRICS`, and the terms its volume's metrics pool (``EvalResult.volume_terms``)."""
    from . import metrics

    out = {
        "ssim": float(metrics.ssim(pred, target, data_range=data_range)),
        "psnr": float(metrics.psnr(pred, target, data_range=data_range)),
        "rmse": float(metrics.rmse(pred, target)),
        "nmse": float(metrics.nmse(pred, target)),
    }
    fg = np.asarray(metrics.foreground_mask(target), dtype=bool)
    out.update({
        "ssim_fg": float(metrics.ssim(pred, target, data_range=data_range, mask=fg)),
        "psnr_fg": float(metrics.psnr(pred, target, data_range=data_range, mask=fg)),
        "rmse_fg": float(metrics.rmse(pred, target, mask=fg)),
        "nmse_fg": float(metrics.nmse(pred, target, mask=fg)),
    })
    err, energy = (pred - target) ** 2, target**2
    terms = {"sse": float(err.sum()), "energy": float(energy.sum()), "pixels": float(target.size),
             "sse_fg": float(err[fg].sum()), "energy_fg": float(energy[fg].sum()), "pixels_fg": float(fg.sum()),
             "data_range": float(data_range)}
    return out, terms


def evaluate(
    reconstruct: nn.Module | str | Callable[[UnetSample], Any],
    dataset: Dataset,
    batch_size: int = 8,
    device: str | torch.device = "auto",
    examples: Sequence[int] = (0,),
    cg_iters: int = 30,
    center_fraction: float | None = None,
    maps_method: str = "scanner",
    max_slices: int | None = None,
    progress: bool = False,
    name: str | None = None,
) -> EvalResult:
    """Reconstruct every slice of ``dataset`` and score it against the target in physical units.

    Args:
        reconstruct: a network (normalised image -> normalised target), ``"zero-filled"``,
            ``"cg-sense"`` (needs a dataset built with ``with_kspace=True``; coil maps by
            ``maps_method``, see :data:`MAPS_METHODS`: by default from the acquired ACS lines as a
            scanner computes them, :func:`mrtl_core.sense.scanner_maps`), or a function of one
            sample returning its physical-unit magnitude ``(H, W)``.
        dataset: :class:`mrtl_core.data.UnetSample` items, as :class:`mrtl_core.data.SliceDataset`
            returns them (any indexable sequence of them).
        examples: dataset indices whose images are kept for figures.
        center_fraction: ACS fraction for map estimation (default: the centred run of sampled
            columns); ``maps_method`` one of :data:`MAPS_METHODS` (``"true"``, the stored maps, is an
            oracle and names the result ``"cg-sense (true maps)"``).

    The target is ``sample.target_raw`` when every sample of a batch has it, else
    ``target * std + mean``; a network output is un-normalised the same way; ``data_range`` is
    ``sample.max_value``. The result scores each slice (:attr:`EvalResult.metrics`) and, grouped by
    file, each volume as fastMRI's ``evaluate.py`` does (:meth:`EvalResult.volume_metrics`).
    """
    started = time.perf_counter()
    if isinstance(reconstruct, str):
        if reconstruct not in ("zero-filled", "cg-sense"):
            raise ValueError(f"reconstruct must be a model, 'zero-filled' or 'cg-sense', got {reconstruct!r}")
        if reconstruct == "cg-sense" and maps_method not in MAPS_METHODS:
            raise ValueError(f"maps_method must be one of {MAPS_METHODS}, got {maps_method!r}")
        method = cg_sense_label(maps_method) if reconstruct == "cg-sense" else reconstruct
    else:
        method = name or type(unwrap(reconstruct)).__name__
    dev = resolve_device(device)
    if isinstance(reconstruct, nn.Module):
        reconstruct = unwrap(reconstruct).to(dev).eval()
    n = _num_slices(dataset, max_slices)
    keep = set(int(i) for i in examples)
    per: dict[str, list[float]] = {k: [] for k in METRICS}
    pooled: dict[str, list[float]] = {}
    slices: list[tuple[str, int]] = []
    kept: dict[int, dict[str, np.ndarray]] = {}
    from .progress import tqdm

    indices = list(range(n))
    bar = tqdm(total=n, disable=not progress, desc=f"evaluate {method}", leave=False)
    for start in range(0, n, batch_size):
        stop.check()
        samples = [dataset[i] for i in indices[start:start + batch_size]]
        if samples[0].target is None:
            raise ValueError(f"{samples[0].fname}: no target (a test/challenge file without "
                             f"reconstruction_rss): nothing to score against; see reconstruct_files")
        if reconstruct == "cg-sense" and samples[0].masked_kspace is None:
            raise ValueError("evaluate('cg-sense', ...) needs a dataset built with with_kspace=True (no masked_kspace)")
        mean, std = _batch_stats(samples)
        image = torch.stack([s.image for s in samples])
        zero_filled = unnormalize(image[:, 0], mean, std)
        if all(s.target_raw is not None for s in samples):
            target = torch.stack([torch.as_tensor(s.target_raw) for s in samples]).double()
        else:
            target = unnormalize(torch.stack([s.target for s in samples])[:, 0], mean, std)
        shape = tuple(target.shape[-2:])
        if isinstance(reconstruct, str) and reconstruct == "zero-filled":
            pred = zero_filled
        elif isinstance(reconstruct, str) and reconstruct == "cg-sense":
            pred = torch.stack([_named(_cg_sense_image, s, shape, cg_iters, center_fraction, maps_method)
                                for s in samples]).double()
        elif isinstance(reconstruct, nn.Module):
            with torch.no_grad():
                out = reconstruct(image.to(dev)).float().cpu()
            pred = unnormalize(out[:, 0], mean, std)
        else:
            pred = torch.stack([torch.as_tensor(reconstruct(s)) for s in samples]).double().reshape(target.shape)
        for j, s in enumerate(samples):
            idx = start + j
            p, t = pred[j].numpy(), target[j].numpy()
            values, terms = _slice_metrics(p, t, float(s.max_value))
            for k, v in values.items():
                per[k].append(v)
            for k, v in terms.items():
                pooled.setdefault(k, []).append(v)
            slices.append((str(s.fname), int(s.slice_idx)))
            if idx in keep:
                from . import metrics

                kept[idx] = {"pred": p.astype(np.float32), "target": t.astype(np.float32),
                             "zero_filled": zero_filled[j].numpy().astype(np.float32),
                             "foreground": np.asarray(metrics.foreground_mask(t), dtype=bool)}
        bar.update(len(samples))
    bar.close()
    return EvalResult(method=method, metrics={k: np.asarray(v, dtype=np.float64) for k, v in per.items()},
                      slices=slices, examples=kept, seconds=time.perf_counter() - started,
                      volume_terms={k: np.asarray(v, dtype=np.float64) for k, v in pooled.items()})
