"""``python -m mrtl_core train``: train a U-Net from scratch on real fastMRI files or a synthetic domain.

Single process::

    python -m mrtl_core train --domain brain-1.5T --profile standard --epochs 20 --checkpoint unet.pt

Several GPUs (or CPU processes) with DistributedDataParallel, one process per device::

    torchrun --nproc_per_node=4 -m mrtl_core train --data-dir /data/multicoil_train --checkpoint unet.pt

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) the process group is initialised
with NCCL on CUDA and Gloo on CPU; each rank trains on its share of the batches and rank 0 writes
the checkpoint and the ``--out`` JSON. An existing ``--checkpoint`` is resumed unless ``--no-resume``.

This module also holds the options and helpers that ``finetune`` and ``evaluate`` share.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "add_data_arguments", "add_training_arguments", "load_splits",
           "train_config", "distributed", "write_out"]


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
    g.add_argument("--acceleration", type=float, default=4.0)
    g.add_argument("--center-fraction", type=float, default=None, help="default 0.32 / acceleration (0.08 at 4x)")
    g.add_argument("--mask-kind", default="random", choices=("random", "equispaced"))
    g.add_argument("--split-seed", type=int, default=0, help="subject split of a single --data-dir")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None, help="per process; default: the profile's")
    g.add_argument("--lr", type=float, default=None, help="default: the profile's")
    g.add_argument("--lr-step-size", type=int, default=None, help="epochs between 10x decays (default: 80%% of epochs)")
    g.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num-workers", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    g.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    g.add_argument("--checkpoint", type=Path, default=None, help="written after every epoch (atomically)")
    g.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="continue from an existing --checkpoint (default)")
    g.add_argument("--no-resume", dest="resume", action="store_false", help="overwrite an existing --checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--out", type=Path, default=None, help="write the run's summary as JSON")


def _fastmri_splits(data_dir: Path, seed: int) -> dict[str, list[Path]]:
    from .. import data

    subdirs = {name: data_dir / name for name in ("train", "val", "test") if (data_dir / name).is_dir()}
    if "train" in subdirs:
        return {name: data.list_files(path) for name, path in subdirs.items()}
    return data.split_by_subject(data_dir, (0.8, 0.1, 0.1), seed=seed)


def load_splits(args: argparse.Namespace) -> dict[str, list[Path]]:
    """``{"train", "val", "test": [files]}`` from ``--data-dir`` or the synthetic ``--domain``."""
    if args.data_dir is not None:
        if not args.data_dir.is_dir():
            raise SystemExit(f"--data-dir {str(args.data_dir)!r} is not a directory")
        return _fastmri_splits(args.data_dir, args.split_seed)
    from .. import experiment

    return experiment.domain_splits(args.profile, args.domain or experiment.SOURCE_DOMAIN, progress=not args.quiet)


def make_set(args: argparse.Namespace, files, train: bool, with_kspace: bool = False):
    from ..data import SliceDataset

    return SliceDataset(files, acceleration=args.acceleration, center_fraction=args.center_fraction,
                        mask_kind=args.mask_kind, seed_masks=not train, with_kspace=with_kspace)


def train_config(args: argparse.Namespace, epochs: int | None, max_steps: int | None, batch_size: int, lr: float, **extra: Any):
    from ..train import TrainConfig

    epochs = args.epochs if args.epochs is not None else epochs
    max_steps = args.max_steps if args.max_steps is not None else max_steps
    if epochs is None and max_steps is None:
        epochs = 10
    step_size = args.lr_step_size or max(1, int(round(0.8 * (epochs or 10))))
    fields = dict(epochs=epochs, max_steps=max_steps, batch_size=args.batch_size or batch_size,
                  lr=args.lr or lr, lr_step_size=step_size, patience=args.patience, seed=args.seed,
                  num_workers=args.num_workers, device=args.device, amp=args.amp, progress=not args.quiet)
    fields.update(extra)
    if args.patience is not None:
        fields["patience"] = args.patience
    return TrainConfig(**fields)


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
# train
# --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_training_arguments(parser)
    g = parser.add_argument_group("model")
    g.add_argument("--chans", type=int, default=None, help="U-Net channels of the first level (default: the profile's)")
    g.add_argument("--num-pool-layers", type=int, default=None)
    g.add_argument("--drop-prob", type=float, default=0.0)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..profiles import get_profile
    from ..train import train
    from ..unet import Unet, count_parameters

    profile = get_profile(args.profile)
    with distributed(args.device) as dist:
        splits = load_splits(args)
        train_set = make_set(args, splits["train"], train=True)
        val_set = make_set(args, splits["val"], train=False) if splits.get("val") else None
        torch.manual_seed(args.seed)
        model = Unet(chans=args.chans or profile.chans, num_pool_layers=args.num_pool_layers or profile.num_pool_layers,
                     drop_prob=args.drop_prob)
        config = train_config(args, profile.pretrain_epochs, None, profile.batch_size, profile.lr)
        if dist.rank == 0 and not args.quiet:
            print(f"training a U-Net ({count_parameters(model):,} parameters) on {len(train_set)} slices, "
                  f"validating on {len(val_set) if val_set else 0}")
        result = train(model, train_set, val_set, config, checkpoint_path=args.checkpoint, resume=args.resume)
        if dist.rank == 0:
            print(f"done: {result.steps} steps, {result.epochs} epochs, {result.seconds:.1f} s, best epoch "
                  f"{result.best_epoch} (val L1 {result.best_value})")
        write_out(args.out, {"command": "train", "result": result.to_dict(), "config": config.to_dict(),
                             "train_slices": len(train_set)}, dist.rank)
    return 0
