"""Real multi-coil Cartesian k-space through the book's reconstructions: a table at R = 4 (and more).

    python benchmarks/real_data.py --kspace slice.npy                   # (coils, ky, kx), phase encoding = ky
    python benchmarks/real_data.py --kspace slice.npy --pe-axis 2 --crop 180 180 --figure real.png
    python benchmarks/real_data.py --data-dir multicoil_val/ --acceleration 4 8 --out real.json
    python benchmarks/real_data.py --data-dir multicoil_val/ --checkpoint unet.pt --finetune-slices 8

Input, one of:

* ``--data-dir DIR``: fastMRI multi-coil HDF5 files (``kspace`` ``(S, C, Hk, Wk)``, phase encoding
  along the last axis, ``reconstruction_rss``, ``ismrmrd_header``), read with the book's own loader
  (:class:`mrtl_core.data.SliceDataset`) exactly as ``python -m mrtl_core evaluate --data-dir`` reads
  them: the same masks (random Cartesian, centre fraction ``0.32 / R``, one fixed mask per slice,
  per volume for real scanner files), the same reference (the file's ``reconstruction_rss``), each
  file's recon matrix or ``--crop H W`` for all.
* ``--kspace FILE.npy``: one fully sampled slice, complex ``(coils, ky, kx)``; ``--pe-axis`` (1 or 2,
  default 1 = ky) names the array's phase-encode axis. The slice is written into a temporary
  fastMRI-layout file (:func:`mrtl_core.data.write_fastmri_file`) with phase encoding along the last
  axis, as the library's column masks expect (the array is transposed when ``--pe-axis 1``), and a
  recon matrix of ``--crop H W`` or, by default, the largest centred square that fits; the file's
  reference is the RSS of the fully sampled coil images cropped to it (what fastMRI stores). Its mask
  is drawn as for a file named ``kspace.h5``, so it depends on neither the ``.npy``'s name nor its
  orientation: ``--pe-axis 1`` on an array and ``--pe-axis 2`` on its transpose give the same numbers.

Images are ``H x W`` = readout x phase encoding, as the loader shows them. Readout oversampling
(fastMRI stores a 2x readout field of view) needs nothing: the loader centre-crops every image to
the recon matrix, which drops the oversampled field of view; for a ``.npy`` that the scanner already
cropped (no oversampling), the default square crop is the shorter axis, or give ``--crop``.

Rows, all on the same test slices and masks:

* ``zero-filled``: the inverse FFT of the masked k-space, RSS over coils;
* ``CG-SENSE``: :func:`mrtl_core.evaluate.evaluate` with ``"cg-sense"``, the library's default coil
  maps (``maps_method="scanner"``: ESPIRiT on a calibration scan of the central 24 columns,
  :data:`mrtl_core.data.CALIBRATION_COLUMNS`, taken from the fully sampled centre) and the profile's
  CG iterations;
* ``pre-trained <source domain>``: the profile's pre-trained U-Net
  (:func:`mrtl_core.experiment.pretrained_unet`); loaded from the cache, or trained first when it is
  not cached (the ``standard`` profile: about 6-7 min on 2 CPU cores, once; ``--profile ci``: seconds).
  ``--no-pretrained`` skips it;
* ``checkpoint <file name>``: each ``--checkpoint PATH`` (:func:`mrtl_core.train.load_model`);
* with ``--finetune-slices k``: each network fine-tuned end-to-end on k of the data's own slices,
  ``<row> fine-tuned on k slices``, with the book's recipe as ``python -m mrtl_core finetune`` runs it
  (:func:`mrtl_core.commands.finetune.finetune_config`, i.e. :func:`mrtl_core.experiment.finetune_config`;
  :func:`mrtl_core.train.fine_tune`; early stopping on foreground SSIM of the validation slices,
  the starting weights kept when no step validates better); ``--finetune-max-steps`` caps the steps.
  One run per acceleration, on masks of that acceleration.

The split with ``--finetune-slices k`` (recorded under ``"split"`` in the ``--out`` JSON): with files
of several subjects (``patient_id``), whole subjects in file-name order: the first subjects until
they hold k slices are for training (k slices drawn as the CLI draws them,
:func:`mrtl_core.experiment.select_slices` with ``--seed``), the next subject validates, the rest are
tested. With one subject (a single volume), its slices in order: the first k train, the next
``--val-slices`` validate, the rest are tested (neighbouring slices resemble each other, so this
split flatters fine-tuning a little). No row is ever scored on a slice used for training or
validation, and without fine-tuning every slice is a test slice.

On a CPU, ESPIRiT's map estimation for CG-SENSE dominates the run at large matrices and many coils
(``--device`` moves the networks, not ESPIRiT).

Metrics (:func:`mrtl_core.evaluate.evaluate`): SSIM, PSNR and NMSE over the whole image and over the
reference's foreground (``*_fg``), mean over the test slices; and the paired difference in
foreground SSIM against zero-filled with its 95 % interval (:func:`mrtl_core.stats.paired_difference`:
over subjects when there are enough of them, else over slices; none for a single slice).
``--figure PATH.png`` shows the reference and every row's reconstruction of the central test slice;
``--out PATH.json`` writes the table (written atomically). A bad input ends with one line naming the
file and the shape or key at fault, exit status 2.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import data  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.cli import CLIError  # noqa: E402

#: name of the temporary fastMRI file a ``.npy`` slice is written to (it seeds the slice's mask)
NPY_FILE_NAME = "kspace.h5"
#: the rows' names for the classical methods, by the name :func:`mrtl_core.evaluate.evaluate` takes
CLASSICAL = {"zero-filled": "zero-filled", "cg-sense": "CG-SENSE"}
#: the metrics of the table: (key, header, format)
COLUMNS = (("ssim", "SSIM", "{:.4f}"), ("psnr", "PSNR dB", "{:.2f}"), ("nmse", "NMSE", "{:.4f}"),
           ("ssim_fg", "SSIM fg", "{:.4f}"), ("psnr_fg", "PSNR fg", "{:.2f}"), ("nmse_fg", "NMSE fg", "{:.4f}"))


class InputError(Exception):
    """A bad input: the message (one line) names the file and the shape or key at fault."""


# --------------------------------------------------------------------------------------------
# input: a .npy slice into a fastMRI-layout file
# --------------------------------------------------------------------------------------------
def load_npy_kspace(path: Path) -> np.ndarray:
    """Read a ``.npy`` slice and check it: complex ``(coils, ky, kx)``, finite.

    Returns the array as stored (any complex dtype), shape ``(C, N1, N2)``.
    """
    if not path.is_file():
        raise InputError(f"--kspace {path}: no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"--kspace {path}: not a readable .npy array ({' '.join(str(err).split())})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"--kspace {path}: holds several arrays (an .npz?), expected one (coils, ky, kx) array")
    if not np.iscomplexobj(arr) or arr.ndim != 3:
        raise InputError(f"--kspace {path}: expected complex k-space of shape (coils, ky, kx), "
                         f"got dtype {arr.dtype} shape {arr.shape}")
    if min(arr.shape) < 1 or min(arr.shape[1:]) < 2:
        raise InputError(f"--kspace {path}: shape {arr.shape} is empty or too small for an image")
    if not np.isfinite(arr).all():
        bad = tuple(int(v) for v in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(f"--kspace {path}: shape {arr.shape} holds NaN or Inf (first at (coil, ky, kx) {bad})")
    return arr


def to_library_layout(kspace: np.ndarray, pe_axis: int, where: Path) -> np.ndarray:
    """``(C, N1, N2)`` with phase encoding on axis ``pe_axis`` -> complex64 ``(1, C, readout, PE)``."""
    if pe_axis not in (1, 2):
        raise InputError(f"--pe-axis {pe_axis}: out of range for {where} of shape {kspace.shape} "
                         f"(axes: 0 coils, 1 ky, 2 kx); the phase-encode axis is 1 or 2")
    k = kspace.transpose(0, 2, 1) if pe_axis == 1 else kspace
    return np.ascontiguousarray(k, dtype=np.complex64)[None]


def recon_size(image_shape: Sequence[int], crop: Sequence[int] | None, where: Path) -> tuple[int, int]:
    """The recon matrix ``(H, W)`` for an image ``(readout, PE)``: ``crop``, or the largest centred square."""
    rows, cols = int(image_shape[0]), int(image_shape[1])
    if crop is None:
        side = min(rows, cols)
        return side, side
    h, w = int(crop[0]), int(crop[1])
    if h > rows or w > cols:
        raise InputError(f"--crop {h} {w}: larger than the image of {where}, {rows} x {cols} "
                         f"(readout x phase encoding)")
    return h, w


def npy_to_fastmri(path: Path, pe_axis: int, crop: Sequence[int] | None, out_dir: Path) -> Path:
    """Write the ``.npy`` slice ``path`` as the fastMRI-layout file ``out_dir/kspace.h5``; its path.

    ``kspace`` ``(1, C, readout, PE)``, ``reconstruction_rss`` the RSS of the fully sampled coil
    images cropped to :func:`recon_size`; the header's FOV is nominal (1 mm pixels), as a ``.npy``
    carries none, and nothing here depends on it.
    """
    kspace = to_library_layout(load_npy_kspace(path), pe_axis, path)
    size = recon_size(kspace.shape[-2:], crop, path)
    return data.write_fastmri_file(out_dir / NPY_FILE_NAME, kspace, field_strength_T=0.0,
                                   fov_mm=(float(size[0]), float(size[1]), 1.0), recon_size=size,
                                   patient_id=path.stem, acquisition="npy", extra_attrs={"source": str(path)})


def data_files(data_dir: Path) -> list[data.FastMRIFile]:
    """The checked fastMRI files of ``data_dir`` (sorted by name); :class:`InputError` naming the fault."""
    if not data_dir.is_dir():
        raise InputError(f"--data-dir {data_dir}: " + ("is a file, expected a directory of .h5 files"
                                                        if data_dir.exists() else "no such directory"))
    infos = [data.inspect_file(p) for p in data.list_files(data_dir)]
    untargeted = [f.path for f in infos if not f.has_target]
    if untargeted:
        raise InputError(f"{untargeted[0]}: no reconstruction_rss (a fastMRI test/challenge file?): "
                         f"nothing to score against")
    return infos


# --------------------------------------------------------------------------------------------
# split
# --------------------------------------------------------------------------------------------
Slice = tuple[str, int]  # (file name, slice index)


@dataclass
class Split:
    """Which slices train, validate and test (``(file name, slice)`` each), and how they were chosen.

    ``train`` lists the slices fine-tuning may draw from (``--finetune-slices`` of them are drawn),
    ``val`` the early-stopping slices, ``test`` the scored ones; the three never share a slice.
    """

    train: list[Slice] = field(default_factory=list)
    val: list[Slice] = field(default_factory=list)
    test: list[Slice] = field(default_factory=list)
    rule: str = "all slices are test slices (no fine-tuning)"


def plan_split(files: Sequence[data.FastMRIFile], k: int, val_slices: int, where: str) -> Split:
    """The split of ``files`` (``FastMRIFile`` records) for fine-tuning on ``k`` slices (0: none).

    Several subjects: whole subjects in file-name order (train until ``k`` slices, one validation
    subject, the rest tested). One subject: its slices in order (``k`` train, ``val_slices``
    validate, the rest test). :class:`InputError` naming ``where`` when the data are too few.
    """
    slices = [(f.path.name, s) for f in files for s in range(f.num_slices)]
    if k == 0:
        return Split(test=slices)
    subjects: dict[str, list[Slice]] = {}
    for f in files:
        subjects.setdefault(f.patient_id, []).extend((f.path.name, s) for s in range(f.num_slices))
    if len(subjects) == 1:
        need = k + val_slices + 1
        if len(slices) < need:
            raise InputError(f"--finetune-slices {k}: {where} holds {len(slices)} slice(s) of one subject; "
                             f"fine-tuning needs k + --val-slices {val_slices} + at least 1 test slice = {need}")
        return Split(train=slices[:k], val=slices[k:k + val_slices], test=slices[k + val_slices:],
                     rule=f"one subject: slices in order, the first {k} train, the next {val_slices} validate, "
                          f"the rest test")
    groups = list(subjects.values())
    n_train = next((i + 1 for i in range(len(groups)) if sum(map(len, groups[:i + 1])) >= k), None)
    if n_train is None or n_train + 2 > len(groups):
        raise InputError(f"--finetune-slices {k}: {where} holds {len(slices)} slices of {len(groups)} subjects; "
                         f"fine-tuning needs subjects holding {k} training slices, then one validation and "
                         f"at least one test subject")
    return Split(train=[s for g in groups[:n_train] for s in g], val=list(groups[n_train]),
                 test=[s for g in groups[n_train + 1:] for s in g],
                 rule=f"whole subjects in file-name order: {n_train} train ({k} slices drawn), 1 validates, "
                      f"{len(groups) - n_train - 1} test")


def subset(files: Sequence[data.FastMRIFile], chosen: Sequence[Slice], acceleration: float,
           args: argparse.Namespace, train: bool, with_kspace: bool = False):
    """The dataset of the ``chosen`` slices: a ``Subset`` of a :class:`~mrtl_core.data.SliceDataset`.

    Masks as the CLI draws them (``commands.train.make_set``): fresh per access for training, fixed
    per slice otherwise; items are :class:`~mrtl_core.data.UnetSample` in ``chosen``'s file order.
    """
    from torch.utils.data import Subset

    names = {name for name, _ in chosen}
    dataset = data.SliceDataset([f.path for f in files if f.path.name in names], acceleration=acceleration,
                                center_fraction=args.center_fraction, mask_kind="random",
                                crop_size=args.crop if args.data_dir is not None else None,
                                seed_masks=not train, with_kspace=with_kspace)
    wanted = set(chosen)
    return Subset(dataset, [i for i, key in enumerate(slice_keys(dataset)) if key in wanted])


# --------------------------------------------------------------------------------------------
# networks, fine-tuning, evaluation
# --------------------------------------------------------------------------------------------
def networks(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """``[(row name, U-Net)]``: the profile's pre-trained network (unless ``--no-pretrained``), then
    each ``--checkpoint``."""
    from mrtl_core import experiment
    from mrtl_core.train import load_model

    out = []
    if not args.no_pretrained:
        if not args.quiet:
            print(f"pre-trained U-Net of profile {args.profile}: loading it, or training it when not cached", flush=True)
        model, info = experiment.pretrained_unet(args.profile, progress=not args.quiet, device=args.device)
        out.append((f"pre-trained {info.get('domain', experiment.SOURCE_DOMAIN)}", model))
    for path in args.checkpoint:
        try:
            out.append((f"checkpoint {path.name}", load_model(path)))
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise InputError(f"--checkpoint {path}: {' '.join(str(err).split())}") from None
    return out


def slice_keys(dataset: Any) -> list[Slice]:
    """The ``(file name, slice)`` of every item of a :func:`subset` (or a ``Subset`` of one), in order."""
    from torch.utils.data import Subset

    positions = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        positions = [dataset.indices[i] for i in positions]
        dataset = dataset.dataset
    return [(dataset.files[fi].path.name, s) for fi, s in (dataset.index[i] for i in positions)]


def finetuned(model: Any, train_set: Any, val_set: Any, k: int, args: argparse.Namespace) -> tuple[Any, dict]:
    """A copy of ``model`` fine-tuned end-to-end on ``k`` slices of ``train_set`` as ``python -m mrtl_core
    finetune`` does it (its configuration and :func:`mrtl_core.experiment.select_slices`), and what the
    run did: ``{"slices": [(file, slice)] trained on, "steps", "best_round" (0: the start kept), ...}``."""
    from mrtl_core.commands import finetune as finetune_command
    from mrtl_core.experiment import select_slices
    from mrtl_core.profiles import get_profile
    from mrtl_core.train import fine_tune

    # the finetune command's options at their defaults (read from its parser, so an option it gains is
    # never missing here), but for the step cap
    parser = argparse.ArgumentParser()
    finetune_command.add_arguments(parser)
    defaults = {name: parser.get_default(name) for name in finetune_command.OVERRIDES}
    cli = argparse.Namespace(**{**defaults, "max_steps": args.finetune_max_steps}, seed=args.seed, quiet=args.quiet,
                             device=args.device, num_workers=0, amp="auto")
    config = finetune_command.finetune_config(cli, get_profile(args.profile), k)
    chosen = select_slices(train_set, k, args.seed)
    tuned = copy.deepcopy(model)
    result = fine_tune(tuned, chosen, val_set, config, strategy="end-to-end")
    info = {"strategy": "end-to-end", "slices": [list(s) for s in slice_keys(chosen)],
            "val_slices": len(val_set), "steps": result.steps, "best_round": result.best_epoch,
            "monitor": config.monitor, "best_value": result.best_value, "seconds": result.seconds,
            "config": config.to_dict()}
    if not args.quiet:
        print(f"  {result.steps} steps, {result.seconds:.1f} s; best round {result.best_epoch} "
              f"(0: the starting weights), val {config.monitor} {result.best_value}", flush=True)
    return tuned.eval(), info


@dataclass
class Row:
    """One table row: the method's name and its :class:`~mrtl_core.evaluate.EvalResult`."""

    name: str
    result: Any
    finetune: dict | None = None


