"""``python -m mrtl_core train``: train a U-Net from scratch on real fastMRI files or a synthetic domain.

Single process::

    python -m mrtl_core train --domain brain-1.5T --profile standard --epochs 20 --checkpoint unet.pt

Several GPUs (or CPU processes) with DistributedDataParallel, one process per device::

    torchrun --nproc_per_node=4 -m mrtl_core train --data-dir /data/multicoil_train --checkpoint unet.pt

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) the process group is initialised
with NCCL on CUDA and Gloo on CPU; each rank trains on its share of the batches and rank 0 writes
the checkpoint and the ``--out`` JSON. An existing ``--checkpoint`` is resumed unless ``--no-resume``,
and refused (naming the fields) when it was written with other settings. Ctrl-C or SIGTERM ends the
run with one line naming the intact checkpoint and the command that resumes it.

This module also holds the options and helpers that ``finetune`` and ``evaluate`` share.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..cache import blocking_file
from ..cli import CLIError

__all__ = ["add_arguments", "run", "add_data_arguments", "add_training_arguments", "load_splits", "split_files",
           "make_set", "needs_targets", "train_config", "distributed", "write_out", "positive_int", "nonnegative_int",
           "positive_float", "nonnegative_float", "fraction_type", "check_file_target", "check_input_file", "check_device", "check_training_paths",
           "resume_command", "note_fresh_start", "interrupted", "LibraryChoices"]


# --------------------------------------------------------------------------------------------
# argument types: a bad value is an argparse error (one line, exit 2), never a silent default
# --------------------------------------------------------------------------------------------
def _number(cast: Callable[[str], Any], test: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
acceleration_type = _number(float, lambda v: math.isfinite(v) and v >= 1, "a finite acceleration >= 1")
fraction_type = _number(float, lambda v: math.isfinite(v) and 0 < v <= 1, "a fraction in (0, 1]")


class LibraryChoices(Sequence[str]):
    """A library constant (``train.STRATEGIES``, ``masks.MASK_KINDS``) as argparse ``choices``, read
    when argparse first checks or prints them: the modules import torch, and building the parser
    (``python -m mrtl_core --help``) should not."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(self.module), self.name))

    def __getitem__(self, index: Any) -> Any:  # an int or a slice, as Sequence's
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


# --------------------------------------------------------------------------------------------
# paths: checked before any work, so a bad one never costs an epoch
# --------------------------------------------------------------------------------------------
def check_file_target(path: Path | None, option: str) -> None:
    """``path`` can become a file: not a directory, and no ancestor of it is a file."""
    if path is None:
        return
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a directory, expected a file path")
    blocker = blocking_file(path)
    if blocker is not None:
        raise CLIError(f"{option} {path}: {blocker} is a file, not a directory")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise CLIError(f"{option} {path}: directory {parent} is not writable")


