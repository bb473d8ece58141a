"""Fine-tuning recipes measured: which one closes the gap to the equal-data twin, at which N.

    python benchmarks/finetune_recipes.py --profile standard --target knee-1.5T --ns 5 50 --seeds 0 1 2
    python benchmarks/finetune_recipes.py --profile standard --target brain-1.5T --acceleration 8
    python benchmarks/finetune_recipes.py --profile ci --ns 1 4              # a minute: every path once
    python benchmarks/finetune_recipes.py --profile standard --report        # the table of a saved run

Chapter 8's records show the book's fine-tuning ("baseline": 70 steps at a constant rate, early
stopping on the target's validation split) ending at its step cap at every N >= 5, so its numbers
measure the budget rather than the method. Here each recipe of ``mrtl_core.experiment.RECIPES``
fine-tunes the pre-trained U-Net on N target slices, for every seed, and is scored on the target's
test split beside the pre-trained network and its equal-data twin (``experiment.native_unet``):

* ``share closed`` = (recipe - pre-trained) / (twin - pre-trained) in foreground SSIM, the mean over
  seeds with its seed range; the goal of issue 13 is >= 80 % at N <= 10;
* ``vs baseline``: the paired difference to the baseline of the same seed and N, averaged over
  seeds, 95 % interval over test subjects (``grid.paired``, the book's rule);
* ``at cap``: how many of the seeds' runs had their best validation round at the last one, the
  symptom of a budget too small.

The recipes' settings were fixed from the literature before this ran (``experiment.RECIPES``
documents each), not tuned on these test sets. Prediction, before the measurement: a budget that
scales with N helps most at N = 50, where the baseline's cap is under 6 epochs, and little at N <= 5,
where 70 steps are already 35+ epochs; L2-SP and lp-ft protect what pre-training learnt, so they
should help most at small N, where over-fitting is the risk.

``--source DOMAIN`` fine-tunes another domain's network by the pre-training recipe instead of the
book's (``experiment.source_network``): ``--source brain-1.5T-clinical --target brain-3T-clinical``
adapts the clinical 1.5 T site's network to the 3 T site (issue 14), with the 3 T site's own network
as the equal-data twin. Prediction for it, before its first run: the gap there (-0.196 foreground SSIM,
``clinical_site.py``) is between R = 8's (0.16) and the knee's (0.36), and the sites differ in noise,
scale and contrast rather than in what is sampled, so the shares closed follow the knee's: the
baseline about 55-65 % at N <= 10, flips about 70-80 %, and 85 % or more at N = 50.

``--scratch RECIPE`` adds scratch-on-N (issue 13: "the same budget rule with its own tuned learning
rate, so the comparison is fair"): a fresh U-Net trained on the same N slices with that recipe's budget
rule and augmentation, its learning rate chosen once per target among ``--scratch-lrs`` by the best
*validation* score (the target's validation split, never the test set) of the run at N =
``--tune-n``, seed 0; rows ``scratch-<recipe>``. Prediction, before the first run (knee, flips
budget): scratch-on-N closes far less of the gap than fine-tuning at small N (under 20 % at N = 1,
about 40 % at N = 5, 50 % at N = 10) and approaches it at N = 50 (70-80 %, the full-split scratch
network's 82 % on 120 slices being the ceiling); fine-tuning with flips stays clearly better at every
N <= 20 and within about 0.03 at N = 50.

``--lr LR`` fine-tunes at ``LR`` instead of the profile's ``finetune_lr`` (record ``...-lr<LR>.json``): the
question scratch-on-N's tuned rate raises, whether fine-tuning's own rate holds it back.

``--finetune-lrs LR ...`` chooses each recipe's fine-tuning rate the way scratch-on-N's is chosen: the best
validation score at N = ``--tune-n``, seed 0, among the rates given (record ``...-lrtuned.json``). Prediction,
before the first run (knee and R = 8, flips): the chosen rate is above the profile's 2e-4, near the 1e-3
that scratch-on-N chose, and flips at it closes >= 80 % of the knee's gap at N = 10 and about 80 % of
R = 8's; at R = 8, where the pre-trained network already knows the anatomy, the gain over 2e-4 is smaller.

``--validation within-n`` early-stops on part of the N slices themselves (issue 13: "N target images"
means N labelled slices, validation included; ``experiment.within_n_split``).

Results go to ``benchmarks/results/finetune-recipes-<profile>-<target>-R<acceleration>.json`` after
every evaluation (atomically); a rerun loads cached networks and skips recorded entries.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import experiment as ex, grid  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.profiles import get_profile  # noqa: E402
from mrtl_core.simulate import DOMAINS  # noqa: E402
from mrtl_core.stats import Thresholds, compare_sentence, fmt_ci, interval_basis  # noqa: E402

from experiment import _record  # noqa: E402  (the grid's entry format: per-slice scores and subjects)
from machine import cpu_model  # noqa: E402

METRIC = "ssim_fg"


def _key(method: str, n: int | None = None, seed: int | None = None) -> str:
    return method if n is None else f"{method} | N={n} | seed={seed}"


def _at_cap(info: dict) -> bool:
    """Whether the run's best validation round was its last (and it did not stop early)."""
    rows = [r for r in info.get("history", []) if r.get("phase", "tune") == "tune"]
    return bool(rows) and not info.get("stopped_early") and info.get("best_epoch") == max(r["epoch"] for r in rows)


