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

from ..cli import CLIError
from .train import (add_data_arguments, check_device, check_file_target, check_input_file, load_splits, make_set,
                    positive_int, split_files, write_out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    g = parser.add_argument_group("evaluation")
    g.add_argument("--checkpoint", type=Path, nargs="*", default=[], help="model checkpoints to evaluate")
    g.add_argument("--methods", nargs="*", default=["zero-filled"], choices=("zero-filled", "cg-sense"),
                   help="classical baselines to evaluate too")
    g.add_argument("--maps", default="scanner", choices=("scanner", "espirit", "lowres", "true"),
                   help="CG-SENSE coil maps: 'scanner' (default) from the acquired ACS lines as a scanner computes "
                        "them; 'true' the maps a synthetic file stores (an oracle, reported as 'cg-sense (true maps)')")
    g.add_argument("--split", default="test", choices=("train", "val", "test"))
    g.add_argument("--max-slices", type=positive_int, default=None)
    g.add_argument("--cg-iters", type=positive_int, default=None, help="default: the profile's")
    g.add_argument("--batch-size", type=positive_int, default=8)
    g.add_argument("--device", default="auto")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--out", type=Path, default=None, help="write per-slice metrics and summaries as JSON")
    g.add_argument("--recon-dir", type=Path, default=None,
                   help="write each method's reconstructions as fastMRI submission files (<dir>/<method>/<file>.h5, "
                        "dataset 'reconstruction'); the only output for test/challenge files, which have no target")


def _method_dir(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name)


def run(args: argparse.Namespace) -> int:
    from ..profiles import get_profile

    profile = get_profile(args.profile)
    if not args.checkpoint and not args.methods:
        raise CLIError("nothing to evaluate: give --checkpoint and/or --methods")
    for path in args.checkpoint:
        check_input_file(path, "--checkpoint")
    check_file_target(args.out, "--out")
    if args.recon_dir is not None and args.recon_dir.exists() and not args.recon_dir.is_dir():
        raise CLIError(f"--recon-dir {args.recon_dir}: is a file, expected a directory")
    check_device(args.device)
    from ..evaluate import evaluate, reconstruct_files
    from ..stats import paired_difference
    from ..train import load_model

    files = split_files(args, load_splits(args), args.split)
    # with k-space, every sample carries the file's own reconstruction_rss as the reference, so the
    # scores never depend on which methods were asked for
    dataset = make_set(args, files, train=False, with_kspace=True)
    models = [(str(path), load_model(path)) for path in args.checkpoint]
    cg_iters = args.cg_iters or profile.cg_iters
    if args.recon_dir is not None:
        for name, how in [(m, m) for m in args.methods] + models:
            written = reconstruct_files(how, dataset, args.recon_dir / _method_dir(name), device=args.device,
                                        cg_iters=cg_iters, center_fraction=args.center_fraction,
                                        maps_method=args.maps, max_slices=args.max_slices)
            print(f"{name}: wrote {len(written)} file(s) to {args.recon_dir / _method_dir(name)}")
    untargeted = [f.path for f in dataset.files if not f.has_target]
    if untargeted:
        if args.recon_dir is not None:
            return 0
        raise CLIError(f"{untargeted[0]}: no reconstruction_rss (a fastMRI test/challenge file?): nothing to score "
                       f"against; give --recon-dir DIR to write the reconstructions instead")
    results = []
    for method in args.methods:
        results.append(evaluate(method, dataset, batch_size=args.batch_size, cg_iters=cg_iters,
                                center_fraction=args.center_fraction, maps_method=args.maps, max_slices=args.max_slices,
                                progress=not args.quiet))
    for name, model in models:
        results.append(evaluate(model, dataset, batch_size=args.batch_size, device=args.device,
                                max_slices=args.max_slices, progress=not args.quiet, name=name))
    r_eff = dataset.effective_acceleration(args.max_slices)
    print(f"{len(results[0].slices)} slices, R = {r_eff:.3g} (asked {args.acceleration:g}); mean +- std [95% CI]")
    for r in results:
        s = r.summary()
        cells = [f"{m} {s[m]['mean']:.4f} +- {s[m]['std']:.4f} [{s[m]['ci_low']:.4f}, {s[m]['ci_high']:.4f}]"
                 for m in ("ssim", "psnr", "ssim_fg")]
        print(f"  {r.method}: " + "; ".join(cells))
    base = results[0]
    for r in results[1:]:
        d, lo, hi = paired_difference(r, base, "ssim")
        print(f"  SSIM {r.method} - {base.method}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    write_out(args.out, {"command": "evaluate", "acceleration": args.acceleration, "effective_acceleration": r_eff,
                         "split": args.split, "results": [r.to_dict() for r in results]})
    return 0