def check_device(device: str) -> None:
    """``--device`` names a device this machine has (``auto`` always does)."""
    if device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {device!r}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (dev.index is not None and dev.index >= count):
            raise CLIError(f"--device {device}: this machine has {count} CUDA device(s)"
                           + ("" if torch.cuda.is_available() or torch.version.cuda else " (a CPU-only torch)"))
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CLIError(f"--device {device}: Apple MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise CLIError(f"--device {device}: unsupported device type {dev.type!r}; use auto, cpu, cuda, cuda:N or mps")


def check_input_file(path: Path, option: str) -> None:
    """``path`` is an existing regular file."""
    if not path.exists():
        raise CLIError(f"{option} {path}: no such file")
    if path.is_dir():
        raise CLIError(f"{option} {path}: is a directory, expected a checkpoint file")


# --------------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------------
def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--data-dir", type=Path, help="fastMRI multicoil HDF5 files: a directory with train/ val/ "
                     "test/ sub-directories, or one directory split 80/10/10 by patient")
    src.add_argument("--domain", default=None, help="a synthetic domain (brain-1.5T, brain-3T, knee-1.5T, ...); "
                     "default brain-1.5T when --data-dir is absent")
    g.add_argument("--profile", default=os.environ.get("MRTL_PROFILE", "standard"),
                   help="sizes of the synthetic data and model defaults (ci, standard, paper)")
    g.add_argument("--acceleration", type=acceleration_type, default=4.0)
    g.add_argument("--center-fraction", type=fraction_type, default=None,
                   help="default 0.32 / acceleration (0.08 at 4x)")
    g.add_argument("--mask-kind", default="random", choices=LibraryChoices("mrtl_core.masks", "MASK_KINDS"))
    g.add_argument("--split-seed", type=nonnegative_int, default=0, help="subject split of a single --data-dir")
    g.add_argument("--crop-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                   help="centre crop of every image (default: each file's recon matrix); one size for files of several")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=None, help="default: the profile's")
    g.add_argument("--max-steps", type=positive_int, default=None)
    g.add_argument("--batch-size", type=positive_int, default=None, help="per process; default: the profile's")
    g.add_argument("--lr", type=positive_float, default=None, help="default: the profile's")
    g.add_argument("--lr-step-size", type=positive_int, default=None,
                   help="epochs between 10x decays (default: train 80%% of epochs, or the resumed checkpoint's; "
                        "finetune none)")
    g.add_argument("--patience", type=nonnegative_int, default=None, help="early stopping patience in epochs")
    g.add_argument("--seed", type=nonnegative_int, default=0)
    g.add_argument("--num-workers", type=nonnegative_int, default=0)
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    g.add_argument("--amp", dest="amp", choices=["auto", "bf16", "fp16"], default="auto",
                   help="mixed precision: auto (CUDA bf16, else fp16; CPU float32), bf16 (also on a CPU with "
                        "AMX/AVX512-BF16), fp16 (CUDA); the choice is recorded in the checkpoint")
    g.add_argument("--no-amp", dest="amp", action="store_const", const="off", help="float32 everywhere")
    g.add_argument("--checkpoint", type=Path, default=None, help="written after every epoch (atomically)")
    g.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="continue from an existing --checkpoint (default; refused if its settings differ)")
    g.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start afresh, overwriting an existing --checkpoint after the first epoch")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--out", type=Path, default=None, help="write the run's summary as JSON")


def amp_setting(choice: str) -> bool | str:
    """``TrainConfig.amp`` for the ``--amp``/``--no-amp`` choice: ``auto`` -> the book's request
    (:func:`mrtl_core.precision.requested`: ``MRTL_AMP``, else True), ``off`` -> False."""
    if choice == "auto":
        from ..precision import requested

        return requested()
    return False if choice == "off" else choice


def check_training_paths(args: argparse.Namespace) -> None:
    """Fail on an unusable ``--checkpoint`` or ``--out`` before any data is read."""
    check_file_target(args.checkpoint, "--checkpoint")
    check_file_target(args.out, "--out")
    if args.checkpoint is not None and args.out is not None and args.checkpoint.resolve() == args.out.resolve():
        raise CLIError(f"--out {args.out}: is the --checkpoint too; give the JSON summary another path")


def _fastmri_splits(data_dir: Path, seed: int) -> dict[str, list[Path]]:
    from .. import data

    subdirs = {name: data_dir / name for name in ("train", "val", "test") if (data_dir / name).is_dir()}
    if "train" in subdirs:
        return {name: data.list_files(path) for name, path in subdirs.items()}
    if subdirs:
        raise CLIError(f"--data-dir {data_dir}: has {'/, '.join(subdirs)}/ but no train/ sub-directory")
    try:
        return data.split_by_subject(data_dir, (0.8, 0.1, 0.1), seed=seed)
    except data.DataError as err:
        if str(data_dir) in str(err):
            raise
        raise CLIError(f"--data-dir {data_dir}: {err}; or give it train/ val/ test/ sub-directories") from None