def choose_lr(lrs: list[float], train_at, label: str = "", started: float | None = None) -> dict:
    """The learning rate among ``lrs`` whose run (``train_at(lr)``, a training run's info) has the best
    validation score (``info["best_value"]``, higher is better; a tie goes to the first rate given):
    ``{"validation_by_lr": {"<lr>": value, ...}, "lr": chosen}``. Never the test set."""
    if not lrs:
        raise ValueError("no learning rates to choose among")
    values = {}
    for lr in lrs:
        value = train_at(lr).get("best_value")
        if value is None or not math.isfinite(value):
            raise ValueError(f"{label or 'the run'} at lr {lr:g} has no finite validation score ({value!r})")
        values[f"{lr:g}"] = float(value)
        if label:
            elapsed = f" ({time.perf_counter() - started:.0f} s)" if started is not None else ""
            print(f"{label}, lr {lr:g}: best validation {value:.4f}{elapsed}", flush=True)
    best = max(values, key=lambda k: values[k])
    return {"validation_by_lr": values, "lr": float(best)}


def _lr_or_default(lr: float, profile) -> float | None:
    """None for the profile's own fine-tuning rate, so that run keeps the cache entry it has without ``lr``."""
    return None if lr == profile.finetune_lr else lr


def run(args: argparse.Namespace, out: Path) -> dict:
    profile = get_profile(args.profile)
    results = json.loads(out.read_text()) if out.is_file() else {}
    recipes = {**results.get("_meta", {}).get("recipes", {}), **{r: ex.RECIPES[r] for r in args.recipes}}  # a rerun adds
    results["_meta"] = {**results.get("_meta", {}),   # a rerun that adds runs keeps the rates it chose
                        "profile": profile.to_dict(), "target": args.target, "acceleration": args.acceleration,
                        "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
                        "threads": torch.get_num_threads(), "recipes": recipes, "validation": args.validation,
                        # only another network than the book's pre-trained one is named (grid.recipe_sentence)
                        "source": None if args.source == ex.SOURCE_DOMAIN else args.source,
                        "finetune_lr": None if args.finetune_lrs else args.lr if args.lr is not None else profile.finetune_lr,
                        "peers": {r: p for r, p in ex.RECIPE_PEERS.items() if r in recipes}}
    started = time.perf_counter()

    def save() -> None:
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1)))

    def score(key: str, model, extra: dict) -> None:
        if key in results:
            return
        res = ex.evaluate_on(profile, model, args.target, args.acceleration, name=key)
        results[key] = _record(res, extra)
        save()
        print(f"{key}: SSIM fg {results[key]['summary'][METRIC]['mean']:.4f}  ({time.perf_counter() - started:.0f} s)",
              flush=True)

    pre, _ = ex.source_network(profile, args.source, progress=args.progress)
    score(_key("pre-trained"), pre, {"method": "pre-trained"})
    twin, info = ex.native_unet(profile, args.target, args.acceleration, progress=args.progress)
    score(_key("twin"), twin, {"method": "twin", "num_train_slices": info.get("num_train_slices")})
    if args.scratch:
        tuning = results["_meta"].get("scratch") or {}
        if tuning.get("recipe") != args.scratch or tuning.get("tune_n") != args.tune_n:
            # the learning rate of scratch-on-N, chosen by validation (not test) at one N, seed 0
            tuning = {"recipe": args.scratch, **choose_lr(
                args.scratch_lrs, lambda lr: ex.finetune_run(
                    profile, args.target, args.tune_n, 0, acceleration=args.acceleration, recipe=args.scratch,
                    from_scratch=True, lr=lr, progress=args.progress, validation=args.validation)[1],
                f"scratch-{args.scratch} at N = {args.tune_n}", started)}
            tuning.update(tune_n=args.tune_n, monitor=profile.finetune_monitor)
            results["_meta"]["scratch"] = tuning
            save()
        results["_meta"]["scratch"] = tuning
    lrs = {recipe: args.lr for recipe in args.recipes}
    if args.finetune_lrs:
        # each recipe's fine-tuning rate, chosen like scratch-on-N's: by validation (not test) at one N, seed 0
        chosen = results["_meta"].get("finetune_tuning") or {}
        for recipe in args.recipes:
            if chosen.get(recipe, {}).get("tune_n") == args.tune_n:
                continue
            chosen[recipe] = {**choose_lr(
                args.finetune_lrs, lambda lr: ex.finetune_run(
                    profile, args.target, args.tune_n, 0, acceleration=args.acceleration, recipe=recipe,
                    progress=args.progress, validation=args.validation, source=args.source,
                    lr=_lr_or_default(lr, profile))[1],
                f"{recipe} at N = {args.tune_n}", started), "tune_n": args.tune_n, "monitor": profile.finetune_monitor}
            results["_meta"]["finetune_tuning"] = chosen
            save()
        results["_meta"]["finetune_tuning"] = chosen
        lrs = {recipe: _lr_or_default(chosen[recipe]["lr"], profile) for recipe in args.recipes}
    for n in args.ns:
        for seed in args.seeds:
            if args.scratch:
                key = _key(f"scratch-{args.scratch}", n, seed)
                if key not in results:
                    model, info = ex.finetune_run(profile, args.target, n, seed, acceleration=args.acceleration,
                                                  recipe=args.scratch, from_scratch=True, lr=tuning["lr"],
                                                  progress=args.progress, validation=args.validation)
                    score(key, model, {"method": f"scratch-{args.scratch}", "n": n, "seed": seed,
                                       "steps": info.get("steps"), "best_epoch": info.get("best_epoch"),
                                       "at_cap": _at_cap(info), "train_seconds": info.get("seconds"),
                                       "name": info.get("name"), "lr": tuning["lr"]})
            for recipe in args.recipes:
                key = _key(recipe, n, seed)
                if key in results:
                    continue
                model, info = ex.finetune_run(profile, args.target, n, seed, acceleration=args.acceleration,
                                              recipe=recipe, progress=args.progress, validation=args.validation,
                                              source=args.source, lr=lrs[recipe])
                score(key, model, {"method": recipe, "n": n, "seed": seed, "steps": info.get("steps"),
                                   "best_epoch": info.get("best_epoch"), "at_cap": _at_cap(info),
                                   "train_seconds": info.get("seconds"), "name": info.get("name"),
                                   "lr": lrs[recipe] if lrs[recipe] is not None else profile.finetune_lr})
    return results