def score(method: Any, name: str, test_set: Any, example: int, args: argparse.Namespace) -> Row:
    """Evaluate ``method`` (a U-Net, ``"zero-filled"`` or ``"cg-sense"``) on ``test_set``, keeping slice ``example``."""
    from mrtl_core.evaluate import evaluate
    from mrtl_core.profiles import get_profile

    result = evaluate(method, test_set, device=args.device, examples=(example,),
                      cg_iters=get_profile(args.profile).cg_iters, center_fraction=args.center_fraction,
                      progress=not args.quiet, name=name)
    return Row(name, result)


def run_acceleration(acceleration: float, files: Sequence[data.FastMRIFile], split: Split,
                     nets: Sequence[tuple[str, Any]], args: argparse.Namespace) -> dict:
    """Every row at one acceleration: ``{"acceleration", "effective_acceleration", "rows": [Row], "example"}``."""
    from mrtl_core.masks import effective_acceleration

    test_set = subset(files, split.test, acceleration, args, train=False, with_kspace=True)
    example = len(test_set) // 2
    rows = [score(method, label, test_set, example, args) for method, label in CLASSICAL.items()]
    rows += [score(model, name, test_set, example, args) for name, model in nets]
    if args.finetune_slices:
        train_set = subset(files, split.train, acceleration, args, train=True)
        val_set = subset(files, split.val, acceleration, args, train=False)
        for name, model in nets:
            if not args.quiet:
                print(f"R = {acceleration:g}: fine-tuning {name} on {args.finetune_slices} slices", flush=True)
            tuned, info = finetuned(model, train_set, val_set, args.finetune_slices, args)
            row = score(tuned, f"{name} fine-tuned on {args.finetune_slices} slices", test_set, example, args)
            row.finetune = info
            rows.append(row)
    dataset = test_set.dataset
    shapes = {f.path.name: f.kspace_shape for f in dataset.files}
    r_eff = float(np.mean([effective_acceleration(dataset.mask_for(name, s, shapes[name][-1], shapes[name][-2]))
                           for name, s in slice_keys(test_set)]))
    return {"acceleration": acceleration, "effective_acceleration": r_eff, "rows": rows, "example": example}