def load_splits(args: argparse.Namespace) -> dict[str, list[Path]]:
    """``{"train", "val", "test": [files]}`` from ``--data-dir`` or the synthetic ``--domain``."""
    if args.data_dir is not None:
        if not args.data_dir.exists():
            raise CLIError(f"--data-dir {args.data_dir}: no such directory")
        if not args.data_dir.is_dir():
            raise CLIError(f"--data-dir {args.data_dir}: is a file, expected a directory of .h5 files")
        return _fastmri_splits(args.data_dir, args.split_seed)
    from .. import experiment

    return experiment.domain_splits(args.profile, args.domain or experiment.SOURCE_DOMAIN, progress=not args.quiet)


def split_files(args: argparse.Namespace, splits: dict[str, list[Path]], name: str) -> list[Path]:
    """One split's files, or a clear error naming the directory that lacks it."""
    if name not in splits:
        where = f"--data-dir {args.data_dir}" if args.data_dir is not None else f"domain {args.domain}"
        raise CLIError(f"{where}: no {name}/ split (found {', '.join(sorted(splits)) or 'none'}); "
                       f"add {name}/ or choose another --split")
    return splits[name]


def make_set(args: argparse.Namespace, files: Sequence[Path], train: bool, with_kspace: bool = False):
    """The slice dataset of ``files`` with the command line's mask and crop settings."""
    from ..data import SliceDataset

    return SliceDataset(files, acceleration=args.acceleration, center_fraction=args.center_fraction,
                        mask_kind=args.mask_kind, seed_masks=not train, with_kspace=with_kspace,
                        crop_size=getattr(args, "crop_size", None))


def needs_targets(dataset: Any, what: str) -> None:
    """Training and validation need ``reconstruction_rss``: test/challenge files have none."""
    missing = [f.path for f in dataset.files if not f.has_target]
    if missing:
        raise CLIError(f"{missing[0]}: no reconstruction_rss (a fastMRI test/challenge file?): cannot be used for "
                       f"{what}" + (f" ({len(missing) - 1} more such files)" if len(missing) > 1 else ""))


def _checkpoint_config(args: argparse.Namespace) -> dict | None:
    """The configuration stored in the ``--checkpoint`` this run would resume, if any."""
    if args.checkpoint is None or not args.resume or not args.checkpoint.is_file():
        return None
    from ..train import load_checkpoint

    return dict(load_checkpoint(args.checkpoint).get("config") or {})


def train_config(args: argparse.Namespace, epochs: int | None, max_steps: int | None, batch_size: int, lr: float):
    """The ``train`` command's configuration: the command line's settings, else the given defaults."""
    from ..experiment import lr_decay_step
    from ..train import TrainConfig

    epochs = args.epochs if args.epochs is not None else epochs
    max_steps = args.max_steps if args.max_steps is not None else max_steps
    if epochs is None and max_steps is None:
        epochs = 10
    step_size = args.lr_step_size
    if step_size is None:
        # derived from --epochs: a resumed run that only extends --epochs keeps its decay schedule
        resumed = _checkpoint_config(args)
        step_size = resumed["lr_step_size"] if resumed and "lr_step_size" in resumed else lr_decay_step(epochs or 10)
    return TrainConfig(epochs=epochs, max_steps=max_steps,
                       batch_size=args.batch_size if args.batch_size is not None else batch_size,
                       lr=args.lr if args.lr is not None else lr, lr_step_size=step_size, patience=args.patience,
                       seed=args.seed, num_workers=args.num_workers, device=args.device, amp=amp_setting(args.amp),
                       progress=not args.quiet)


