"""``python -m mrtl_core evaluate``: score checkpoints, zero-filling and CG-SENSE on test slices.

    python -m mrtl_core evaluate --domain brain-3T --checkpoint unet.pt knee.pt --methods zero-filled cg-sense \\
        --out scores.json

Prints mean +- std and the 95% confidence interval of SSIM, PSNR, RMSE and NMSE (whole image and
foreground) per method; all methods see the same fixed masks, and paired differences against the
first method are reported with their confidence intervals.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .train import add_data_arguments, load_splits, make_set, write_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    g = parser.add_argument_group("evaluation")
    g.add_argument("--checkpoint", type=Path, nargs="*", default=[], help="model checkpoints to evaluate")
    g.add_argument("--methods", nargs="*", default=["zero-filled"], choices=("zero-filled", "cg-sense"),
                   help="classical baselines to evaluate too")
    g.add_argument("--split", default="test", choices=("train", "val", "test"))
    g.add_argument("--max-slices", type=int, default=None)
    g.add_argument("--cg-iters", type=int, default=None, help="default: the profile's")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--device", default="auto")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--out", type=Path, default=None, help="write per-slice metrics and summaries as JSON")


def run(args: argparse.Namespace) -> int:
    from ..profiles import get_profile
    from ..train import evaluate, load_model, paired_difference

    profile = get_profile(args.profile)
    if not args.checkpoint and not args.methods:
        raise SystemExit("nothing to evaluate: give --checkpoint and/or --methods")
    files = load_splits(args)[args.split]
    dataset = make_set(args, files, train=False, with_kspace="cg-sense" in args.methods)
    results = []
    for method in args.methods:
        results.append(evaluate(method, dataset, batch_size=args.batch_size, cg_iters=args.cg_iters or profile.cg_iters,
                                center_fraction=args.center_fraction, max_slices=args.max_slices, progress=not args.quiet))
    for path in args.checkpoint:
        results.append(evaluate(load_model(path), dataset, batch_size=args.batch_size, device=args.device,
                                max_slices=args.max_slices, progress=not args.quiet, name=str(path)))
    print(f"{len(results[0].slices)} slices, R = {args.acceleration:g}; mean +- std [95% CI]")
    for r in results:
        s = r.summary()
        cells = [f"{m} {s[m]['mean']:.4f} +- {s[m]['std']:.4f} [{s[m]['ci_low']:.4f}, {s[m]['ci_high']:.4f}]"
                 for m in ("ssim", "psnr", "ssim_fg")]
        print(f"  {r.method}: " + "; ".join(cells))
    base = results[0]
    for r in results[1:]:
        d, lo, hi = paired_difference(r, base, "ssim")
        print(f"  SSIM {r.method} - {base.method}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    write_out(args.out, {"command": "evaluate", "acceleration": args.acceleration, "split": args.split,
                         "results": [r.to_dict() for r in results]})
    return 0
