"""The three run profiles every chapter reads: ``ci`` (tiny), ``standard`` (the book on a CPU
laptop) and ``paper`` (one GPU, paper-scale sizes).

A chapter's ``parameters`` cell sets ``profile = os.environ.get("MRTL_PROFILE", "standard")`` and
calls :func:`get_profile`. Every size the chapters use comes from here, so changing a profile is one
edit, and the cache keys (datasets, pre-trained checkpoints) change with it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

__all__ = ["Profile", "PROFILES", "get_profile", "profile_from_env"]


@dataclass(frozen=True)
class Profile:
    name: str
    # data
    image_size: int                 # reconstructed (cropped) image is image_size x image_size
    slices_per_subject: int
    source_train_subjects: int      # brain-1.5T subjects used for pre-training
    val_subjects: int               # per domain, for early stopping
    test_subjects: int              # per domain, for every reported number
    target_train_subjects: int      # per target domain: the "full target set" for scratch training
    # model
    chans: int
    num_pool_layers: int
    # pre-training
    pretrain_epochs: int
    batch_size: int
    lr: float
    # fine-tuning / small-data experiments
    finetune_ns: tuple[int, ...]    # numbers of target slices N
    finetune_steps: int             # maximum optimiser steps per fine-tuning run
    finetune_lr: float
    scratch_epochs: int             # epochs for the from-scratch model on the full target set
    seeds: tuple[int, ...]          # repeats for confidence intervals
    accelerations: tuple[float, ...]  # the acceleration sweep (shift c)
    # classical baseline
    cg_iters: int
    extra: dict = field(default_factory=dict)
    # small-data training details (mrtl_core.experiment.finetune_config)
    finetune_batch_size: int = 4    # capped at N
    finetune_eval_every: int = 10   # optimiser steps per validation round (early stopping)
    finetune_patience: int = 5      # rounds without validation improvement before stopping
    scratch_steps: int | None = None  # step budget of a from-scratch U-Net on N slices (None: finetune_steps)
    data_seed: int = 0              # the synthetic subjects' seed

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", image_size=64, slices_per_subject=3,
        source_train_subjects=4, val_subjects=1, test_subjects=1, target_train_subjects=3,
        chans=8, num_pool_layers=3,
        pretrain_epochs=3, batch_size=4, lr=1e-3,
        finetune_ns=(1, 4), finetune_steps=10, finetune_lr=2e-4, scratch_epochs=3,
        seeds=(0,), accelerations=(2, 4, 8), cg_iters=10,
    ),
    "standard": Profile(
        name="standard", image_size=128, slices_per_subject=10,
        source_train_subjects=30, val_subjects=2, test_subjects=4, target_train_subjects=20,
        chans=16, num_pool_layers=4,
        pretrain_epochs=12, batch_size=8, lr=1e-3,
        finetune_ns=(1, 5, 20, 50), finetune_steps=150, finetune_lr=2e-4, scratch_epochs=12,
        seeds=(0,), accelerations=(2, 4, 6, 8, 10), cg_iters=30,
    ),
    "paper": Profile(
        name="paper", image_size=256, slices_per_subject=16,
        source_train_subjects=200, val_subjects=10, test_subjects=20, target_train_subjects=100,
        chans=32, num_pool_layers=4,
        pretrain_epochs=30, batch_size=16, lr=1e-3,
        finetune_ns=(1, 5, 10, 20, 50, 100), finetune_steps=600, finetune_lr=2e-4, scratch_epochs=30,
        seeds=(0, 1, 2), accelerations=(2, 4, 6, 8, 10), cg_iters=50,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a clear error names the choices."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None


def profile_from_env(default: str = "standard") -> Profile:
    return get_profile(os.environ.get("MRTL_PROFILE", default))
