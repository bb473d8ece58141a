"""The anatomy shift on two knee phantoms, side by side: how much of the knee result was the phantom.

Reads two grid records of ``benchmarks/experiment.py`` (``--shifts knee-1.5T``), one run with the
current knee phantom and one with the previous one, both with the same pre-trained network (the
same brain data, cache and code: only ``mrtl_core/phantoms/knee.py`` differs), and prints per
phantom: zero-filled, CG-SENSE with the true coil maps (an oracle: the run on the previous phantom
has no other), pre-trained, equal-data twin and full-split scratch on the knee test set; the
pre-trained network's gap to its twin (paired, 95 % t-interval over test subjects); and the N-curve
of fine-tuning and training from scratch (means over seeds, with the share of the pre-trained-to-twin
gap that fine-tuning closes).

    python benchmarks/knee_compare.py benchmarks/results/experiment-standard.json \\
        benchmarks/results/knee-previous-standard.json
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mrtl_core import grid  # noqa: E402
from mrtl_core.stats import fmt_ci  # noqa: E402

KNEE = "knee-1.5T R4"


def _mean(results: dict, method: str, metric: str) -> float:
    e = grid.entry(results, KNEE, method)
    return float(e["summary"][metric]["mean"]) if e else math.nan


def rows(results: dict, label: str, metric: str = "ssim_fg") -> list[str]:
    sps = results["_meta"]["profile"]["slices_per_subject"]
    pre, twin = grid.entry(results, KNEE, "pretrained"), grid.entry(results, KNEE, "native")
    gap = grid.paired(pre, twin, metric, over="subjects", slices_per_subject=sps)
    digits = 2 if metric.startswith("psnr") else 3
    base = (f"| {label} | {_mean(results, 'zero-filled', metric):.{digits}f} | {_mean(results, 'cg-sense-true-maps', metric):.{digits}f} "
            f"| {_mean(results, 'pretrained', metric):.{digits}f} | {_mean(results, 'native', metric):.{digits}f} "
            f"| {_mean(results, 'scratch-full', metric):.{digits}f} | {fmt_ci(gap, digits)} | {grid.test_set(results, twin)} |")
    return [base]


def curve(results: dict, label: str, metric: str = "ssim_fg") -> list[str]:
    pre, twin = _mean(results, "pretrained", metric), _mean(results, "native", metric)
    out = []
    for n in grid.ns(results, KNEE):
        ft = grid.seed_summary(grid.seed_runs(results, KNEE, "fine-tuned", n), metric)
        sc = grid.seed_summary(grid.seed_runs(results, KNEE, "scratch", n), metric)
        closed = (ft["mean"] - pre) / (twin - pre) if ft and twin != pre else math.nan
        cell = lambda s: f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" if s else "–"
        out.append(f"| {label} | {n} | {cell(ft)} | {cell(sc)} | {100 * closed:.0f} % | {ft['n'] if ft else 0} |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("current", type=Path, help="grid with the current knee phantom")
    parser.add_argument("previous", type=Path, help="grid with the previous knee phantom")
    args = parser.parse_args(argv)
    runs = {"current knee": grid.load_grid(args.current), "previous knee": grid.load_grid(args.previous)}
    for metric in ("ssim_fg", "ssim", "psnr"):
        print(f"\nKnee-1.5T R4, {metric}: methods on the knee test set; pre-trained minus its equal-data twin, "
              "paired, 95 % t-interval over test subjects")
        print("| phantom | zero-filled | CG-SENSE (true maps) | pre-trained | twin | scratch (full split) | pre − twin [CI] | test set |")
        print("|---|---|---|---|---|---|---|---|")
        for label, results in runs.items():
            print("\n".join(rows(results, label, metric)))
    print("\nFine-tuning and training from scratch on N knee slices (foreground SSIM, mean [95 % CI] over seeds); "
          "gap closed = (fine-tuned − pre-trained) / (twin − pre-trained)")
    print("| phantom | N | fine-tuned | from scratch | gap closed | seeds |")
    print("|---|---|---|---|---|---|")
    for label, results in runs.items():
        print("\n".join(curve(results, label)))
    for label, results in runs.items():
        ov = grid.overfit_table(results)
        ov = ov[[str(i).startswith(KNEE) for i in ov.index]] if len(ov) else ov
        if len(ov):
            print(f"\n{label}: over-fitting check\n" + grid.markdown_table(ov))
    for label, results in runs.items():
        meta = results["_meta"]
        # a grid whose knee entries were re-run records that run's pre-training under "reruns"
        rerun = next((r for r in meta.get("reruns", []) if KNEE in r.get("targets", [])), None)
        if rerun:
            print(f"\n{label}: knee entries re-run; pre-training {rerun.get('pretrain_seconds') or 0:.0f} s, best epoch "
                  f"{rerun.get('pretrain_best_epoch')}, source fg SSIM {rerun['source_pretrained_rerun']['ssim_fg']:.4f}")
        else:
            print(f"\n{label}: pre-training {meta.get('pretrain_seconds') or 0:.0f} s, best epoch {meta.get('pretrain_best_epoch')}, "
                  f"source fg SSIM {grid.entry(results, 'brain-1.5T R4', 'pretrained')['summary']['ssim_fg']['mean']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
