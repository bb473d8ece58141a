"""Over-fitting told apart from drift: the no-early-stopping arm repeated on *source* slices.

    python benchmarks/source_control.py --profile standard              # ~5 min on 2 CPU cores
    python benchmarks/source_control.py --profile ci --seeds 0          # seconds: every path once
    python benchmarks/source_control.py --profile standard --report

The grid (``benchmarks/experiment.py --overfit-steps 300``) fine-tunes the pre-trained U-Net on N = 5
target slices for 300 steps with no validation split, and those runs lose 0.06-0.10 foreground SSIM
against the early-stopped runs of the same seeds. That loss has two readings: the network memorises
the five *target* slices, or the optimiser (Adam at the fine-tuning rate, many steps on one small
batch) drags the weights away from what pre-training found whatever the slices are. The control
runs both arms on five slices of the *source* (``brain-1.5T`` at R = 4, slices the network was
pre-trained on), scored on the source's test split beside the pre-trained network itself:

* ``fine-tuned`` (early stopping, the grid's recipe: it scores the start first and keeps it when no
  step helps) and ``fine-tuned-no-early-stopping`` (the grid's 300 steps, the last weights), one pair
  per seed, in the grid's entry schema, so ``grid.overfit_table`` reads the record as it reads the
  grid's;
* each arm minus the pre-trained network, averaged over seeds and paired over the test subjects
  (``grid.seed_averaged_difference``).

If the source arm without early stopping also loses, the loss is the optimiser fitting five slices,
whichever domain they come from; if it keeps the pre-trained score, the target arms' loss is their
five target slices being memorised.

Prediction, written before the first run: early stopping keeps the pre-trained network's score
(equivalent within the minimum effect); without it the source arm loses too, but less than the
target arms (about -0.02 to -0.05), because five slices of a domain the network already fits give
small gradients at first and the drift has to build up.

Results go to ``benchmarks/results/source-control-<profile>.json`` after every evaluation
(atomically); a rerun loads cached networks and skips recorded entries.
"""
from __future__ import annotations

import argparse
import json
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
from mrtl_core.stats import Thresholds, compare_sentence, interval_basis  # noqa: E402

from experiment import _record  # noqa: E402  (the grid's entry format: per-slice scores and subjects)
from machine import cpu_model  # noqa: E402

TARGET = f"{ex.SOURCE_DOMAIN} R{ex.SOURCE_ACCELERATION}"
N_SLICES = 5


def run(args: argparse.Namespace, out: Path) -> dict:
    profile = get_profile(args.profile)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["_meta"] = {"profile": profile.to_dict(), "torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "cpu": cpu_model(), "n": N_SLICES, "steps": args.steps}
    started = time.perf_counter()

    def store(fields: dict, model, **extra) -> None:
        key = grid.entry_key(**fields)
        if key in results:
            return
        res = ex.evaluate_on(profile, model, ex.SOURCE_DOMAIN, ex.SOURCE_ACCELERATION, name=key)
        results[key] = _record(res, {**{k: v for k, v in fields.items() if v is not None}, **extra})
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1)))
        print(f"{key}: SSIM fg {results[key]['summary']['ssim_fg']['mean']:.4f}  ({time.perf_counter() - started:.0f} s)",
              flush=True)

    pre, _ = ex.pretrained_unet(profile, progress=False)
    store(dict(target=TARGET, method="pretrained"), pre)
    for seed in args.seeds:
        for early_stopping in (True, False):
            method = "fine-tuned" if early_stopping else "fine-tuned-no-early-stopping"
            fields = dict(target=TARGET, method=method, n=N_SLICES, seed=seed, budget=None if early_stopping else args.steps)
            if grid.entry_key(**fields) in results:
                continue
            model, info = ex.finetune_run(profile, ex.SOURCE_DOMAIN, N_SLICES, seed, acceleration=ex.SOURCE_ACCELERATION,
                                          early_stopping=early_stopping,
                                          max_steps=None if early_stopping else args.steps, progress=False)
            store(fields, model, steps=info.get("steps"), best_epoch=info.get("best_epoch"),
                  train_seconds=info.get("seconds"))
    return results


def report(results: dict, thresholds: Thresholds = Thresholds()) -> str:
    meta, metric = results["_meta"], thresholds.metric
    pre = grid.entry(results, TARGET, "pretrained")
    lines = [f"{TARGET} (the source), N = {meta['n']} source slices, profile {meta['profile']['name']}; {metric}; "
             f"intervals over {interval_basis(grid.slice_subjects(pre))}", "",
             f"pre-trained network: {pre['summary'][metric]['mean']:.4f}", ""]
    table = grid.overfit_table(results, metric)
    lines.append(grid.markdown_table(table, digits=4) if len(table) else "(no pair of arms yet)")
    lines.append("")
    for method, label in (("fine-tuned", "early stopping"), ("fine-tuned-no-early-stopping", f"no early stopping, {meta['steps']} steps")):
        d = grid.seed_averaged_difference(results, TARGET, method, "pretrained", metric)
        if d is not None:
            lines.append(f"* {label}, seed-averaged, minus the pre-trained network: "
                         + compare_sentence(d, "the fine-tuned network", "the pre-trained one", thresholds))
    lines += ["", f"{meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="the no-early-stopping budget (the grid's --overfit-steps)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    if any(s < 0 for s in args.seeds) or args.steps < 1:
        parser.error(f"--seeds must be >= 0 and --steps >= 1, got {args.seeds} and {args.steps}")
    out = args.out or ROOT / "benchmarks" / "results" / f"source-control-{args.profile}.json"
    results = json.loads(out.read_text()) if args.report else run(args, out)
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