def versus_zero_filled(row: Row, base: Row) -> dict | None:
    """Paired difference in foreground SSIM of ``row`` minus ``base`` (zero-filled): mean and 95 % interval."""
    from mrtl_core.stats import interval_over, paired_difference

    if row is base:
        return None
    d, lo, hi = paired_difference(row.result, base.result, "ssim_fg")
    return {"mean": d, "ci_low": lo, "ci_high": hi, "over": interval_over([s[0] for s in row.result.slices])}


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def table(block: dict) -> str:
    """The printed table of one acceleration: a row per method, mean over the test slices."""
    from mrtl_core.stats import interval_basis

    rows: list[Row] = block["rows"]
    base = rows[0]
    header = ["method", "slices"] + [h for _, h, _ in COLUMNS] + ["dSSIM fg vs zero-filled [95% CI]"]
    lines = []
    for row in rows:
        cells = [row.name, str(len(row.result.slices))]
        cells += [fmt.format(row.result.mean(key)) for key, _, fmt in COLUMNS]
        diff = versus_zero_filled(row, base)
        if diff is None:
            cells.append("-")
        elif math.isfinite(diff["ci_low"]):
            cells.append(f"{diff['mean']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]")
        else:
            cells.append(f"{diff['mean']:+.4f} (one slice: no interval)" if len(row.result.slices) == 1
                         else f"{diff['mean']:+.4f} [n/a]")
        lines.append(cells)
    widths = [max(len(c[i]) for c in [header] + lines) for i in range(len(header))]
    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    title = f"R = {block['acceleration']:g} (effective {block['effective_acceleration']:.3g})"
    note = f"intervals: 95 %, paired, over {interval_basis([s[0] for s in base.result.slices])}"
    return "\n".join([title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines] + [note])


