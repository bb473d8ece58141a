"""``python -m mrtl_core finetune``: adapt a trained U-Net to target data (few slices or many).

    python -m mrtl_core finetune --init unet.pt --domain knee-1.5T --n-slices 20 --strategy end-to-end \\
        --checkpoint knee.pt --out knee.json

``--n-slices N`` takes N training slices of the target (the first N of a permutation seeded by
``--seed``; all of them when absent); the target's validation split drives early stopping.
Strategies: ``end-to-end`` (all layers), ``frozen-encoder`` (encoder and bottleneck frozen),
``last-layers`` (only the final decoder block). Works under ``torchrun`` like ``train``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import CLIError
from .train import (add_data_arguments, add_training_arguments, check_device, check_input_file, check_training_paths,
                    distributed, interrupted, load_splits, make_set, needs_targets, note_fresh_start, positive_int,
                    split_files, train_config, write_out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_training_arguments(parser)
    g = parser.add_argument_group("fine-tuning")
    g.add_argument("--init", type=Path, required=True, help="checkpoint of the model to start from")
    g.add_argument("--strategy", default="end-to-end", choices=("end-to-end", "frozen-encoder", "last-layers"))
    g.add_argument("--n-slices", type=positive_int, default=None, help="number of target training slices (default: all)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..profiles import get_profile

    profile = get_profile(args.profile)
    check_input_file(args.init, "--init")
    check_training_paths(args)
    if args.checkpoint is not None and args.checkpoint.resolve() == args.init.resolve():
        raise CLIError(f"--checkpoint {args.checkpoint}: is the --init checkpoint; write the fine-tuned run elsewhere")
    check_device(args.device)
    from ..train import fine_tune, load_model
    from torch.utils.data import Subset

    with distributed(args.device) as dist:
        model = load_model(args.init)
        splits = load_splits(args)
        train_set = make_set(args, split_files(args, splits, "train"), train=True)
        needs_targets(train_set, "fine-tuning")
        if args.n_slices is not None:
            if not 1 <= args.n_slices <= len(train_set):
                raise CLIError(f"--n-slices {args.n_slices}: must lie in [1, {len(train_set)}] (the training slices)")
            order = np.random.default_rng([args.seed, 20210]).permutation(len(train_set))
            train_set = Subset(train_set, sorted(int(i) for i in order[: args.n_slices]))
        val_set = make_set(args, splits["val"], train=False) if splits.get("val") else None
        if val_set is not None:
            needs_targets(val_set, "validation")
        n = len(train_set)
        config = train_config(args, None, profile.finetune_steps, min(profile.finetune_batch_size, n),
                              profile.finetune_lr, steps_per_epoch=profile.finetune_eval_every,
                              lr_step_size=10**6)
        if args.patience is None:
            config.patience = profile.finetune_patience
        config.validate_start = True   # keep the starting weights if no step validates better
        note_fresh_start(args, dist.rank)
        try:
            result = fine_tune(model, train_set, val_set, config, strategy=args.strategy,
                               checkpoint_path=args.checkpoint, resume=args.resume)
        except KeyboardInterrupt as err:
            raise interrupted(args, err) from None
        if dist.rank == 0:
            print(f"fine-tuned ({args.strategy}) on {n} slices: {result.steps} steps, {result.seconds:.1f} s, "
                  f"best round {result.best_epoch} (0: the starting weights; val L1 {result.best_value})")
        write_out(args.out, {"command": "finetune", "init": str(args.init), "strategy": args.strategy,
                             "n_slices": n, "result": result.to_dict(), "config": config.to_dict()}, dist.rank)
    return 0
