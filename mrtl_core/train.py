"""Training and fine-tuning of image-domain reconstruction networks: the loop, checkpoints, strategies.

The loop is fastMRI's U-Net recipe: L1 loss between the network output and the target, both the
instance-normalised RSS images of the data pipeline (``sample.image`` -> ``sample.target`` of a
:class:`mrtl_core.data.UnetSample`; one step's forward pass is :func:`forward_batch`), Adam, and a
step decay of the learning rate (``StepLR``). Around it:

* **early stopping** on a validation set (L1 in normalised units, or SSIM in physical units),
  restoring the best weights at the end;
* **seeds** for torch, numpy, Python and the ``DataLoader`` (generator and ``worker_init_fn``).
  Every epoch re-seeds all of them from ``(seed, epoch)``, so a run resumed from an epoch-boundary
  checkpoint is bit-identical on CPU to an uninterrupted one;
* **checkpoints** written atomically (temporary file + ``os.replace``) after every epoch, holding
  the full state: model, best model, optimiser, scheduler, grad scaler, epoch, step, early-stopping
  state, history, RNG states, the configuration and the architecture. A resume refuses a checkpoint
  whose configuration, fine-tuning strategy or starting weights differ from the run's (naming
  them), so a record never claims settings the weights were not trained with;
* **devices**: ``"auto"`` picks CUDA, then MPS, then CPU; mixed precision (``amp``) is chosen per
  device by :func:`mrtl_core.precision.choose` (CUDA: bf16 where supported, else fp16 with a
  ``GradScaler``; CPU: float32 unless bf16 is asked for and the CPU has it) and recorded as
  ``TrainResult.precision`` and in the checkpoint;
* **distributed**: if ``torch.distributed`` is initialised (``torchrun``), the model is wrapped in
  ``DistributedDataParallel``, training batches come from a ``DistributedSampler``, every rank
  validates on the full (small) validation set -- the same numbers on every rank, so early
  stopping agrees without communication -- and rank 0 alone writes checkpoints.

``torch.compile`` and ``channels_last`` are off by default: on a 2-core CPU they gave at best
1.0-1.3x after a 35-55 s compile, and ``channels_last`` was slower.

Fine-tuning strategies (:func:`fine_tune`, :func:`apply_strategy`), for the fastMRI U-Net:

* ``"end-to-end"``     every parameter trains (the paper's method);
* ``"frozen-encoder"`` the encoder (``down_sample_layers``) and the bottleneck (``conv``) are
  frozen; the decoder (``up_transpose_conv``, ``up_conv``) trains;
* ``"last-layers"``    only the final decoder block ``up_conv[-1]`` trains: its two 3x3
  convolutions and the 1x1 output convolution (the U-Net's last full-resolution stage);
* ``"lp-ft"``          linear probe, then fine-tune (Kumar et al. 2022): ``"last-layers"`` for the
  first :data:`PROBE_FRACTION` of the budget, then every layer for the rest, starting from (and
  scoring) the probe's best weights, so the new head does not distort the features it sits on.

Fine-tuning recipes beside the strategy, all in :class:`TrainConfig` and all off by default (the
book's recorded runs are the defaults):

* ``schedule="warmup-cosine"`` with ``warmup_steps``: the learning rate rises linearly over the first
  steps, then follows a cosine to zero at the end of the budget (stepped every optimiser step), instead
  of fastMRI's ``StepLR``;
* ``layer_lr_decay`` < 1: layer-wise learning rates (:func:`layer_groups`), ``lr * decay**depth``
  with ``depth`` the U-Net level's distance from the output, so the deep encoder moves least;
* ``l2sp`` > 0: the L2-SP penalty ``l2sp / 2 * ||w - w0||^2`` towards the weights ``w0`` the run
  started from (Li, Grandvalet & Davoine 2018), instead of decay towards zero.

Evaluation is :mod:`mrtl_core.evaluate`; statistics are :mod:`mrtl_core.stats`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import stop
from .augment import AUGMENTATIONS, random_flips
from .data import collate, unnormalize
from .precision import AMP_CHOICES
from .precision import choose as choose_precision

__all__ = [
    "TrainConfig",
    "TrainResult",
    "STRATEGIES",
    "FROZEN_SETS",
    "PROBE_FRACTION",
    "SCHEDULES",
    "LATER_DEFAULTS",
    "layer_groups",
    "resolve_device",
    "unwrap",
    "seed_everything",
    "architecture",
    "apply_strategy",
    "forward_batch",
    "validate",
    "train",
    "fine_tune",
    "probe_then_tune",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "weights_fingerprint",
    "RESUMABLE_CHANGES",
]

STRATEGIES = ("end-to-end", "frozen-encoder", "last-layers", "lp-ft")
#: the strategies that are one set of trainable layers (``"lp-ft"`` is two phases of them)
FROZEN_SETS = ("end-to-end", "frozen-encoder", "last-layers")
#: the share of an ``"lp-ft"`` budget spent on the probe (the last block alone)
PROBE_FRACTION = 0.25
SCHEDULES = ("step", "warmup-cosine")
#: fields added after models were cached: at these values a cache key leaves them out
LATER_DEFAULTS = {"validate_start": False, "schedule": "step", "warmup_steps": 0, "layer_lr_decay": 1.0,
                  "l2sp": 0.0, "augment": "none"}


# --------------------------------------------------------------------------------------------
# configuration and results
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that shapes a training run (stored in every checkpoint).

    ``epochs`` and/or ``max_steps`` bound the run (whichever comes first). An "epoch" is one pass
    over the training set, or ``steps_per_epoch`` optimiser steps if set: small fine-tuning sets
    (N = 1 slice) then still get a validation round, a checkpoint and a scheduler step every
    ``steps_per_epoch`` steps.
    """

    epochs: int | None = 10
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    lr_step_size: int = 40           # epochs between learning-rate decays (fastMRI: 40)
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    patience: int | None = None      # epochs without validation improvement before stopping
    monitor: str = "l1"              # "l1" (lower is better), "ssim" or "ssim_fg" (foreground SSIM; higher is better)
    min_delta: float = 0.0
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"             # "auto" (cuda > mps > cpu), or any torch device string
    amp: bool | str = True           # mixed precision, chosen per device (mrtl_core.precision.choose):
                                     # CUDA bf16 (fp16 + scaler without it); CPU float32 unless "bf16"
                                     # is asked for and the CPU has AMX/AVX512-BF16
    compile: bool = False
    channels_last: bool = False
    grad_clip: float | None = None
    progress: bool = True
    log_every: int = 50              # steps between progress-bar postfix updates
    validate_start: bool = False     # score the starting weights first (epoch 0): fine-tuning then never
                                     # returns weights that validate worse than the pre-trained start
    schedule: str = "step"           # "step" (StepLR every lr_step_size epochs) or "warmup-cosine"
    warmup_steps: int = 0            # linear warm-up steps of "warmup-cosine"
    layer_lr_decay: float = 1.0      # lr * decay**depth per U-Net level (1: one learning rate)
    l2sp: float = 0.0                # weight of the L2-SP penalty towards the starting weights
    augment: str = "none"            # "none" or "flips": training pairs mirrored (mrtl_core.augment, exact)

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("TrainConfig needs epochs or max_steps (both are None)")
        for name in ("epochs", "max_steps", "steps_per_epoch", "patience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "patience" else 1)):
                raise ValueError(f"TrainConfig.{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")
        if self.monitor not in ("l1", "ssim", "ssim_fg"):
            raise ValueError(f"TrainConfig.monitor must be 'l1', 'ssim' or 'ssim_fg', got {self.monitor!r}")
        if self.amp not in AMP_CHOICES or not isinstance(self.amp, (bool, str)):
            raise ValueError(f"TrainConfig.amp must be True, False, 'bf16' or 'fp16', got {self.amp!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.warmup_steps and self.schedule != "warmup-cosine":
            raise ValueError(f"TrainConfig.warmup_steps={self.warmup_steps} needs schedule='warmup-cosine', "
                             f"got schedule={self.schedule!r}")
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"TrainConfig.layer_lr_decay must lie in (0, 1], got {self.layer_lr_decay!r}")
        if not self.l2sp >= 0:
            raise ValueError(f"TrainConfig.l2sp must be >= 0, got {self.l2sp!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"TrainConfig.augment must be one of {AUGMENTATIONS}, got {self.augment!r}")

    def to_dict(self) -> dict:
        """Every field by name (what a checkpoint stores and a resume compares)."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run did: one ``history`` row per epoch (train_loss, val_loss, val_ssim, lr, seconds)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None    # 1-based epoch whose weights the model holds at the end (0: the start)
    best_value: float | None = None
    steps: int = 0
    epochs: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    device: str = "cpu"
    checkpoint_path: str | None = None
    precision: str = "float32"       # the arithmetic it ran in (mrtl_core.precision.Precision.name)

    def to_dict(self) -> dict:
        """Every field by name, the history included (JSON-ready)."""
        return dataclasses.asdict(self)

    @property
    def train_loss(self) -> list[float]:
        """The mean training loss of each history row (nan for the start's row of ``validate_start``)."""
        return [row["train_loss"] for row in self.history]

    @property
    def val_loss(self) -> list[float | None]:
        """The validation L1 of each history row (``None`` where there was no validation set)."""
        return [row.get("val_loss") for row in self.history]


# --------------------------------------------------------------------------------------------
# devices, seeds, architecture, strategies
# --------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; anything else as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; carry it to numpy and random.
    worker_seed = torch.initial_seed() % (2**32)
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` (or compiled) wrapper; ``model`` itself otherwise."""
    return getattr(model, "module", model)


def architecture(model: nn.Module) -> dict:
    """The constructor arguments that define ``model`` (for the fastMRI U-Net), else its shapes."""
    model = unwrap(model)
    keys = ("in_chans", "out_chans", "chans", "num_pool_layers", "drop_prob")
    if all(hasattr(model, k) for k in keys):
        arch = {"class": type(model).__name__}
        arch.update({k: getattr(model, k) for k in keys})
        return arch
    return {
        "class": type(model).__name__,
        "parameters": {name: list(p.shape) for name, p in model.state_dict().items()},
    }


def _check_architecture(checkpoint: dict, model: nn.Module, path: Path | str) -> None:
    saved = checkpoint.get("architecture")
    current = architecture(model)
    if saved is None:
        raise ValueError(f"checkpoint {str(path)!r} holds no 'architecture' entry: not written by mrtl_core.train")
    # drop_prob does not change the parameters: a model may be fine-tuned with other dropout.
    diff = {
        k: (saved.get(k), current.get(k))
        for k in sorted(set(saved) | set(current))
        if k != "drop_prob" and saved.get(k) != current.get(k)
    }
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"checkpoint {str(path)!r} was written for architecture {saved}, which does not match "
            f"the model's {current} ({detail})"
        )


def _strategy_trainable(name: str, strategy: str, num_up: int) -> bool:
    if strategy == "end-to-end":
        return True
    if strategy == "frozen-encoder":
        return not (name.startswith("down_sample_layers.") or name.startswith("conv."))
    if strategy == "last-layers":
        return name.startswith(f"up_conv.{num_up - 1}.")
    raise ValueError(f"strategy must be one of {FROZEN_SETS}, got {strategy!r}")


def layer_groups(model: nn.Module, params: Sequence[nn.Parameter], lr: float, decay: float) -> list[dict]:
    """Adam parameter groups with layer-wise learning rates: ``lr * decay**depth``.

    ``depth`` counts U-Net levels from the output: decoder stage ``j`` (``up_transpose_conv[j]`` and
    ``up_conv[j]``) has ``num_pool_layers - 1 - j``, the bottleneck ``conv`` ``num_pool_layers``, and
    encoder block ``i`` ``2 * num_pool_layers - i``; the last full-resolution block trains at ``lr``.
    Only ``params`` (the trainable ones) enter; each group carries its ``depth``.
    """
    model = unwrap(model)
    num = len(getattr(model, "down_sample_layers", []))
    if not num or not hasattr(model, "up_conv"):
        raise ValueError(f"layer_lr_decay needs a U-Net with down_sample_layers/conv/up_conv, got {type(model).__name__}")
    wanted = {id(p) for p in params}
    by_depth: dict[int, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if id(p) not in wanted:
            continue
        head, _, rest = name.partition(".")
        index = int(rest.split(".")[0]) if head != "conv" else 0
        depth = {"down_sample_layers": 2 * num - index, "conv": num,
                 "up_transpose_conv": num - 1 - index, "up_conv": num - 1 - index}.get(head)
        if depth is None:
            raise ValueError(f"layer_lr_decay: parameter {name!r} belongs to no U-Net level")
        by_depth.setdefault(depth, []).append(p)
    return [{"params": ps, "lr": lr * decay**d, "depth": d} for d, ps in sorted(by_depth.items())]


def apply_strategy(model: nn.Module, strategy: str) -> list[str]:
    """Set ``requires_grad`` for a fine-tuning strategy; return the names of trainable parameters.

    See the module docstring for what each strategy freezes. Needs the fastMRI U-Net's names
    (``down_sample_layers``, ``conv``, ``up_conv``) for the partial strategies.
    """
    if strategy == "lp-ft":
        raise ValueError("strategy 'lp-ft' is two phases (last-layers, then end-to-end): run it with fine_tune")
    if strategy not in FROZEN_SETS:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    model = unwrap(model)
    names = [n for n, _ in model.named_parameters()]
    if strategy != "end-to-end" and not any(n.startswith("up_conv.") for n in names):
        raise ValueError(
            f"strategy {strategy!r} needs a U-Net with down_sample_layers/conv/up_conv parameters, "
            f"got {type(model).__name__}"
        )
    num_up = len(getattr(model, "up_conv", []))
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(_strategy_trainable(name, strategy, num_up))
        if param.requires_grad:
            trainable.append(name)
    return trainable


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(path: Path | str, state: dict) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` (atomic on POSIX)."""
    from .cache import atomic_write

    return atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dictionary; a clear error names a missing or unreadable file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        # Our checkpoints hold numpy RNG states and plain dicts; they are trusted local files.
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"could not read checkpoint {str(path)!r}: {exc}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is not an mrtl_core checkpoint (no 'model' entry)")
    return ckpt


def load_model(checkpoint_path: Path | str, map_location: str | torch.device = "cpu", best: bool = True) -> nn.Module:
    """Rebuild the U-Net a checkpoint describes and load its (best, by default) weights; eval mode."""
    from .unet import Unet

    ckpt = load_checkpoint(checkpoint_path, map_location)
    arch = dict(ckpt.get("architecture") or {})
    if arch.get("class") != "Unet":
        raise ValueError(f"checkpoint {str(checkpoint_path)!r} does not describe a Unet (architecture {arch})")
    arch.pop("class")
    model = Unet(**arch)
    weights = ckpt.get("best_model") if best and ckpt.get("best_model") is not None else ckpt["model"]
    model.load_state_dict(weights)
    return model.to(map_location).eval()


#: settings a resumed run may change: how long it runs, and where and how fast, not what it computes
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "progress", "log_every", "device", "num_workers",
                               "amp", "compile", "channels_last"})


def weights_fingerprint(model: nn.Module) -> str:
    """A short sha256 of a model's parameters and buffers (names, shapes, bytes), in order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in unwrap(model).state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def _check_resumable(ckpt: dict, config: TrainConfig, run: dict, path: Path | str) -> None:
    """Refuse to resume a checkpoint whose run differs from this one (naming the fields).

    Resuming mixes the two: the optimiser and scheduler come back with the old settings while the
    record would claim the new ones. ``run`` holds what the configuration does not (the strategy,
    the starting weights); a checkpoint written before these were stored is not compared on them.
    """
    saved = dict(ckpt.get("config") or {})
    current = config.to_dict()
    diff = [f"{k} {saved[k]!r} -> {current[k]!r}" for k in sorted(current)
            if k not in RESUMABLE_CHANGES and k in saved and saved[k] != current[k]]
    saved_run = dict(ckpt.get("run") or {})
    for k, v in sorted(run.items()):
        if k in saved_run and saved_run[k] != v:
            # a weights hash means nothing to a reader: say what differs
            diff.append("start_weights: it began from other weights (another init checkpoint)" if k == "start_weights"
                        else f"{k} {saved_run[k]!r} -> {v!r}")
    if diff:
        raise ValueError(f"checkpoint {str(path)!r} belongs to another run ({'; '.join(diff)}): resume with its "
                         f"settings, or start afresh (resume=False, --no-resume) to overwrite it")


def _check_checkpoint_path(path: Path | str | None) -> None:
    """A checkpoint path that cannot be written fails now, not after the first epoch's work."""
    if path is None:
        return
    from .cache import blocking_file

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint path {str(path)!r} is a directory, expected a file path")
    blocker = blocking_file(path)
    if blocker is not None:
        raise ValueError(f"checkpoint path {str(path)!r}: {str(blocker)!r} is a file, not a directory")


# --------------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------------
def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _warmup_cosine(warmup: int, total: int):
    """The LambdaLR factor after ``step`` optimiser steps: ``(step + 1) / warmup`` while warming up,
    then a half cosine from 1 to 0 at ``total`` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def _batches(
    dataset: Dataset, config: TrainConfig, batch_size: int, epoch: int, world: tuple[int, int]
) -> Iterator[Any]:
    """Endless stream of training batches for one epoch; each pass is seeded by (seed, epoch, pass)."""
    rank, size = world
    passes = 0
    while True:
        gen = torch.Generator().manual_seed(_derive_seed(config.seed, epoch, passes))
        sampler = None
        if size > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(
                dataset, num_replicas=size, rank=rank, shuffle=True, seed=config.seed, drop_last=True
            )
            sampler.set_epoch(epoch * 100_003 + passes)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=gen,
            num_workers=config.num_workers,
            worker_init_fn=_seed_worker,
            drop_last=False,
            persistent_workers=False,
            collate_fn=collate,
        )
        yield from loader
        passes += 1


def forward_batch(model: nn.Module, batch: Any, device: torch.device,
                  channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of the loop: ``(model(batch.image), batch.target)``, both moved to ``device``.

    Args:
        model: maps ``(B, 1, H, W)`` normalised images to outputs of the same shape.
        batch: a batched :class:`~mrtl_core.data.UnetSample` (:func:`mrtl_core.data.collate`; any
            record with ``image`` and ``target`` ``(B, 1, H, W)`` fields, e.g. fastMRI's ``UnetSample``).
        device: where the model is.
        channels_last: give the model its input in ``channels_last`` memory format.

    Returns:
        ``(output, target)``, each ``(B, 1, H, W)``; the loop's loss is their L1 distance. A custom
        loop (say, a penalty on the distance to the starting weights) adds its terms to that loss.
    """
    image = batch.image.to(device, non_blocking=True)
    target = batch.target.to(device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return model(image), target


@torch.no_grad()
def validate(model: nn.Module, val_set: Dataset, config: TrainConfig, device: torch.device | str | None = None,
             want_ssim: bool | None = None) -> dict[str, float]:
    """The validation scores the loop early-stops on, for ``model`` as it is now.

    Args:
        model: as in :func:`train` (not a ``DistributedDataParallel`` wrapper).
        val_set: a dataset of :class:`~mrtl_core.data.UnetSample` with targets.
        config: its ``batch_size``, ``num_workers``, ``amp``, ``channels_last`` and ``monitor`` apply.
        device: where ``model`` is (default: ``config.device`` resolved).
        want_ssim: also compute ``val_ssim`` (default: when ``config.monitor`` is not ``"l1"``).

    Returns:
        ``{"val_loss": mean per-slice L1 in normalised units}``, and with ``want_ssim``
        ``"val_ssim"``: the mean SSIM in physical units (foreground SSIM for ``monitor="ssim_fg"``)
        with ``data_range`` each slice's ``max_value``. The model's train/eval mode is restored.
    """
    device = resolve_device(config.device if device is None else device)
    want_ssim = config.monitor != "l1" if want_ssim is None else bool(want_ssim)
    was_training = model.training
    model.eval()
    loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers,
                        collate_fn=collate)
    prec = choose_precision(config.amp, device)
    total, count, ssims = 0.0, 0, []
    for batch in loader:
        stop.check()
        with torch.autocast(device.type, dtype=prec.dtype, enabled=prec.autocast):
            output, target = forward_batch(model, batch, device, config.channels_last)
        output = output.float()
        total += torch.nn.functional.l1_loss(output, target, reduction="none").mean(dim=(1, 2, 3)).sum().item()
        count += output.shape[0]
        if want_ssim:
            from . import metrics

            pred = unnormalize(output[:, 0].detach().cpu(), batch.mean, batch.std)
            targ = unnormalize(batch.target[:, 0], batch.mean, batch.std)
            for i in range(pred.shape[0]):
                # "ssim_fg" scores the anatomy only, as the book reports it: whole-image SSIM is
                # dominated by background noise
                mask = metrics.foreground_mask(targ[i].numpy()) if config.monitor == "ssim_fg" else None
                ssims.append(float(metrics.ssim(pred[i].numpy(), targ[i].numpy(),
                                                data_range=float(batch.max_value[i]), mask=mask)))
    model.train(was_training)
    out = {"val_loss": total / max(count, 1)}
    if want_ssim:
        out["val_ssim"] = float(np.mean(ssims))
    return out


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig | None = None,
    checkpoint_path: Path | str | None = None,
    resume: bool = True,
    _params: Sequence[nn.Parameter] | None = None,
    _run: dict | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_set`` (L1, Adam, StepLR); return a :class:`TrainResult`.

    Args:
        model: maps ``(N, 1, H, W)`` normalised zero-filled images to targets of the same shape.
        train_set, val_set: datasets of :class:`~mrtl_core.data.UnetSample` (``image`` and ``target``
            ``(1, H, W)``, plus ``mean``, ``std``, ``max_value`` for SSIM monitoring), batched with
            :func:`mrtl_core.data.collate`; ``val_set`` may be ``None`` (no early stopping; the last
            weights are kept).
        config: the :class:`TrainConfig`.
        checkpoint_path: if given, the full state is written there after every epoch; with
            ``resume=True`` and an existing file, training continues from it (its architecture
            must match ``model``, and its configuration this one's except for
            :data:`RESUMABLE_CHANGES`: the run's epochs/max_steps may exceed the checkpoint's);
            ``resume=False`` starts afresh and overwrites it after the first epoch.

    At the end the model holds the best validation weights (early stopping) and is in eval mode.
    """
    config = config or TrainConfig()
    if len(train_set) == 0:
        raise ValueError("train_set is empty")
    _check_checkpoint_path(checkpoint_path)
    if getattr(train_set, "has_targets", True) is False or getattr(val_set, "has_targets", True) is False:
        raise ValueError("train_set or val_set has no targets (test/challenge files without reconstruction_rss)")
    rank, world_size = _dist()
    if len(train_set) < world_size:
        raise ValueError(f"train_set has {len(train_set)} samples, fewer than the {world_size} distributed ranks")
    device = resolve_device(config.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    core = unwrap(model).to(device)
    if config.channels_last:
        core = core.to(memory_format=torch.channels_last)
    core.train()
    params = list(_params) if _params is not None else [p for p in core.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (all requires_grad=False)")
    # the L2-SP anchor: the weights the run starts from (a resumed fine-tuning run is handed the same
    # start, which the checkpoint's start_weights check ensures), kept before any checkpoint loads
    anchor = [p.detach().clone() for p in params] if config.l2sp > 0 else None
    groups = layer_groups(core, params, config.lr, config.layer_lr_decay) if config.layer_lr_decay != 1.0 else params
    optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    prec = choose_precision(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=prec.scaler)

    batch_size = min(config.batch_size, len(train_set))
    per_rank = max(1, len(train_set) // world_size)
    steps_per_epoch = config.steps_per_epoch or max(1, math.ceil(per_rank / batch_size))
    max_steps = config.max_steps if config.max_steps is not None else 10**12
    epochs = config.epochs if config.epochs is not None else math.ceil(max_steps / steps_per_epoch)
    sign = 1.0 if config.monitor == "l1" else -1.0  # we minimise sign * value
    if config.schedule == "warmup-cosine":   # per optimiser step, over the whole budget
        total = max(1, min(epochs * steps_per_epoch, max_steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup_steps, total))
    else:                                    # fastMRI's: per epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma)
    per_step = config.schedule == "warmup-cosine"

    result = TrainResult(device=str(device), checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
                         precision=prec.name)
    start_epoch, step, best_score, stale = 0, 0, math.inf, 0
    best_state = None
    previous_seconds = 0.0
    run = dict(_run or {})
    if checkpoint_path is not None:
        from .cache import clean_stale_temps

        clean_stale_temps(Path(checkpoint_path))  # left by a run killed while writing its checkpoint
    if checkpoint_path is not None and resume and Path(checkpoint_path).is_file():
        ckpt = load_checkpoint(checkpoint_path, map_location=device)
        _check_architecture(ckpt, core, checkpoint_path)
        _check_resumable(ckpt, config, run, checkpoint_path)
        core.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        best_score, stale = ckpt["best_score"], ckpt["stale"]
        best_state = ckpt.get("best_model")
        result.history = list(ckpt["history"])
        result.best_epoch, result.best_value = ckpt.get("best_epoch"), ckpt.get("best_value")
        result.stopped_early = bool(ckpt.get("stopped_early"))
        previous_seconds = float(ckpt.get("seconds", 0.0))
        if ckpt.get("precision", prec.name) != prec.name:  # resumed on another device or AMP setting
            result.precision = f"{ckpt['precision']}, then {prec.name}"
        _set_rng_state(ckpt["rng"])
        if result.stopped_early:
            start_epoch = epochs  # nothing left to do: it stopped early before

    net: nn.Module = core
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        net = torch.compile(net)

    from .progress import tqdm

    started = time.perf_counter()
    if config.validate_start and val_set is not None and len(val_set) > 0 and step == 0 and not result.history:
        # the start is a candidate like any epoch: if no step improves the validation score, early
        # stopping restores the weights the run began with (a pre-trained model stays as it was)
        row = {"epoch": 0, "step": 0, "train_loss": float("nan"), "lr": optimizer.param_groups[0]["lr"]}
        row.update(validate(core, val_set, config, device, want_ssim=config.monitor != "l1"))
        value = row["val_loss"] if config.monitor == "l1" else row["val_ssim"]
        best_score = sign * value
        best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
        result.best_epoch, result.best_value = 0, float(value)
        row["seconds"] = time.perf_counter() - started
        result.history.append(row)
        core.train()
    show = config.progress and rank == 0
    bar = tqdm(total=min(epochs * steps_per_epoch, max_steps), initial=step, disable=not show, desc="train", leave=False)
    epoch = start_epoch
    while epoch < epochs and step < max_steps and not result.stopped_early:
        t0 = time.perf_counter()
        seed_everything(_derive_seed(config.seed, epoch, 7))
        stream = _batches(train_set, config, batch_size, epoch, (rank, world_size))
        # the flips' own stream, seeded per epoch like the batches: the mask draws stay those of an
        # unaugmented run, and a run resumed at an epoch boundary draws the same flips
        flips = torch.Generator().manual_seed(_derive_seed(config.seed, epoch, 7, 1)) if config.augment == "flips" else None
        losses = []
        for _ in range(steps_per_epoch):
            if step >= max_steps:
                break
            stop.check()   # a Ctrl-C or SIGTERM that an ignoring frame swallowed stops here
            batch = next(stream)
            if flips is not None:
                batch = batch._replace(**dict(zip(("image", "target"), random_flips(batch.image, batch.target, flips))))
            with torch.autocast(device.type, dtype=prec.dtype, enabled=prec.autocast):
                output, target = forward_batch(net, batch, device, config.channels_last)
                loss = torch.nn.functional.l1_loss(output.float(), target)
            objective = loss
            if anchor is not None:   # float32, outside autocast: a sum of squares of small differences
                objective = loss + 0.5 * config.l2sp * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(objective).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if per_step:
                step_lr = optimizer.param_groups[0]["lr"]   # the rate this step used
                scheduler.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            if show and step % max(1, config.log_every) == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-config.log_every:]):.4f}", epoch=epoch + 1)
        # the rate of the epoch's last step (layer-wise: the output level's, the largest)
        lr_used = step_lr if per_step and losses else optimizer.param_groups[0]["lr"]
        if not per_step:
            scheduler.step()
        epoch += 1
        row = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": lr_used}
        if val_set is not None and len(val_set) > 0:
            row.update(validate(core, val_set, config, device, want_ssim=config.monitor != "l1"))
            value = row["val_loss"] if config.monitor == "l1" else row["val_ssim"]  # ssim or ssim_fg
            if sign * value < best_score - config.min_delta:
                best_score, stale = sign * value, 0
                best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
                result.best_epoch, result.best_value = epoch, float(value)
            else:
                stale += 1
                if config.patience is not None and stale > config.patience:
                    result.stopped_early = True
        row["seconds"] = time.perf_counter() - t0
        result.history.append(row)
        if show:
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss", "val_ssim")})
        if checkpoint_path is not None and rank == 0:
            save_checkpoint(checkpoint_path, {
                "model": core.state_dict(),
                "best_model": best_state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if prec.scaler else None,
                "precision": result.precision,
                "epoch": epoch,
                "step": step,
                "best_score": best_score,
                "best_epoch": result.best_epoch,
                "best_value": result.best_value,
                "stale": stale,
                "stopped_early": result.stopped_early,
                "history": result.history,
                "seconds": previous_seconds + time.perf_counter() - started,
                "rng": _rng_state(),
                "config": config.to_dict(),
                "run": run,
                "architecture": architecture(core),
            })
        if world_size > 1:
            torch.distributed.barrier()
    bar.close()
    if best_state is not None:
        core.load_state_dict(best_state)
    core.eval()
    result.steps, result.epochs = step, epoch
    result.seconds = previous_seconds + time.perf_counter() - started
    return result


def fine_tune(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig | None = None,
    strategy: str = "end-to-end",
    checkpoint_path: Path | str | None = None,
    resume: bool = True,
) -> TrainResult:
    """Fine-tune ``model`` in place with a strategy (see the module docstring), then unfreeze it.

    Only the strategy's trainable parameters enter the optimiser, so frozen weights stay exactly
    as they were. Afterwards every parameter has ``requires_grad=True`` again. ``"lp-ft"`` runs
    :func:`probe_then_tune`.
    """
    if strategy == "lp-ft":
        return probe_then_tune(model, train_set, val_set, config, checkpoint_path, resume)
    apply_strategy(model, strategy)
    # the checkpoint records where the run began, so a resume from other weights (another --init)
    # or with another strategy is refused rather than silently continuing the old run
    run = {"strategy": strategy, "start_weights": weights_fingerprint(model)}
    try:
        params = [p for p in unwrap(model).parameters() if p.requires_grad]
        result = train(model, train_set, val_set, config, checkpoint_path=checkpoint_path, resume=resume,
                       _params=params, _run=run)
    finally:
        for p in unwrap(model).parameters():
            p.requires_grad_(True)
    return result


def _split_budget(value: int | None, fraction: float) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if value < 2:
        raise ValueError(f"strategy 'lp-ft' splits the budget in two phases: it needs at least 2, got {value}")
    first = min(value - 1, max(1, round(fraction * value)))
    return first, value - first


def probe_then_tune(model: nn.Module, train_set: Dataset, val_set: Dataset | None, config: TrainConfig | None = None,
                    checkpoint_path: Path | str | None = None, resume: bool = True) -> TrainResult:
    """The ``"lp-ft"`` strategy: ``"last-layers"`` for :data:`PROBE_FRACTION` of the budget (of
    ``max_steps`` and of ``epochs``, whichever are set), then ``"end-to-end"`` for the rest from the
    probe's best weights, which the second phase scores first (``validate_start``) so that it keeps
    them unless tuning every layer validates better.

    One result: the probe's history rows carry ``"phase": "probe"``, the second phase's ``"tune"``;
    ``best_epoch`` is the second phase's (0: the probe's weights). The probe checkpoints beside
    ``checkpoint_path`` (``<stem>.probe<suffix>``), removed when the second phase ends, so an
    interrupted run resumes in whichever phase it was.
    """
    config = config or TrainConfig()
    probe_steps, tune_steps = _split_budget(config.max_steps, PROBE_FRACTION)
    probe_epochs, tune_epochs = _split_budget(config.epochs, PROBE_FRACTION)
    probe_cfg = dataclasses.replace(config, max_steps=probe_steps, epochs=probe_epochs)
    tune_cfg = dataclasses.replace(config, max_steps=tune_steps, epochs=tune_epochs, validate_start=True)
    probe_path = None
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        probe_path = path.with_name(f"{path.stem}.probe{path.suffix}")
    first = fine_tune(model, train_set, val_set, probe_cfg, "last-layers", probe_path, resume)
    second = fine_tune(model, train_set, val_set, tune_cfg, "end-to-end", checkpoint_path, resume)
    if probe_path is not None and checkpoint_path is not None:
        probe_path.unlink(missing_ok=True)
    return dataclasses.replace(
        second,
        history=[{**row, "phase": "probe"} for row in first.history] + [{**row, "phase": "tune"} for row in second.history],
        steps=first.steps + second.steps, epochs=first.epochs + second.epochs,
        seconds=first.seconds + second.seconds)
