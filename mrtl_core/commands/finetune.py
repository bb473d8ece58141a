"""``python -m mrtl_core finetune``: adapt a trained U-Net to target data (few slices or many).

    python -m mrtl_core finetune --init unet.pt --domain knee-1.5T --n-slices 20 --strategy end-to-end \\
        --checkpoint knee.pt --out knee.json

Fine-tunes exactly as the book does (:func:`mrtl_core.experiment.finetune_config` and
:func:`mrtl_core.experiment.select_slices`): ``--n-slices N`` takes N training slices of the target
(the first N of a permutation seeded by ``--seed``; all of them when absent), the target's
validation split drives early stopping on the profile's ``finetune_monitor`` (foreground SSIM),
the starting weights are scored first and kept if no step validates better, and the learning rate
is constant unless ``--lr-step-size`` is given. Options given on the command line replace the
profile's settings. Strategies (``mrtl_core.train.STRATEGIES``): ``end-to-end`` (all layers),
``frozen-encoder`` (encoder and bottleneck frozen), ``last-layers`` (only the final decoder block),
``lp-ft`` (the last block first, then all layers). The recipe options ``--schedule warmup-cosine
--warmup-steps K``, ``--layer-lr-decay D``, ``--l2sp A`` and ``--augment flips`` are off unless given (see
:mod:`mrtl_core.train`). Works under ``torchrun`` like ``train``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..cli import CLIError
from .train import (LibraryChoices, add_data_arguments, amp_setting, add_training_arguments, check_device, check_input_file,
                    check_training_paths, fraction_type, distributed, interrupted, load_splits, make_set, needs_targets,
                    nonnegative_float, nonnegative_int, note_fresh_start, positive_int, split_files, write_out)

if TYPE_CHECKING:  # the modules import torch: only for the annotations
    from ..profiles import Profile
    from ..train import TrainConfig

__all__ = ["add_arguments", "run", "finetune_config"]

#: the training options that replace the profile's settings when given
OVERRIDES = ("epochs", "max_steps", "batch_size", "lr", "lr_step_size", "patience", "schedule", "warmup_steps",
              "layer_lr_decay", "l2sp", "augment")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_training_arguments(parser)
    g = parser.add_argument_group("fine-tuning")
    g.add_argument("--init", type=Path, required=True, help="checkpoint of the model to start from")
    g.add_argument("--strategy", default="end-to-end", choices=LibraryChoices("mrtl_core.train", "STRATEGIES"))
    g.add_argument("--n-slices", type=positive_int, default=None, help="number of target training slices (default: all)")
    g.add_argument("--schedule", default=None, choices=LibraryChoices("mrtl_core.train", "SCHEDULES"),
                   help="learning-rate schedule (default: constant, as the book)")
    g.add_argument("--warmup-steps", type=nonnegative_int, default=None, help="linear warm-up of --schedule warmup-cosine")
    g.add_argument("--layer-lr-decay", type=fraction_type, default=None,
                   help="layer-wise learning rates: lr * D**depth from the output (default 1: one rate)")
    g.add_argument("--l2sp", type=nonnegative_float, default=None, help="L2-SP weight towards the --init weights (default 0)")
    g.add_argument("--augment", default=None, choices=LibraryChoices("mrtl_core.augment", "AUGMENTATIONS"),
                   help="mirror the training pairs (flips: exact for Cartesian data; default none)")


def finetune_config(args: argparse.Namespace, profile: Profile, n_slices: int) -> TrainConfig:
    """The run's configuration: the book's (:func:`mrtl_core.experiment.finetune_config`) for
    ``n_slices`` slices, with the options the command line gives."""
    from ..experiment import finetune_config as book_config

    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    return book_config(profile, n_slices, args.seed, progress=not args.quiet, device=args.device,
                       num_workers=args.num_workers, amp=amp_setting(args.amp), **overrides)


def run(args: argparse.Namespace) -> int:
    from ..profiles import get_profile

    profile = get_profile(args.profile)
    check_input_file(args.init, "--init")
    check_training_paths(args)
    if args.checkpoint is not None and args.checkpoint.resolve() == args.init.resolve():
        raise CLIError(f"--checkpoint {args.checkpoint}: is the --init checkpoint; write the fine-tuned run elsewhere")
    check_device(args.device)
    from ..experiment import select_slices
    from ..train import fine_tune, load_model

    with distributed(args.device) as dist:
        model = load_model(args.init)
        splits = load_splits(args)
        train_set = make_set(args, split_files(args, splits, "train"), train=True)
        needs_targets(train_set, "fine-tuning")
        if args.n_slices is not None:
            if not 1 <= args.n_slices <= len(train_set):
                raise CLIError(f"--n-slices {args.n_slices}: must lie in [1, {len(train_set)}] (the training slices)")
            train_set = select_slices(train_set, args.n_slices, args.seed)
        val_set = make_set(args, splits["val"], train=False) if splits.get("val") else None
        if val_set is not None:
            needs_targets(val_set, "validation")
        n = len(train_set)
        config = finetune_config(args, profile, n)
        note_fresh_start(args, dist.rank)
        try:
            result = fine_tune(model, train_set, val_set, config, strategy=args.strategy,
                               checkpoint_path=args.checkpoint, resume=args.resume)
        except KeyboardInterrupt as err:
            raise interrupted(args, err) from None
        if dist.rank == 0:
            print(f"fine-tuned ({args.strategy}) on {n} slices: {result.steps} steps, {result.seconds:.1f} s, "
                  f"best round {result.best_epoch} (0: the starting weights; val {config.monitor} {result.best_value})")
        write_out(args.out, {"command": "finetune", "init": str(args.init), "strategy": args.strategy,
                             "n_slices": n, "result": result.to_dict(), "config": config.to_dict()}, dist.rank)
    return 0