def to_json(blocks: Sequence[dict], split: Split, args: argparse.Namespace, source: str) -> dict:
    """The ``--out`` payload: settings, the split, and per acceleration every row's means and per-slice values."""
    out_blocks = []
    for block in blocks:
        rows = []
        for row in block["rows"]:
            r = row.result
            diff = versus_zero_filled(row, block["rows"][0])
            rows.append({"method": row.name, "n_slices": len(r.slices),
                         "mean": {k: _finite(r.mean(k)) for k in r.metrics},
                         "ssim_fg_minus_zero_filled": None if diff is None else
                         {k: (_finite(v) if isinstance(v, float) else v) for k, v in diff.items()},
                         "per_slice": {k: [_finite(x) for x in v] for k, v in r.metrics.items()},
                         "slices": [list(s) for s in r.slices], "seconds": r.seconds,
                         "finetune": row.finetune})
        out_blocks.append({"acceleration": block["acceleration"],
                           "effective_acceleration": block["effective_acceleration"], "rows": rows})
    return {"command": "benchmarks/real_data.py", "input": source,
            "pe_axis": args.pe_axis if args.kspace is not None else None, "crop": args.crop,
            "profile": args.profile, "finetune_slices": args.finetune_slices, "seed": args.seed,
            "split": {"rule": split.rule, "train": [list(s) for s in split.train],
                      "val": [list(s) for s in split.val], "test": [list(s) for s in split.test]},
            "results": out_blocks}