class distributed:
    """Context manager: initialise ``torch.distributed`` when run under torchrun, tear it down after."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self.active = False
        self.rank = 0

    def __enter__(self) -> "distributed":
        import torch

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if "RANK" in os.environ and world > 1 and not torch.distributed.is_initialized():
            use_cuda = torch.cuda.is_available() and self.device in ("auto", "cuda") or str(self.device).startswith("cuda")
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
            self.active = True
            self.rank = torch.distributed.get_rank()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.active:
            torch.distributed.destroy_process_group()


def write_out(path: Path | None, payload: dict, rank: int = 0) -> None:
    if path is None or rank != 0:
        return
    from ..cache import atomic_write

    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1, default=str)))


# --------------------------------------------------------------------------------------------
# interruption: say what was saved and how to go on
# --------------------------------------------------------------------------------------------
def resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes this run: the same arguments, without ``--no-resume``."""
    argv = [a for a in getattr(args, "argv", []) if a != "--no-resume"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node={world} -m mrtl_core " if world > 1 else "python -m mrtl_core "
    return launcher + shlex.join(argv)


def note_fresh_start(args: argparse.Namespace, rank: int = 0) -> None:
    """Say that ``--no-resume`` will replace an existing checkpoint (stdout: not an error)."""
    if args.checkpoint is not None and not args.resume and args.checkpoint.is_file() and rank == 0 and not args.quiet:
        print(f"--no-resume: starting afresh; {args.checkpoint} is replaced when the first epoch ends")


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> KeyboardInterrupt:
    """Print where the checkpoint is and how to resume (one line); mark ``err`` as reported."""
    ckpt = args.checkpoint
    if ckpt is None:
        msg = "interrupted: no --checkpoint was given, so nothing was saved; add --checkpoint PATH to make a run resumable"
    elif not ckpt.is_file():
        msg = f"interrupted before the first epoch ended: nothing saved to {ckpt}; rerun: {resume_command(args)}"
    else:
        done = ""
        try:
            from ..train import load_checkpoint

            c = load_checkpoint(ckpt)
            done = f" (epoch {c.get('epoch')}, step {c.get('step')})"
        except (OSError, ValueError):
            pass
        msg = f"interrupted: checkpoint {ckpt}{done} is intact; resume with: {resume_command(args)}"
    print(msg, file=sys.stderr)
    err.reported = True
    return err


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_training_arguments(parser)
    g = parser.add_argument_group("model")
    g.add_argument("--chans", type=positive_int, default=None, help="U-Net channels of the first level (default: the profile's)")
    g.add_argument("--num-pool-layers", type=positive_int, default=None)
    g.add_argument("--drop-prob", type=_number(float, lambda v: 0 <= v < 1, "a probability in [0, 1)"), default=0.0)


def run(args: argparse.Namespace) -> int:
    from ..profiles import get_profile

    profile = get_profile(args.profile)
    check_training_paths(args)  # before importing torch: a bad path answers at once

    check_device(args.device)
    import torch

    from ..train import train
    from ..unet import Unet, count_parameters

    with distributed(args.device) as dist:
        splits = load_splits(args)
        train_set = make_set(args, split_files(args, splits, "train"), train=True)
        needs_targets(train_set, "training")
        val_set = make_set(args, splits["val"], train=False) if splits.get("val") else None
        if val_set is not None:
            needs_targets(val_set, "validation")
        torch.manual_seed(args.seed)
        model = Unet(chans=args.chans or profile.chans, num_pool_layers=args.num_pool_layers or profile.num_pool_layers,
                     drop_prob=args.drop_prob)
        config = train_config(args, profile.pretrain_epochs, None, profile.batch_size, profile.lr)
        note_fresh_start(args, dist.rank)
        if dist.rank == 0 and not args.quiet:
            print(f"training a U-Net ({count_parameters(model):,} parameters) on {len(train_set)} slices, "
                  f"validating on {len(val_set) if val_set else 0}")
        try:
            result = train(model, train_set, val_set, config, checkpoint_path=args.checkpoint, resume=args.resume)
        except KeyboardInterrupt as err:
            raise interrupted(args, err) from None
        if dist.rank == 0:
            print(f"done: {result.steps} steps, {result.epochs} epochs, {result.seconds:.1f} s, best epoch "
                  f"{result.best_epoch} (val L1 {result.best_value})")
        write_out(args.out, {"command": "train", "result": result.to_dict(), "config": config.to_dict(),
                             "train_slices": len(train_set)}, dist.rank)
    return 0