def report(results: dict) -> str:
    meta = results["_meta"]
    pre, twin = results[_key("pre-trained")], results[_key("twin")]
    p, t = pre["summary"][METRIC]["mean"], twin["summary"][METRIC]["mean"]
    base = f"the {meta['source']} network" if meta.get("source") else "pre-trained"
    lines = [f"{meta['target']} at R = {meta['acceleration']:g}, profile {meta['profile']['name']}: {base} "
             f"{p:.4f}, equal-data twin {t:.4f} (foreground SSIM; gap {t - p:+.4f}); "
             f"intervals over {interval_basis(grid.slice_subjects(pre))}", "",
             "| recipe | N | seeds | SSIM fg | share of the gap closed [seed range] | vs baseline [95 % CI] | at cap | steps |",
             "|---|---|---|---|---|---|---|---|"]
    for r in grid.recipe_rows(results, METRIC):
        lo, hi = r["share_range"]
        lines.append(f"| {r['recipe']} | {r['N']} | {r['seeds']} | {r['ssim_fg']:.4f} | {100 * r['share_closed']:.0f} % "
                     f"[{100 * lo:.0f}, {100 * hi:.0f}] | {fmt_ci(r.get('vs_baseline'), 4) if r.get('vs_baseline') else '–'} | "
                     f"{r['at_cap']}/{r['seeds']} | {', '.join(str(s) for s in r['steps'])} |")
    for r in (r for r in grid.recipe_rows(results, METRIC) if r.get("vs_peer")):
        lines.append(f"{r['recipe']} − {r['peer']} (one setting apart: RECIPE_PEERS) at N = {r['N']}: "
                     + compare_sentence(r["vs_peer"], r["recipe"], r["peer"], Thresholds()))
    if meta.get("scratch"):
        sc = meta["scratch"]
        lines.append(f"scratch-{sc['recipe']}: learning rate {sc['lr']:g}, chosen at N = {sc['tune_n']} (seed 0) by the "
                     "best validation score among " + ", ".join(f"{lr} ({v:.4f})" for lr, v in sc["validation_by_lr"].items()))
    for recipe, ch in (meta.get("finetune_tuning") or {}).items():
        lines.append(f"{recipe}: fine-tuning learning rate {ch['lr']:g}, chosen at N = {ch['tune_n']} (seed 0) by the best "
                     "validation score among " + ", ".join(f"{lr} ({v:.4f})" for lr, v in ch["validation_by_lr"].items()))
    lines += ["", f"{meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--target", default="knee-1.5T", help="a target domain (brain-1.5T with --acceleration 8: the R shift)")
    parser.add_argument("--acceleration", type=float, default=4.0)
    parser.add_argument("--source", default=ex.SOURCE_DOMAIN, choices=list(DOMAINS),
                        help=f"the network fine-tuned: {ex.SOURCE_DOMAIN}'s pre-trained U-Net (default) or another "
                             "domain's network by the pre-training recipe (experiment.source_network)")
    parser.add_argument("--ns", type=int, nargs="+", default=None, help="default: the profile's finetune_ns")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=[r for r in ex.RECIPES if r != "long"], choices=list(ex.RECIPES),
                        help="default: every recipe; 'long' (the baseline with LONG_BUDGET times its steps, a "
                             "diagnostic of the budget) only when named")
    parser.add_argument("--scratch", default=None, choices=[r for r in ex.RECIPES if r not in ("l2sp", "lp-ft", "layer-lr")],
                        help="also scratch-on-N with this recipe's budget rule and a learning rate tuned on validation")
    parser.add_argument("--scratch-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2],
                        help="the learning rates --scratch chooses among")
    parser.add_argument("--tune-n", type=int, default=10, help="the N at which --scratch chooses its learning rate")
    parser.add_argument("--lr", type=float, default=None,
                        help="the fine-tuning learning rate instead of the profile's finetune_lr (a '-lr<LR>' record)")
    parser.add_argument("--finetune-lrs", type=float, nargs="+", default=None,
                        help="choose each recipe's fine-tuning learning rate among these by its validation score at "
                             "--tune-n, seed 0 (a '-lrtuned' record)")
    parser.add_argument("--validation", default="target-split", choices=ex.VALIDATION_CHOICES,
                        help="early stopping on the target's validation split (the book's) or within the N slices")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--progress", action="store_true", help="progress bars of the training runs")
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    if args.target == args.source and args.acceleration == ex.SOURCE_ACCELERATION:
        parser.error(f"{args.target} at R = {args.acceleration:g} is the source itself: give another target or --acceleration")
    if "baseline" not in args.recipes:
        args.recipes = ["baseline", *args.recipes]   # every comparison is against it
    args.ns = args.ns or list(get_profile(args.profile).finetune_ns)
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    if args.finetune_lrs is not None and (args.lr is not None or not all(lr > 0 for lr in args.finetune_lrs)):
        parser.error(f"--finetune-lrs takes rates > 0 and replaces --lr, got {args.finetune_lrs} with --lr {args.lr}")
    tail = ("" if args.validation == "target-split" else f"-{args.validation}") + \
        ("" if args.source == ex.SOURCE_DOMAIN else f"-from-{args.source}") + \
        ("" if args.lr is None else f"-lr{args.lr:g}") + ("" if args.finetune_lrs is None else "-lrtuned")
    out = args.out or ROOT / "benchmarks" / "results" / f"finetune-recipes-{args.profile}-{args.target}-R{args.acceleration:g}{tail}.json"
    results = json.loads(out.read_text()) if args.report else run(args, out)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
