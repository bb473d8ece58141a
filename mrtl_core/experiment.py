"""The paper's experiment as cached building blocks the chapters and the CLI call with a :class:`Profile`.

Arshad et al. (2021) report that a U-Net pre-trained on 1.5 T brain images at 4x fails on (a) 3 T
brain, (b) 1.5 T knee and (c) other accelerations, and that end-to-end fine-tuning on a few target
slices repairs it. The book tests each claim; on its synthetic scanners (a) does not hold at a fixed
protocol (the pre-trained network equals its equal-data 3 T twin), while (b) and (c) do. Here:

* :func:`domain_splits` -- subject-wise train/val/test files of a synthetic domain;
* :func:`make_dataset` -- a :class:`~mrtl_core.data.SliceDataset` with the experiment's masks
  (random Cartesian, centre fraction ``0.32 / R``: 0.08 at 4x, as in fastMRI), fresh masks per
  access for training, fixed per-slice masks for validation and test;
* :func:`select_slices` / :func:`target_slices` -- the N slices a small-data run trains on;
* :func:`pretrain_config`, :func:`finetune_config`, :func:`scratch_config` -- the training recipes
  (``python -m mrtl_core finetune`` uses :func:`finetune_config` and :func:`select_slices` too, so
  the CLI fine-tunes exactly as the book does);
* :func:`pretrained_unet` -- trained once on ``brain-1.5T`` at R = 4, cached;
* :func:`finetune_run` -- fine-tuned (or trained from scratch) on N target slices, cached; its
  ``recipe`` is one of :data:`RECIPES` (the book's own is ``"baseline"``), see :func:`recipe_config`;
* :func:`scratch_full` -- trained from scratch on the whole target training split, cached;
* :func:`native_unet` -- the pre-trained network's twin for a target: trained from scratch on as
  many target subjects, with the same schedule, so ``pre-trained - native`` on the target's test
  set is the generalisation gap at equal data (the full-split scratch model has less data than the
  pre-trained one, so beating it does not mean the shift costs nothing);
* :func:`evaluate_on` -- any model or ``"zero-filled"`` / ``"cg-sense"`` on a domain's test split.

Every trained model returns ``(model, info)`` and is cached under
``cache_root()/models/<name>-<hash>``, the hash being of :func:`model_key`: everything that
changes the weights (data sizes, simulator version, architecture, training configuration, seeds,
the pre-trained model's own key), so a changed profile retrains and an unchanged one loads in well
under a second. An interrupted training resumes from a checkpoint kept under
``cache_root()/models/.partial/``.

The N target slices of :func:`finetune_run` are the first N of a seeded permutation of the target
training slices, so for one seed the sets are nested (the 5 slices are among the 20): curves over N
then differ by data added, not by a new draw. For the acceleration shift the "target" is the source
domain itself at another R, so its training split is the source's.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from . import cache, data, domains, masks, precision
from .evaluate import EvalResult, evaluate
from .profiles import Profile, get_profile
from .train import (
    LATER_DEFAULTS,
    TrainConfig,
    TrainResult,
    fine_tune,
    load_checkpoint,
    load_model,
    save_checkpoint,
    train,
)
from .unet import Unet

__all__ = [
    "SOURCE_DOMAIN",
    "SOURCE_ACCELERATION",
    "TARGET_DOMAINS",
    "EXPERIMENT_VERSION",
    "NO_LR_DECAY",
    "shifts",
    "domain_splits",
    "make_dataset",
    "select_slices",
    "target_slices",
    "new_unet",
    "lr_decay_step",
    "pretrain_config",
    "finetune_config",
    "RECIPES",
    "VALIDATION_CHOICES",
    "WITHIN_N_FRACTION",
    "WITHIN_N_MIN",
    "within_n_split",
    "RECIPE_EPOCHS",
    "LONG_BUDGET",
    "RECIPE_PEERS",
    "source_network",
    "OPEN_BUDGET",
    "recipe_config",
    "scratch_config",
    "model_key",
    "cached_model",
    "check_model_entry",
    "pretrained_unet",
    "finetune_run",
    "scratch_full",
    "native_unet",
    "native_train_files",
    "evaluate_on",
    "unet_dc_image",
    "evaluate_with_dc",
]

SOURCE_DOMAIN = "brain-1.5T"
SOURCE_ACCELERATION = 4
TARGET_DOMAINS = ("brain-3T", "knee-1.5T")
EXPERIMENT_VERSION = 1  # bump to invalidate every cached model (a change in how they are trained)
#: ``lr_step_size`` of step-budgeted runs (fine-tuning, scratch on N slices): past any budget, so the
#: learning rate stays constant
NO_LR_DECAY = 10**6

_MEMOS: dict[Path, dict[Any, Any]] = {}


def _memo() -> dict[Any, Any]:
    """This process's memo of splits, test sets and weights for the current cache root: a changed
    ``MRTL_CACHE_DIR`` gets a memo of its own, so nothing points into a cache that is not in use."""
    return _MEMOS.setdefault(cache.cache_root(), {})


def shifts(profile: Profile | str) -> list[dict]:
    """The three kinds of shift: ``[{"name", "domain", "acceleration", "kind"}]``.

    Field strength (brain-3T, 4x), anatomy (knee-1.5T, 4x), and acceleration (brain-1.5T at every
    R of ``profile.accelerations`` other than 4).
    """
    profile = get_profile(profile)
    out = [
        {"name": "brain-3T R4", "domain": "brain-3T", "acceleration": 4, "kind": "field"},
        {"name": "knee-1.5T R4", "domain": "knee-1.5T", "acceleration": 4, "kind": "anatomy"},
    ]
    for r in profile.accelerations:
        if float(r) != SOURCE_ACCELERATION:
            out.append({"name": f"brain-1.5T R{r:g}", "domain": SOURCE_DOMAIN, "acceleration": r, "kind": "acceleration"})
    return out


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _split_counts(profile: Profile, domain: str) -> dict[str, int]:
    n_train = profile.source_train_subjects if domain == SOURCE_DOMAIN else profile.target_train_subjects
    return {"train": int(n_train), "val": int(profile.val_subjects), "test": int(profile.test_subjects)}


def _data_key(profile: Profile, domain: str) -> dict:
    return {
        "domain": domain,
        "subjects": _split_counts(profile, domain),
        "slices_per_subject": profile.slices_per_subject,
        "image_size": profile.image_size,
        "data_seed": profile.data_seed,
        "data_version": data.DATA_VERSION,
        "physics": domains.physics_version(domain),
    }


def domain_splits(profile: Profile | str, domain: str, progress: bool = True) -> dict[str, list[Path]]:
    """Train/val/test files of ``domain`` (split by subject), generated once into the cache.

    The source domain (brain-1.5T) has ``source_train_subjects`` training subjects, a target
    domain ``target_train_subjects``; both have ``val_subjects`` and ``test_subjects``.
    """
    profile = get_profile(profile)
    counts = _split_counts(profile, domain)
    key = ("splits", json.dumps(_data_key(profile, domain), sort_keys=True, default=str))
    if key not in _memo():
        files = domains.domain_files(domain, sum(counts.values()), profile.slices_per_subject, profile.image_size,
                                     seed=profile.data_seed, progress=progress)
        _memo()[key] = data.split_by_subject(files, counts, seed=0)
    return {k: list(v) for k, v in _memo()[key].items()}


def make_dataset(
    files: Sequence[Path],
    acceleration: float,
    profile: Profile | str,
    train: bool,
    with_kspace: bool = False,
) -> data.SliceDataset:
    """A slice dataset with the experiment's random Cartesian masks (centre fraction ``0.32 / R``).

    ``train=True`` draws a fresh mask per access (from torch's RNG, seeded by the training loop);
    otherwise every slice has a fixed mask, so all methods are scored on the same inputs.
    """
    profile = get_profile(profile)
    return data.SliceDataset(
        list(files),
        acceleration=acceleration,
        center_fraction=None,
        mask_kind="random",
        crop_size=(profile.image_size, profile.image_size),
        seed_masks=not train,
        with_kspace=with_kspace,
    )


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def select_slices(dataset: Dataset, n_slices: int, seed: int, what: str = "training slices") -> Subset:
    """The first ``n_slices`` of a permutation of ``dataset`` seeded by ``seed`` (in index order).

    For one seed the selections are nested: the 5 slices are among the 20. ``what`` names the
    slices in the error for an ``n_slices`` outside ``[1, len(dataset)]``.
    """
    _check_seed(seed)
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or not 1 <= n_slices <= len(dataset):
        raise ValueError(f"n_slices must lie in [1, {len(dataset)}] (the {what}), got {n_slices!r}")
    order = np.random.default_rng([int(seed), 20210]).permutation(len(dataset))
    return Subset(dataset, sorted(int(i) for i in order[:n_slices]))


#: where a small-data run validates: on the target's own validation split (the book's runs: labelled
#: target slices beyond the N), or within the N slices (``"within-n"``: N target images mean N)
VALIDATION_CHOICES = ("target-split", "within-n")
#: ``"within-n"`` holds out this share of the N slices (at least one) for early stopping ...
WITHIN_N_FRACTION = 0.2
#: ... when N reaches this; below it the run trains its whole budget with no validation
WITHIN_N_MIN = 5


def within_n_split(profile: Profile | str, domain: str, n_slices: int, seed: int,
                   acceleration: float = 4) -> tuple[Subset, Subset | None]:
    """The N slices of :func:`target_slices` split for ``"within-n"`` validation: ``(train, val)``.

    For ``n_slices >= WITHIN_N_MIN``, ``k = max(1, round(WITHIN_N_FRACTION * n_slices))`` of them (drawn
    with the seed) validate, with fixed masks as every validation set has, and the other ``n - k``
    train; below that, all N train and ``val`` is None (no early stopping). No slice outside the N is
    touched.
    """
    profile = get_profile(profile)
    chosen = target_slices(profile, domain, n_slices, seed, acceleration)
    if n_slices < WITHIN_N_MIN:
        return chosen, None
    k = max(1, round(WITHIN_N_FRACTION * n_slices))
    order = np.random.default_rng([int(seed), 20212]).permutation(n_slices)
    held = sorted(chosen.indices[int(i)] for i in order[:k])
    kept = sorted(set(chosen.indices) - set(held))
    fixed = make_dataset(domain_splits(profile, domain, progress=False)["train"], acceleration, profile, train=False)
    return Subset(chosen.dataset, kept), Subset(fixed, held)


def target_slices(profile: Profile | str, domain: str, n_slices: int, seed: int, acceleration: float = 4) -> Subset:
    """``n_slices`` training slices of ``domain`` at ``acceleration``: :func:`select_slices` of its training split."""
    profile = get_profile(profile)
    _check_seed(seed)  # before the domain is generated: a bad seed answers at once
    full = make_dataset(domain_splits(profile, domain, progress=False)["train"], acceleration, profile, train=True)
    return select_slices(full, n_slices, seed, what=f"{domain} training slices")


# --------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------
def _unet_spec(profile: Profile) -> dict:
    """The U-Net's constructor arguments (also the ``model`` part of every model key)."""
    return {"in_chans": 1, "out_chans": 1, "chans": profile.chans, "num_pool_layers": profile.num_pool_layers}


def new_unet(profile: Profile | str, seed: int = 0) -> Unet:
    """A freshly initialised U-Net of the profile's size (initialisation seeded)."""
    profile = get_profile(profile)
    torch.manual_seed(seed)
    return Unet(**_unet_spec(profile))


def lr_decay_step(epochs: int) -> int:
    """``lr_step_size`` of an epoch-budgeted run: one 10x decay for the last fifth of ``epochs``."""
    return max(1, int(round(0.8 * epochs)))


def _epoch_config(profile: Profile, epochs: int, progress: bool, device: str, seed: int = 0) -> TrainConfig:
    _check_seed(seed)
    return TrainConfig(epochs=epochs, batch_size=profile.batch_size, lr=profile.lr,
                       lr_step_size=lr_decay_step(epochs), lr_gamma=0.1, seed=int(seed),
                       device=device, progress=progress, monitor="l1", amp=precision.requested())


def pretrain_config(profile: Profile | str, progress: bool = True, device: str = "auto", seed: int = 0) -> TrainConfig:
    """Pre-training: ``pretrain_epochs`` epochs, Adam at ``lr``, decayed 10x for the last fifth;
    ``seed`` orders the batches and draws the masks (the book's networks: 0)."""
    profile = get_profile(profile)
    return _epoch_config(profile, profile.pretrain_epochs, progress, device, seed)


def scratch_config(profile: Profile | str, progress: bool = True, device: str = "auto", seed: int = 0) -> TrainConfig:
    """From scratch on a whole target training split: like pre-training, ``scratch_epochs`` long."""
    profile = get_profile(profile)
    return _epoch_config(profile, profile.scratch_epochs, progress, device, seed)


def finetune_config(profile: Profile | str, n_slices: int, seed: int, from_scratch: bool = False,
                    progress: bool = True, device: str = "auto", early_stopping: bool = True,
                    **overrides: Any) -> TrainConfig:
    """Small-data training: at most ``finetune_steps`` steps (``scratch_steps`` from scratch),
    validation every ``finetune_eval_every`` steps, early stopping on ``finetune_monitor`` after
    ``finetune_patience`` rounds without improvement; fine-tuning at the small ``finetune_lr``,
    scratch at ``lr``; a constant learning rate. Fine-tuning scores the pre-trained start first,
    so it keeps the start when no step helps.

    ``early_stopping=False`` drops the patience and the scoring of the start. ``overrides`` are
    :class:`~mrtl_core.train.TrainConfig` fields set instead of the profile's (``max_steps=...``,
    ``lr=...``); the config is validated once, with them.
    """
    profile = get_profile(profile)
    steps = (profile.scratch_steps or profile.finetune_steps) if from_scratch else profile.finetune_steps
    fields: dict[str, Any] = dict(
        max_steps=int(steps), epochs=None,
        steps_per_epoch=int(profile.finetune_eval_every),
        batch_size=int(min(profile.finetune_batch_size, n_slices)),
        lr=profile.lr if from_scratch else profile.finetune_lr,
        lr_step_size=NO_LR_DECAY, patience=profile.finetune_patience, seed=int(seed),
        monitor=profile.finetune_monitor, device=device, progress=progress,
        validate_start=not from_scratch, amp=precision.requested(),
    )
    if not early_stopping:
        fields.update(patience=None, validate_start=False)
    return TrainConfig(**{**fields, **overrides})


#: epochs over the N slices that a scaled budget allows (the step cap of "baseline" is under 6 at
#: N = 50 on the standard profile, so every such run ended at its cap, not by early stopping)
RECIPE_EPOCHS = 30

#: the fine-tuning recipes, each settings chosen from the literature before any measurement:
#: ``budget`` "scaled" = :data:`RECIPE_EPOCHS` epochs of the N slices (at least the profile's steps),
#: a validation round per epoch at least, early stopping as the profile's; warm-up over the first
#: 10 % of the steps (Goyal et al. 2017 warm up over 5 of 90 epochs, BERT over 10 %), then a cosine
#: to zero; layer-wise decay 0.5 per U-Net level (ULMFiT divides by 2.6 per layer, BEiT uses
#: 0.65-0.75 per block of a deeper net); L2-SP alpha 0.01 (Li et al. 2018's setting for their
#: segmentation and detection transfer); lp-ft with the probe's share of
#: :data:`mrtl_core.train.PROBE_FRACTION`
RECIPES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "scaled": {"budget": "scaled"},
    "warmup-cosine": {"budget": "scaled", "schedule": "warmup-cosine", "warmup_fraction": 0.1},
    "layer-lr": {"budget": "scaled", "layer_lr_decay": 0.5},
    "l2sp": {"budget": "scaled", "l2sp": 0.01},
    "lp-ft": {"budget": "scaled", "strategy": "lp-ft"},
    # a diagnostic, not a recipe: the baseline with LONG_BUDGET times its steps, to measure whether
    # the budget is what limits it (issue 13: "names what limits it, measured")
    "long": {"budget": "long"},
    # "long" with mirrored training pairs (mrtl_core.augment): the same budget and early stopping, so
    # "flips - long" is the augmentation alone. Added after the runs above showed N = 5 stopping at
    # 110-120 steps by over-fitting, before any flips run; MRAugment (Fabian et al., ICML 2021) found
    # augmentation worth most in the low-data regime
    "flips": {"budget": "long", "augment": "flips"},
    # "flips" with a cap so far (OPEN_BUDGET times the baseline's steps) that early stopping, not the
    # cap, ends the run: every flips run at N = 10 and 50 still had its best round at its 280th step.
    # Added after those runs and before any run of this one; the patience is the profile's
    "flips-open": {"budget": "open", "augment": "flips"},
    # "flips" early-stopping on whole-image SSIM instead of the profile's foreground SSIM (issue 13: both
    # monitors available, the default justified by measurement): the background's noise floor then
    # counts as much as the anatomy in choosing the weights
    "flips-whole": {"budget": "long", "augment": "flips", "monitor": "ssim"},
}
#: the step multiple of the "long" diagnostic
LONG_BUDGET = 4
#: the step multiple of an "open" budget: a cap that early stopping is meant to reach first
OPEN_BUDGET = 16
#: a recipe's peer: the recipe that differs from it in one setting alone (besides the baseline, which
#: every recipe is compared with), so ``recipe - peer`` measures that setting
RECIPE_PEERS = {"flips": "long", "flips-open": "flips", "flips-whole": "flips"}


