"""The paper's whole experiment grid, resumable: every finished run is appended to a JSON file.

    python benchmarks/experiment.py --profile standard            # hours on 2 CPU cores
    python benchmarks/experiment.py --profile ci                  # minutes: every code path once
    python benchmarks/experiment.py --profile standard --shifts brain-3T knee-1.5T --seeds 0 1 2
    python benchmarks/experiment.py --profile standard --baselines-only   # zero-filling, CG-SENSE: minutes

Grid (issue 5, item 4):
  * the pre-trained U-Net (brain-1.5T, R = 4) on its own test set and on every shift (brain-3T R4,
    knee-1.5T R4, brain-1.5T at each other R of the profile), beside zero-filling and CG-SENSE;
  * per shift: end-to-end fine-tuning on N target slices (N = 1, 5, 10, 20, 50, capped at the
    target training set), a U-Net from scratch on the same N, and one from scratch on the whole
    target training set; several seeds (the N slices and the scratch initialisation change with
    the seed), so every number has a confidence interval over seeds;
  * forgetting: every fine-tuned model back on the source test set (brain-1.5T, R = 4);
  * per shift, the pre-trained network's twin for the target (``experiment.native_unet``: trained
    from scratch on as many target subjects as the source had, the same schedule), so that
    ``pre-trained - native`` on the target test slices is the generalisation gap at equal data
    (``--no-native`` skips it: one pre-training's cost per shift).

Trained models are cached (``mrtl_core.experiment``), and each evaluation is appended to the JSON
as soon as it is done, so an interrupted run picks up where it stopped. At the end (or with
``--report`` alone) it prints markdown tables: SSIM (foreground SSIM in parentheses), mean over
seeds with the 95% t-interval of the mean.
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

DEFAULT_NS = (1, 5, 10, 20, 50)


def _load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {}


def _save(path: Path, results: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1)))


def _record(result, extra: dict) -> dict:
    summary = result.summary()
    files = [str(f) for f, _ in result.slices]            # a file is one subject (one volume, as in fastMRI)
    names = list(dict.fromkeys(files))
    return {**extra, "n_slices_eval": len(result.slices), "seconds": result.seconds,
            "summary": {k: {kk: vv for kk, vv in v.items()} for k, v in summary.items()},
            "per_slice": {k: result.metrics[k].tolist() for k in ("ssim", "psnr", "ssim_fg", "psnr_fg")},
            "subjects": names, "slice_subject": [names.index(f) for f in files]}


def run_grid(args: argparse.Namespace) -> dict:
    profile = get_profile(args.profile)
    out = Path(args.out)
    results = _load(out)
    results.setdefault("_meta", {}).update({"profile": profile.to_dict(), "torch": torch.__version__,
                                           "python": platform.python_version(), "threads": torch.get_num_threads()})
    shifts = [s for s in ex.shifts(profile) if not args.shifts or s["domain"] in args.shifts or s["name"] in args.shifts]
    source = {"name": f"{ex.SOURCE_DOMAIN} R{ex.SOURCE_ACCELERATION}", "domain": ex.SOURCE_DOMAIN,
              "acceleration": ex.SOURCE_ACCELERATION, "kind": "source"}
    seeds = args.seeds if args.seeds is not None else list(profile.seeds)
    quiet = not args.progress

    # An entry is named by its fields (grid's one schema): grid.entry_key writes the JSON key from them
    def done(**fields) -> bool:
        return grid.entry_key(**fields) in results

    def store(fields: dict, result, **extra) -> None:
        key = grid.entry_key(**fields)
        results[key] = _record(result, {**{k: v for k, v in fields.items() if v is not None}, **extra})
        _save(out, results)
        s = results[key]["summary"]
        print(f"{key}: SSIM {s['ssim']['mean']:.4f}  SSIM_fg {s['ssim_fg']['mean']:.4f}  "
              f"PSNR {s['psnr']['mean']:.2f}  ({time.perf_counter() - t_start:.0f} s)", flush=True)

    def store_baselines(target: dict) -> None:
        d, r, name = target["domain"], target["acceleration"], target["name"]
        for method in ("zero-filled", "cg-sense"):
            if not done(target=name, method=method):
                store(dict(target=name, method=method), ex.evaluate_on(profile, method, d, r, progress=not quiet))
        if not done(target=name, method="cg-sense-true-maps"):   # the oracle: maps no scanner has
            store(dict(target=name, method="cg-sense-true-maps"),
                  ex.evaluate_on(profile, "cg-sense", d, r, progress=not quiet, maps_method="true"))

    t_start = time.perf_counter()
    if args.baselines_only:   # the classical methods train nothing: no pre-training either
        for target in [source, *shifts]:
            store_baselines(target)
        return results
    pre, info = ex.pretrained_unet(profile, progress=args.progress)
    results["_meta"]["pretrain_seconds"] = info.get("seconds")
    results["_meta"]["pretrain_best_epoch"] = info.get("best_epoch")
    results["_meta"]["pretrain_precision"] = info.get("precision")  # None: cached before it was recorded
    for target in [source, *shifts]:
        d, r, name = target["domain"], target["acceleration"], target["name"]
        store_baselines(target)
        if not done(target=name, method="pretrained"):
            store(dict(target=name, method="pretrained"), ex.evaluate_on(profile, pre, d, r))

    for target in shifts:
        d, r, name = target["domain"], target["acceleration"], target["name"]
        n_avail = len(ex.domain_splits(profile, d, progress=False)["train"]) * profile.slices_per_subject
        ns = sorted({min(n, n_avail) for n in (args.ns or DEFAULT_NS)})
        if not done(target=name, method="scratch-full") and not args.no_scratch:
            model, info = ex.scratch_full(profile, d, r, progress=args.progress)
            store(dict(target=name, method="scratch-full"), ex.evaluate_on(profile, model, d, r),
                  train_seconds=info.get("seconds"), num_train_slices=n_avail)
        if not done(target=name, method="native") and not args.no_native:
            model, info = ex.native_unet(profile, d, r, progress=args.progress)
            store(dict(target=name, method="native"), ex.evaluate_on(profile, model, d, r),
                  train_seconds=info.get("seconds"), num_train_slices=info.get("num_train_slices"))
        for n in ns:
            for seed in seeds:
                for scratch in ([False] if args.no_scratch else [False, True]):
                    run = dict(target=name, method="scratch" if scratch else "fine-tuned", n=n, seed=seed)
                    back = dict(target=name, method="forgetting", n=n, seed=seed)
                    if done(**run) and (scratch or done(**back)):
                        continue
                    model, info = ex.finetune_run(profile, d, n, seed, acceleration=r, from_scratch=scratch,
                                                  progress=args.progress)
                    if not done(**run):
                        store(run, ex.evaluate_on(profile, model, d, r), train_seconds=info.get("seconds"),
                              steps=info.get("steps"), best_epoch=info.get("best_epoch"))
                    if not scratch and not done(**back):
                        store(back, ex.evaluate_on(profile, model, ex.SOURCE_DOMAIN, ex.SOURCE_ACCELERATION))
    if args.overfit_steps:
        # Whether a few slices, many steps and no validation split over-fit: the same
        # fine-tuning without early stopping, for a longer budget, at N = 5.
        for target in shifts:
            d, r, name = target["domain"], target["acceleration"], target["name"]
            for seed in seeds:
                run = dict(target=name, method="fine-tuned-no-early-stopping", n=5, seed=seed, budget=args.overfit_steps)
                if done(**run):
                    continue
                model, info = ex.finetune_run(profile, d, 5, seed, acceleration=r, early_stopping=False,
                                              max_steps=args.overfit_steps, progress=args.progress)
                store(run, ex.evaluate_on(profile, model, d, r), steps=info.get("steps"),
                      train_seconds=info.get("seconds"))
    results["_meta"]["seconds_this_run"] = time.perf_counter() - t_start
    _save(out, results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/experiment-<profile>.json)")
    parser.add_argument("--shifts", nargs="*", default=None, help="restrict to these shift domains or names")
    parser.add_argument("--ns", nargs="*", type=int, default=None, help=f"numbers of target slices (default {DEFAULT_NS})")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the profile's seeds")
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch baselines")
    parser.add_argument("--overfit-steps", type=int, default=None,
                        help="also fine-tune N=5 for this many steps without early stopping (over-fitting check)")
    parser.add_argument("--no-native", action="store_true", help="skip the equal-data target twins")
    parser.add_argument("--progress", action="store_true", help="progress bars for training")
    parser.add_argument("--report", action="store_true", help="only print the tables of an existing JSON")
    parser.add_argument("--baselines-only", action="store_true",
                        help="only zero-filling and CG-SENSE (scanner maps and the true-maps oracle): trains nothing")
    args = parser.parse_args(argv)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"experiment-{args.profile}.json")
    results = _load(Path(args.out)) if args.report else run_grid(args)
    print()
    print(grid.markdown_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