def figure(blocks: Sequence[dict], path: Path, label: str | None = None) -> Path:
    """Save the reference and each row's reconstruction of the central test slice, one line per acceleration.

    ``label`` names the slice's file in the reference's title (default: the loader's file name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 1 + len(blocks[0]["rows"])
    fig, axes = plt.subplots(len(blocks), ncols, figsize=(2.6 * ncols, 2.9 * len(blocks)), squeeze=False)
    for line, block in zip(axes, blocks):
        i = block["example"]
        first = block["rows"][0].result
        target = first.examples[i]["target"]
        vmax = float(np.percentile(target, 99.5)) or 1.0
        name, s = first.slices[i]
        panels = [("reference (fully sampled RSS)", target, None)]
        panels += [(row.name, row.result.examples[i]["pred"], row.result) for row in block["rows"]]
        for ax, (title, image, result) in zip(line, panels):
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=vmax)
            if result is not None:
                m = {k: result.metrics[k][i] for k in ("ssim", "psnr", "ssim_fg")}
                title = f"{title}\nSSIM {m['ssim']:.3f}, {m['psnr']:.1f} dB, fg {m['ssim_fg']:.3f}"
            else:
                title = f"{title}\nR = {block['acceleration']:g}: {label or name} slice {s}"
            ax.set_title(title, fontsize=7)
            ax.set_xlabel("phase encoding (px)", fontsize=7)
            ax.set_ylabel("readout (px)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, dpi=120, format="png")

    atomic_write(path, write)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 1, got {text!r}") from None
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"must be a number >= 1, got {text!r}")
    return value


def _count(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="real_data.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", type=Path, help="a directory of fastMRI multi-coil HDF5 files")
    src.add_argument("--kspace", type=Path, help="one fully sampled slice: complex .npy of shape (coils, ky, kx)")
    p.add_argument("--pe-axis", type=int, default=None, help="the .npy's phase-encode axis: 1 (ky, default) or 2 (kx)")
    p.add_argument("--crop", type=_count(1), nargs=2, metavar=("H", "W"), default=None,
                   help="recon matrix, readout x phase encoding (default: a .npy's largest centred square, "
                        "a file's own recon matrix)")
    p.add_argument("--acceleration", type=_positive_float, nargs="+", default=[4.0])
    p.add_argument("--center-fraction", type=float, default=None, help="default 0.32 / acceleration")
    p.add_argument("--profile", default=os.environ.get("MRTL_PROFILE", "standard"),
                   help="whose pre-trained U-Net, CG iterations and fine-tuning recipe (ci, standard, paper)")
    p.add_argument("--checkpoint", type=Path, nargs="+", default=[], help="U-Net checkpoints to score too")
    p.add_argument("--no-pretrained", action="store_true", help="skip the profile's pre-trained U-Net")
    p.add_argument("--finetune-slices", type=_count(0), default=0,
                   help="fine-tune every network on k of the data's own slices (default 0: off)")
    p.add_argument("--val-slices", type=_count(1), default=2, help="validation slices of a single volume (default 2)")
    p.add_argument("--finetune-max-steps", type=_count(1), default=None,
                   help="cap on fine-tuning steps (default: the profile's)")
    p.add_argument("--seed", type=_count(0), default=0, help="which training slices fine-tuning draws")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--figure", type=Path, default=None, help="PNG of the central test slice")
    p.add_argument("--out", type=Path, default=None, help="the table as JSON")
    p.add_argument("--quiet", action="store_true")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse at once what would fail later: option clashes, paths, device, profile."""
    from mrtl_core.commands.train import check_device, check_file_target, check_input_file
    from mrtl_core.masks import check_mask_settings, default_center_fraction
    from mrtl_core.profiles import get_profile

    if args.pe_axis is not None and args.kspace is None:
        raise InputError("--pe-axis applies to --kspace FILE.npy only (fastMRI files encode along their last axis)")
    args.pe_axis = 1 if args.pe_axis is None else args.pe_axis
    for r in args.acceleration:
        cf = default_center_fraction(r) if args.center_fraction is None else args.center_fraction
        try:
            check_mask_settings(r, cf)
        except ValueError as err:
            raise InputError(f"--acceleration {r:g} --center-fraction {cf:g}: {err}") from None
    if args.no_pretrained and not args.checkpoint and args.finetune_slices:
        raise InputError(f"--finetune-slices {args.finetune_slices}: no network to fine-tune "
                         f"(--no-pretrained and no --checkpoint)")
    for path in args.checkpoint:
        check_input_file(path, "--checkpoint")
    check_file_target(args.out, "--out")
    check_file_target(args.figure, "--figure")
    check_device(args.device)
    try:
        get_profile(args.profile)
    except ValueError as err:
        raise InputError(f"--profile: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="real-data-") as tmp:
        try:
            check_args(args)
            if args.kspace is not None:
                files = [data.inspect_file(npy_to_fastmri(args.kspace, args.pe_axis, args.crop, Path(tmp)))]
                source, where = str(args.kspace), str(args.kspace)
            else:
                files = data_files(args.data_dir)
                source, where = str(args.data_dir), f"--data-dir {args.data_dir}"
            split = plan_split(files, args.finetune_slices, args.val_slices, where)
            nets = networks(args)
            blocks = [run_acceleration(r, files, split, nets, args) for r in args.acceleration]
        except (InputError, CLIError, data.DataError) as err:
            message = str(err).replace("--crop-size H W", "--crop H W")  # this script's name of the option
            if args.kspace is not None:  # the temporary file stands for the .npy
                message = message.replace(str(Path(tmp) / NPY_FILE_NAME), f"--kspace {args.kspace}")
            print(f"real_data.py: error: {message}", file=sys.stderr)
            return 2
    print(f"{source}: {len(split.test)} test slice(s); {split.rule}; means over the test slices")
    for block in blocks:
        print()
        print(table(block))
    if args.figure is not None:
        print(f"\nfigure: {figure(blocks, args.figure, args.kspace.name if args.kspace else None)}")
    if args.out is not None:
        payload = to_json(blocks, split, args, source)
        atomic_write(args.out, lambda p: Path(p).write_text(json.dumps(payload, indent=1)))
        print(f"table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