def recipe_config(profile: Profile | str, n_slices: int, seed: int, recipe: str = "baseline",
                  from_scratch: bool = False, **kwargs: Any) -> tuple[TrainConfig, str | None]:
    """:func:`finetune_config` for a named recipe of :data:`RECIPES`, and the strategy the recipe
    sets (None: the caller's). ``"baseline"`` is :func:`finetune_config` itself."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    profile = get_profile(profile)
    spec = dict(RECIPES[recipe])
    strategy = spec.pop("strategy", None)
    overrides: dict[str, Any] = {}
    budget = spec.pop("budget", None)
    if budget in ("long", "open"):
        base = (profile.scratch_steps or profile.finetune_steps) if from_scratch else profile.finetune_steps
        overrides["max_steps"] = (LONG_BUDGET if budget == "long" else OPEN_BUDGET) * int(base)
    if budget == "scaled":
        batch = int(min(profile.finetune_batch_size, n_slices))
        epoch_steps = -(-int(n_slices) // batch)
        base = (profile.scratch_steps or profile.finetune_steps) if from_scratch else profile.finetune_steps
        overrides.update(max_steps=max(int(base), RECIPE_EPOCHS * epoch_steps),
                         steps_per_epoch=max(int(profile.finetune_eval_every), epoch_steps))
    warmup = spec.pop("warmup_fraction", None)
    overrides.update(spec)
    overrides.update(kwargs.pop("overrides", {}))
    cfg = finetune_config(profile, n_slices, seed, from_scratch=from_scratch, **kwargs, **overrides)
    if warmup is not None:
        cfg = TrainConfig(**{**cfg.to_dict(), "warmup_steps": max(1, round(warmup * cfg.max_steps))})
    return cfg, strategy


def _train_key(config: TrainConfig) -> dict:
    d = config.to_dict()
    for k in ("progress", "log_every", "device", "num_workers"):
        d.pop(k)
    for name, default in LATER_DEFAULTS.items():   # fields added later: runs without them keep their keys
        if d.get(name) == default:
            d.pop(name, None)
    return d


# --------------------------------------------------------------------------------------------
# cached models
# --------------------------------------------------------------------------------------------
#: parts of a model key that are left out at these values: they were added later, and the models
#: cached before (which had them at these values) keep their keys
_KEY_DEFAULTS = {"rehearsal_slices": 0, "early_stopping": True, "validation": "target-split"}


def model_key(profile: Profile | str, what: str, domain: str, acceleration: float, config: TrainConfig,
              **parts: Any) -> dict:
    """The cache key of a trained model, the one place every model's key is built.

    ``what`` the kind of model (``pretrain``, ``finetune``, ``scratch-n``, ``scratch-full``,
    ``native``), ``domain`` and ``acceleration`` the data it trains on, ``config`` its training
    (device, progress and workers do not count), and ``parts`` whatever else shapes its weights
    (seed, number of slices, strategy, the base model's hash, ...). The profile gives the data
    sizes, the simulator version and the architecture.
    """
    profile = get_profile(profile)
    key = {
        "what": what,
        "version": EXPERIMENT_VERSION,
        "data": _data_key(profile, domain),
        # float, so R = 4 and 4.0 share a key; the pre-trained key has held the int since its first model
        "acceleration": acceleration if what == "pretrain" else float(acceleration),
        "model": _unet_spec(profile),
        "train": _train_key(config),
    }
    for name, value in parts.items():
        if name in key:
            raise ValueError(f"model_key: part {name!r} is one of the key's own fields")
        if name not in _KEY_DEFAULTS or value != _KEY_DEFAULTS[name]:
            key[name] = value
    return key


def cached_model(name: str, key: dict, run: Callable[[Path], TrainResult], extra_info: dict) -> tuple[Unet, dict]:
    """Load ``models/<name>-<hash(key)>/model.pt`` or build it with ``run(checkpoint_path)``: the one
    door through which every trained model enters the cache (``key`` from :func:`model_key`).

    The cache keeps only the best weights, architecture, configuration and history (not the
    optimiser state), about 8 MB for a ``chans=16`` U-Net.
    """
    memo_key = ("model", name, cache.config_hash(key))
    t0 = time.perf_counter()
    built = {"flag": False}

    def build(tmp: Path) -> None:
        partial = cache.cache_root() / "models" / ".partial" / f"{name}-{cache.config_hash(key)}.pt"
        partial.parent.mkdir(parents=True, exist_ok=True)
        result = run(partial)
        ckpt = load_checkpoint(partial)
        best = ckpt.get("best_model") if ckpt.get("best_model") is not None else ckpt["model"]
        save_checkpoint(tmp / "model.pt", {"model": best, "architecture": ckpt["architecture"],
                                           "config": ckpt["config"], "history": ckpt["history"]})
        info = {**extra_info, **result.to_dict(), "name": name}
        info.pop("checkpoint_path", None)
        (tmp / "info.json").write_text(json.dumps(info, indent=1, default=str))
        partial.unlink(missing_ok=True)
        built["flag"] = True

    # weights are a few MB: hash them on every hit (once per process), a flipped bit would load silently
    entry = cache.cached_dir("models", name, key, build, validate=check_model_entry, hash_limit=1 << 30)
    if memo_key not in _memo() or built["flag"]:
        model = load_model(entry / "model.pt")
        _memo()[memo_key] = (model.state_dict(), json.loads((entry / "info.json").read_text()))
    state, info = _memo()[memo_key]
    model = Unet(**key["model"])
    model.load_state_dict(state)  # copies: the memoised weights never alias a caller's model
    model.eval()
    info = dict(info, path=str(entry / "model.pt"), cached=not built["flag"], load_seconds=time.perf_counter() - t0)
    return model, info


#: what every cached model's info.json holds (a file emptied to ``{}`` is damage, not a model)
_INFO_KEYS = ("name", "history", "best_epoch", "steps")


def check_model_entry(entry: Path) -> None:
    """The ``validate`` of a model cache entry: ``model.pt`` present, ``info.json`` complete."""
    if not (entry / "model.pt").is_file():
        raise FileNotFoundError(f"{entry / 'model.pt'}: missing")
    path = entry / "info.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({' '.join(str(err).split())})") from None
    missing = [k for k in _INFO_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)}")


def _pretrain_key(profile: Profile, seed: int = 0) -> dict:
    return model_key(profile, "pretrain", SOURCE_DOMAIN, SOURCE_ACCELERATION, pretrain_config(profile, progress=False, seed=seed),
                     center_fraction=masks.default_center_fraction(SOURCE_ACCELERATION))


def pretrained_unet(profile: Profile | str, progress: bool = True, device: str = "auto",
                    seed: int = 0) -> tuple[Unet, dict]:
    """The U-Net pre-trained on brain-1.5T at R = 4 (random mask, centre fraction 0.08), cached.

    ``seed`` initialises the network and orders its batches and masks; the book's network is seed 0
    (its cache key is the one it always had), others are the same recipe trained again, for claims
    that must hold over training seeds (``benchmarks/network_seeds.py``).

    Returns ``(model, info)``: the model (CPU, eval mode, best validation weights) and a dict with
    the training ``history``, ``best_epoch``, ``seconds``, ``steps``, ``num_train_slices``,
    ``path`` of the checkpoint, ``cached`` (loaded rather than trained) and ``load_seconds``.
    Every call returns a fresh copy: fine-tuning it never changes the cached weights.
    """
    profile = get_profile(profile)

    def run(checkpoint: Path) -> TrainResult:
        splits = domain_splits(profile, SOURCE_DOMAIN, progress=progress)
        train_set = make_dataset(splits["train"], SOURCE_ACCELERATION, profile, train=True)
        val_set = make_dataset(splits["val"], SOURCE_ACCELERATION, profile, train=False)
        model = new_unet(profile, seed=seed)
        return train(model, train_set, val_set, pretrain_config(profile, progress, device, seed), checkpoint_path=checkpoint)

    n_train = profile.source_train_subjects * profile.slices_per_subject
    name = f"unet-{SOURCE_DOMAIN}-R{SOURCE_ACCELERATION}-{profile.name}" + (f"-s{seed}" if seed else "")
    return cached_model(name, _pretrain_key(profile, seed), run,
                         {"num_train_slices": n_train, "domain": SOURCE_DOMAIN, "acceleration": SOURCE_ACCELERATION})


def finetune_run(
    profile: Profile | str,
    target_domain: str,
    n_slices: int,
    seed: int,
    acceleration: float = 4,
    strategy: str = "end-to-end",
    from_scratch: bool = False,
    progress: bool = True,
    device: str = "auto",
    rehearsal_slices: int = 0,
    early_stopping: bool = True,
    max_steps: int | None = None,
    recipe: str = "baseline",
    validation: str = "target-split",
    source: str = SOURCE_DOMAIN,
    lr: float | None = None,
) -> tuple[Unet, dict]:
    """A model adapted to ``target_domain`` at ``acceleration`` from ``n_slices`` target slices.

    ``from_scratch=False`` fine-tunes the pre-trained U-Net with ``strategy``; ``True`` trains a
    fresh U-Net (initialised with ``seed``) on the same slices. Early stopping on the target's
    validation split. Cached; returns ``(model, info)`` as :func:`pretrained_unet` does.

    ``rehearsal_slices=k > 0`` (fine-tuning only) mixes ``k`` source training slices (brain-1.5T
    at R = 4, :func:`target_slices` of the source with the same seed) into the training set, so
    every batch is drawn from ``n_slices + k`` slices: rehearsal against catastrophic forgetting.
    Early stopping still watches the target's validation split only.

    ``early_stopping=False`` trains the whole step budget with no validation and keeps the last
    weights; ``max_steps`` replaces the profile's budget. Together they reproduce the failure that
    motivates the validation split: a few slices, many steps, over-fitting.

    ``recipe`` names one of :data:`RECIPES` (:func:`recipe_config`): its budget, schedule,
    layer-wise rates or penalty, and for ``"lp-ft"`` the strategy (which then replaces
    ``strategy``). From scratch, a recipe's budget and schedule apply to the scratch run too, so a
    comparison of the two is at the same budget rule.

    ``validation="within-n"`` (:func:`within_n_split`) early-stops on part of the N slices themselves
    and trains on the rest (below :data:`WITHIN_N_MIN` slices: all N train, no validation), so a run
    "with N target images" touches N labelled target slices and no more; the default validates on
    the target's validation split, as the book's runs do.

    ``source`` names the network that is fine-tuned: the book's pre-trained U-Net (the default), or
    another domain's network by the pre-training recipe (:func:`source_network`), e.g. a clinical
    1.5 T site's adapted to a 3 T site; rehearsal then mixes in that domain's slices.

    ``lr`` replaces the profile's learning rate (``finetune_lr``, or ``lr`` from scratch), e.g. one chosen
    for scratch-on-N by its validation score (``benchmarks/finetune_recipes.py --scratch``).
    """
    profile = get_profile(profile)
    if isinstance(rehearsal_slices, bool) or not isinstance(rehearsal_slices, (int, np.integer)) or rehearsal_slices < 0:
        raise ValueError(f"rehearsal_slices must be an integer >= 0, got {rehearsal_slices!r}")
    if rehearsal_slices and from_scratch:
        raise ValueError("rehearsal_slices applies to fine-tuning only (from_scratch=True was given)")
    if validation not in VALIDATION_CHOICES:
        raise ValueError(f"validation must be one of {VALIDATION_CHOICES}, got {validation!r}")
    if validation == "within-n" and not early_stopping:
        raise ValueError("validation='within-n' is a way to early-stop; early_stopping=False has no validation")
    # within N below WITHIN_N_MIN slices there is nothing to validate on: the whole budget, the last weights
    validates = early_stopping and not (validation == "within-n" and n_slices < WITHIN_N_MIN)
    overrides = {}
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        overrides["max_steps"] = int(max_steps)
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        overrides["lr"] = float(lr)
    cfg, recipe_strategy = recipe_config(profile, n_slices + int(rehearsal_slices), seed, recipe,
                                         from_scratch=from_scratch, progress=progress, device=device,
                                         early_stopping=validates, overrides=overrides)
    if recipe_strategy is not None and not from_scratch:
        strategy = recipe_strategy
    if from_scratch and recipe in ("l2sp", "lp-ft", "layer-lr"):
        raise ValueError(f"recipe {recipe!r} adapts pre-trained weights; from scratch use 'scaled' or 'warmup-cosine'")
    base = None if from_scratch else source_network(profile, source, progress=progress, device=device, key_only=True)
    key = model_key(profile, "scratch-n" if from_scratch else "finetune", target_domain, acceleration, cfg,
                    base=base,
                    n_slices=int(n_slices), seed=int(seed), strategy=None if from_scratch else strategy,
                    rehearsal_slices=int(rehearsal_slices), early_stopping=bool(early_stopping),
                    validation=validation)

    def run(checkpoint: Path) -> TrainResult:
        if validation == "within-n":
            train_set, val_set = within_n_split(profile, target_domain, n_slices, seed, acceleration)
        else:
            train_set = target_slices(profile, target_domain, n_slices, seed, acceleration)
            val_set = make_dataset(domain_splits(profile, target_domain, progress=progress)["val"], acceleration,
                                   profile, train=False) if early_stopping else None
        if rehearsal_slices:
            rehearsal = target_slices(profile, source, int(rehearsal_slices), seed, SOURCE_ACCELERATION)
            train_set = ConcatDataset([train_set, rehearsal])
        if from_scratch:
            return train(new_unet(profile, seed=seed), train_set, val_set, cfg, checkpoint_path=checkpoint)
        model, _ = source_network(profile, source, progress=progress, device=device)
        return fine_tune(model, train_set, val_set, cfg, strategy=strategy, checkpoint_path=checkpoint)

    tag = "scratch" if from_scratch else strategy + (f"+rehearsal{int(rehearsal_slices)}" if rehearsal_slices else "")
    tag += "" if early_stopping else f"-no-es{cfg.max_steps}"
    tag += "" if validation == "target-split" else f"-{validation}"
    if recipe != "baseline":   # a recipe that leaves this run as the baseline's shares its cache entry
        same, _ = recipe_config(profile, n_slices + int(rehearsal_slices), seed, "baseline", from_scratch=from_scratch,
                                progress=progress, device=device, early_stopping=validates, overrides=overrides)
        tag += "" if (same == cfg and recipe_strategy in (None, strategy)) else f"-{recipe}"
    tag += "" if from_scratch or source == SOURCE_DOMAIN else f"-from-{source}"
    tag += "" if lr is None else f"-lr{float(lr):g}"
    name = f"{tag}-{target_domain}-R{acceleration:g}-N{n_slices}-s{seed}-{profile.name}"
    return cached_model(name, key, run, {"domain": target_domain, "acceleration": acceleration,
                                          "n_slices": n_slices, "seed": seed, "strategy": tag})


def scratch_full(
    profile: Profile | str,
    target_domain: str,
    acceleration: float = 4,
    progress: bool = True,
    device: str = "auto",
    seed: int = 0,
) -> tuple[Unet, dict]:
    """A U-Net trained from scratch on the whole training split of ``target_domain``, cached:
    ``(model, info)`` as :func:`pretrained_unet` returns (``seed`` as there)."""
    profile = get_profile(profile)
    files = domain_splits(profile, target_domain, progress=progress)["train"]
    return _trained_from_scratch(profile, target_domain, acceleration, files,
                                 scratch_config(profile, progress, device, seed), "scratch-full", {})


def _trained_from_scratch(profile: Profile, domain: str, acceleration: float, train_files: Sequence[Path],
                          cfg: TrainConfig, what: str, parts: dict) -> tuple[Unet, dict]:
    """A fresh U-Net (initialisation seed ``cfg.seed``) trained on ``train_files`` with ``cfg``, validated
    on the domain's validation split, cached as ``<what>-<domain>-R<acceleration>-<profile>[-s<seed>]``."""
    key = model_key(profile, what, domain, acceleration, cfg, **parts)

    def run(checkpoint: Path) -> TrainResult:
        val_files = domain_splits(profile, domain, progress=False)["val"]
        train_set = make_dataset(train_files, acceleration, profile, train=True)
        val_set = make_dataset(val_files, acceleration, profile, train=False)
        return train(new_unet(profile, seed=cfg.seed), train_set, val_set, cfg, checkpoint_path=checkpoint)

    n_train = len(train_files) * profile.slices_per_subject
    name = f"{what}-{domain}-R{acceleration:g}-{profile.name}" + (f"-s{cfg.seed}" if cfg.seed else "")
    return cached_model(name, key, run,
                         {"domain": domain, "acceleration": acceleration, "num_train_slices": n_train})


def _fixed_set(profile: Profile, domain: str, acceleration: float, split: str, with_kspace: bool,
               progress: bool = False) -> data.SliceDataset:
    """``domain``'s ``split`` with fixed masks, memoised: every method is scored on the same inputs."""
    files = domain_splits(profile, domain, progress=progress)[split]
    key = ("dataset", domain, float(acceleration), split, with_kspace, profile.name,
           json.dumps(_data_key(profile, domain), sort_keys=True, default=str))
    if key not in _memo():
        _memo()[key] = make_dataset(files, acceleration, profile, train=False, with_kspace=with_kspace)
    return _memo()[key]


def evaluate_on(
    profile: Profile | str,
    reconstruct: torch.nn.Module | str,
    domain: str,
    acceleration: float = 4,
    split: str = "test",
    examples: Sequence[int] = (0,),
    name: str | None = None,
    progress: bool = False,
    device: str = "auto",
    max_slices: int | None = None,
    maps_method: str = "scanner",
) -> EvalResult:
    """Score a model, ``"zero-filled"`` or ``"cg-sense"`` on ``domain``'s ``split`` at ``acceleration``.

    All methods see the same fixed masks, so results on one (domain, acceleration, split) pair
    can be compared slice by slice (:func:`mrtl_core.stats.paired_difference`). CG-SENSE takes its
    coil maps from the acquired ACS lines, as a scanner would (``maps_method="scanner"``);
    ``maps_method="true"`` uses the simulator's true maps, an oracle named ``"cg-sense (true maps)"``.
    """
    profile = get_profile(profile)
    with_kspace = isinstance(reconstruct, str) and reconstruct == "cg-sense"
    dataset = _fixed_set(profile, domain, acceleration, split, with_kspace, progress=progress)
    return evaluate(reconstruct, dataset, batch_size=profile.batch_size, device=device, examples=examples,
                    cg_iters=profile.cg_iters, max_slices=max_slices, progress=progress, name=name,
                    maps_method=maps_method)


def native_train_files(profile: Profile | str, domain: str, progress: bool = True) -> list[Path]:
    """Training files for :func:`native_unet`: ``source_train_subjects`` subjects of ``domain``.

    The target's own training split first, then further subjects simulated after the ones the
    splits use (subject indices past train + val + test), so validation and test subjects are never
    trained on and the test set is the one every other method is scored on.
    """
    profile = get_profile(profile)
    splits = domain_splits(profile, domain, progress=progress)
    wanted = int(profile.source_train_subjects)
    if len(splits["train"]) >= wanted:
        return list(splits["train"][:wanted])
    counts = _split_counts(profile, domain)
    used = sum(counts.values())
    more = domains.domain_files(domain, used + wanted - len(splits["train"]), profile.slices_per_subject,
                                profile.image_size, seed=profile.data_seed, progress=progress)
    held_out = {data.patient_id(p) for k in ("val", "test") for p in splits[k]}
    extra = [p for p in more[used:] if data.patient_id(p) not in held_out]
    return list(splits["train"]) + extra


def source_network(profile: Profile | str, source: str = SOURCE_DOMAIN, progress: bool = True, device: str = "auto",
                   key_only: bool = False) -> tuple[Unet, dict] | str:
    """The network that fine-tuning starts from: :func:`pretrained_unet` for the book's source, else
    ``source``'s :func:`native_unet` at R = 4 (the same recipe on that domain). ``key_only=True`` returns
    the hash of its cache key instead (what a fine-tuned model's key names as its base) without
    training it; the book's network keeps the base hash it always had."""
    profile = get_profile(profile)
    if source == SOURCE_DOMAIN:
        return cache.config_hash(_pretrain_key(profile)) if key_only else pretrained_unet(profile, progress, device)
    if key_only:
        files = native_train_files(profile, source, progress=progress)
        return cache.config_hash(model_key(profile, "native", source, SOURCE_ACCELERATION,
                                           pretrain_config(profile, progress=False), **_native_parts(files)))
    return native_unet(profile, source, SOURCE_ACCELERATION, progress=progress, device=device)


def _native_parts(files: Sequence[Path]) -> dict:
    """What a native network's key holds besides its training: the subjects it trained on."""
    return {"train_subjects": sorted(data.patient_id(p) for p in files)}


def native_unet(
    profile: Profile | str,
    domain: str,
    acceleration: float = 4,
    progress: bool = True,
    device: str = "auto",
    seed: int = 0,
) -> tuple[Unet, dict]:
    """A U-Net trained for the target exactly as the pre-trained one was for the source, cached:
    ``(model, info)`` as :func:`pretrained_unet` returns (``seed`` as there: the twin of the
    pre-trained network of the same seed).

    Same architecture, initialisation seed, schedule (:func:`pretrain_config`) and number of
    training subjects (``source_train_subjects``, see :func:`native_train_files`), validated on the
    target's validation split. On the target's test set, ``pre-trained - native`` is the cost of the
    shift itself; for the source domain at R = 4 it would be the pre-trained network.
    """
    profile = get_profile(profile)
    files = native_train_files(profile, domain, progress=progress)
    return _trained_from_scratch(profile, domain, acceleration, files, pretrain_config(profile, progress, device, seed),
                                 "native", _native_parts(files))


# --------------------------------------------------------------------------------------------
# U-Net followed by a data-consistency step
# --------------------------------------------------------------------------------------------
def unet_dc_image(model: torch.nn.Module, sample: data.UnetSample, lam: float, max_iter: int = 30,
                  cg_iters: int = 30, maps_method: str = "scanner") -> torch.Tensor:
    """The U-Net's magnitude made consistent with the sample's measured k-space: ``(H, W)`` float64.

    1. The network's output, un-normalised, gives the magnitude on the cropped ``(H, W)`` grid.
    2. CG-SENSE (``cg_iters``) on the masked k-space gives a complex image on the full grid
       (readout oversampled); its phase, and its content outside the crop, complete the estimate
       ``x_ref = |U-Net| exp(i angle(x_cg))``.
    3. :func:`mrtl_core.sense.data_consistency` solves ``(A^H A + lam I) x = A^H y + lam x_ref``.

    The sample needs ``masked_kspace``, ``mask`` (``with_kspace=True``); the coil maps are the
    scanner's, from its calibration scan (:func:`mrtl_core.evaluate.sample_maps`; ``maps_method="true"``
    for the oracle).
    """
    from . import sense
    from .evaluate import sample_maps

    if sample.masked_kspace is None:
        raise ValueError("unet_dc_image needs a sample with k-space (dataset built with with_kspace=True)")
    y = torch.as_tensor(sample.masked_kspace)
    mask = torch.as_tensor(sample.mask).bool()
    maps = sample_maps(sample, maps_method=maps_method)
    dev = next(model.parameters()).device
    with torch.no_grad():
        out = model.eval()(torch.as_tensor(sample.image)[None].to(dev)).float().cpu()[0, 0]
    magnitude = data.unnormalize(out, sample.mean, sample.std).clamp_min(0)
    x_cg = sense.cg_sense(y, maps, mask, max_iter=cg_iters)
    shape = tuple(magnitude.shape)
    x_ref = x_cg.clone()
    crop = data.center_crop(x_cg, shape)
    # a view: writing into it writes the U-Net's magnitude into the centre of x_ref
    data.center_crop(x_ref, shape)[...] = (magnitude * torch.exp(1j * torch.angle(crop.to(torch.complex128)))).to(x_cg.dtype)
    x = sense.data_consistency(x_ref, y, maps, mask, lam=lam, max_iter=max_iter)
    return data.center_crop(x, shape).abs().double()


def evaluate_with_dc(
    profile: Profile | str,
    model: torch.nn.Module,
    domain: str,
    acceleration: float = 4,
    lam: float = 0.05,
    max_iter: int = 30,
    split: str = "test",
    examples: Sequence[int] = (0,),
    name: str | None = None,
    max_slices: int | None = None,
) -> EvalResult:
    """Score ``model`` + data consistency (:func:`unet_dc_image`) like :func:`evaluate_on`.

    Same fixed masks and slices as :func:`evaluate_on`, so results pair slice by slice.
    """
    profile = get_profile(profile)
    dataset = _fixed_set(profile, domain, acceleration, split, with_kspace=True)
    model = model.cpu().eval()

    def reconstruct(sample: data.UnetSample) -> torch.Tensor:
        return unet_dc_image(model, sample, lam=lam, max_iter=max_iter, cg_iters=profile.cg_iters)

    return evaluate(reconstruct, dataset, batch_size=profile.batch_size, device="cpu", examples=examples,
                    max_slices=max_slices, name=name or f"U-Net + DC (lam={lam:g})")
