"""The three run profiles every chapter reads: ``ci`` (tiny), ``standard`` (the book on a CPU
laptop) and ``paper`` (one GPU, paper-scale sizes).

A chapter's ``parameters`` cell sets ``profile = os.environ.get("MRTL_PROFILE", "standard")`` and
calls :func:`get_profile`. Every size the chapters use comes from here, so changing a profile is one
edit, and the cache keys (datasets, pre-trained checkpoints) change with it.

What the training pieces cost (``mrtl_core.experiment``; a U-Net step costs about 67 ms per 128x128
image at ``chans=16`` on 2 CPU cores, batch 8, as a prototype measured it):

``ci`` (64x64, chans 8, 3 levels; measured with 1 thread on a busy 2-core machine)
    pre-training 24 slices x 20 epochs: 6-15 s (source SSIM 0.85 vs 0.63 zero-filled); a fine-tuning
    run (30 steps, N <= 4): 2.5 s; from scratch on the 12 target slices: about 10 s; evaluating
    4 test slices: < 0.5 s (CG-SENSE about 1 s). The ``benchmarks/experiment.py`` grid (2 seeds): ~2 min.
``standard`` (128x128, chans 16, 4 levels; estimated from the step time above)
    pre-training 300 slices x 18 epochs (684 steps of 8): about 6-6.5 min; a fine-tuning run
    (<= 70 steps of min(4, N) images, validation on 20 slices every 10 steps, early stopping):
    <= 22 s (about 5 s at N = 1); from scratch on N slices (<= 100 steps): <= 30 s; from scratch on
    a full target set (120 slices x 15 epochs): about 2 min; evaluating 40 test slices: about 1.5 s
    (CG-SENSE, 30 iterations: a few seconds).
``paper``: for one GPU (bf16 autocast), not budgeted on CPU.

On a machine shared with other jobs, PyTorch's default of one thread per core can be many times
slower than ``torch.set_num_threads(1)`` (threads spin waiting for each other).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "get_profile"]


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
    # small-data training details (mrtl_core.experiment.finetune_config)
    finetune_batch_size: int = 4    # capped at N
    finetune_eval_every: int = 10   # optimiser steps per validation round (early stopping)
    finetune_patience: int = 5      # rounds without validation improvement before stopping
    scratch_steps: int | None = None  # step budget of a from-scratch U-Net on N slices (None: finetune_steps)
    finetune_monitor: str = "ssim_fg"  # early-stopping criterion on the target validation split
    data_seed: int = 0              # the synthetic subjects' seed

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", image_size=64, slices_per_subject=4,
        source_train_subjects=6, val_subjects=2, test_subjects=2, target_train_subjects=5,
        chans=8, num_pool_layers=3,
        pretrain_epochs=20, batch_size=4, lr=3e-3,
        finetune_ns=(1, 4), finetune_steps=80, finetune_lr=5e-4, scratch_epochs=40,
        seeds=(0,), accelerations=(2, 4, 8), cg_iters=10,
        finetune_batch_size=4, finetune_eval_every=10, finetune_patience=4, scratch_steps=30,
    ),
    "standard": Profile(
        name="standard", image_size=128, slices_per_subject=10,
        source_train_subjects=30, val_subjects=2, test_subjects=4, target_train_subjects=12,
        chans=16, num_pool_layers=4,
        pretrain_epochs=18, batch_size=8, lr=1e-3,
        finetune_ns=(1, 5, 20, 50), finetune_steps=70, finetune_lr=2e-4, scratch_epochs=15,
        seeds=(0,), accelerations=(2, 4, 6, 8, 10), cg_iters=30,
        finetune_batch_size=4, finetune_eval_every=10, finetune_patience=3, scratch_steps=100,
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


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` is returned as it is); a clear error names the choices."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
