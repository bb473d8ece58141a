"""Randomised pre-training against the single-protocol one: on the source, and on a contrast neither saw.

    python benchmarks/randomised_pretraining.py --profile standard   # ~15 min on 2 CPU cores (one training)
    python benchmarks/randomised_pretraining.py --profile ci          # a minute or two: every path once
    python benchmarks/randomised_pretraining.py --profile standard --epochs 36   # both pre-trainings twice as long
    python benchmarks/randomised_pretraining.py --profile standard --chans 32    # both U-Nets twice as wide

The book's pre-trained U-Net learnt one simulated protocol (axial T2 TSE, ``brain-1.5T``). On real
data of another contrast it would meet what it never saw. Here its equal-data twin is pre-trained on
``brain-mixed-1.5T`` (``experiment.native_unet``: the same recipe, architecture, initialisation and
number of subjects), whose subjects each draw a protocol (T1 SE, PD TSE, T2 TSE), an SNR, a receive
array and its shading (``simulate.Randomisation``). Both networks are scored at R = 4 on

* the source's own test split (``brain-1.5T``): the randomised network should be *no worse*,
  judged by equivalence within the book's minimum effect (``stats.equivalent``, TOST);
* ``brain-flair-1.5T``, FLAIR, a contrast neither pre-training contains: the randomised network
  should be *better* (a subject-level interval above zero).

Prediction, before this ran: equivalent on the source (its T2 subjects are a third of its data, but
the anatomy, the sampling and the aliasing are the same) and better on FLAIR, where the single-protocol
network has only ever seen bright CSF. Both are what issue 20 asks RESULTS.md to record.

``--epochs E`` pre-trains both networks for E epochs instead of the profile's (the learning rate still
decays for the last fifth): at the book's 18 both kept their last epoch, so the first record measured
two networks that had not finished learning. Such a run has its own networks and record
(``...-<profile>-epochs<E>.json``).

``--chans C`` makes both U-Nets C channels wide at the first level instead of the profile's (16 at
``standard``; parameters grow as C squared). At 36 epochs the randomised network had stopped improving
on its own validation set (best epoch 30 of 36) and still cost -0.030 on the source, so the cost is not
unfinished training; it is either capacity (one chans-16 U-Net sharing itself among three contrasts)
or data (a third as many T2 slices). Prediction, before the first ``--chans 32`` run: if capacity, the
source cost shrinks to within the minimum effect at twice the width; if data, it stays near -0.03.
We expect capacity to explain part of it: a cost of -0.01 to -0.02, the FLAIR gain unchanged or larger.
Such a run has its own networks and record (``...-<profile>-chans<C>.json``; both options combine).

Results go to ``benchmarks/results/randomised-pretraining-<profile>.json`` (the grid's entry format).
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
from machine import cpu_model, run_footer  # noqa: E402

RANDOMISED = "brain-mixed-1.5T"
HELD_OUT = "brain-flair-1.5T"
TESTS = {"source": ex.SOURCE_DOMAIN, "held-out contrast": HELD_OUT}
METRICS = ("ssim_fg", "ssim", "psnr")


def run(profile_name: str, out: Path, epochs: int | None = None, chans: int | None = None) -> dict:
    profile = get_profile(profile_name)
    if epochs is not None:   # both networks' schedule (pretrain_config), so their cache keys differ from the book's
        profile = profile.replace(pretrain_epochs=int(epochs))
    if chans is not None:    # both networks' width (in the model key too)
        profile = profile.replace(chans=int(chans))
    record = json.loads(out.read_text()) if out.is_file() else {}
    record["_meta"] = {"profile": profile.to_dict(), "torch": torch.__version__, "python": platform.python_version(),
                       "threads": torch.get_num_threads(), "cpu": cpu_model(), "acceleration": ex.SOURCE_ACCELERATION}
    t0 = time.perf_counter()
    single, info_single = ex.pretrained_unet(profile, progress=False)
    mixed, info_mixed = ex.native_unet(profile, RANDOMISED, ex.SOURCE_ACCELERATION, progress=False)
    for label, info in (("single-protocol", info_single), ("randomised", info_mixed)):
        record["_meta"][f"network {label}"] = {k: info.get(k) for k in ("seconds", "epochs", "best_epoch", "cached")}
    for test, domain in TESTS.items():
        for label, model in (("zero-filled", "zero-filled"), ("single-protocol", single), ("randomised", mixed)):
            key = f"{test} | {label}"
            if key in record:
                continue
            res = ex.evaluate_on(profile, model, domain, ex.SOURCE_ACCELERATION, name=label)
            record[key] = _record(res, {"test": test, "domain": domain, "method": label})
            atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
            print(f"{key}: SSIM fg {record[key]['summary']['ssim_fg']['mean']:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return record


def report(record: dict, thresholds: Thresholds = Thresholds()) -> str:
    lines = ["| test set | zero-filled | single-protocol | randomised |", "|---|---|---|---|"]
    for test in TESTS:
        cells = [record[f"{test} | {m}"]["summary"] for m in ("zero-filled", "single-protocol", "randomised")]
        lines.append(f"| {test} ({TESTS[test]}) | " + " | ".join(f"{c['ssim_fg']['mean']:.3f} ({c['psnr']['mean']:.2f} dB)"
                                                                  for c in cells) + " |")
    lines += ["", "Foreground SSIM (whole-image PSNR); randomised − single-protocol, paired, by the book's rule:", ""]
    for test in TESTS:
        a, b = record[f"{test} | randomised"], record[f"{test} | single-protocol"]
        d = grid.paired(a, b, thresholds.metric, over="auto")
        lines.append(f"* {test}: " + compare_sentence(d, "the randomised network", "the single-protocol one", thresholds)
                     + f" (over {interval_basis(grid.slice_subjects(a))})")
    meta = record["_meta"]
    lines += ["", run_footer(meta)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None,
                        help="pre-training epochs of both networks (default: the profile's pretrain_epochs)")
    parser.add_argument("--chans", type=int, default=None,
                        help="first-level channels of both U-Nets (default: the profile's chans)")
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.chans is not None and args.chans < 1:
        parser.error(f"--chans must be >= 1, got {args.chans}")
    suffix = (f"-epochs{args.epochs}" if args.epochs is not None else "") + \
        (f"-chans{args.chans}" if args.chans is not None else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"randomised-pretraining-{args.profile}{suffix}.json"
    record = json.loads(out.read_text()) if args.report else run(args.profile, out, args.epochs, args.chans)
    print()
    print(report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
