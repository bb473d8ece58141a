"""The pre-trained U-Net at other noise levels of its own scanner: does more noise than it learnt break it?

    python benchmarks/noise_sweep.py --profile standard          # ~2 min with the pre-trained network cached
    python benchmarks/noise_sweep.py --profile ci

The source scanner (``brain-1.5T``) simulated with its k-space noise multiplied by 0.5, 1, 2 and 4
(``dataclasses.replace`` of the domain's ``snr_1p5T``; everything else, the subjects, slices and
masks included, identical at every level, so differences between levels are paired), scored with the
pre-trained U-Net and with zero-filling. Reported per level: both scores, the network's change from
the training noise (x1), and its advantage over zero-filling, the part of the image quality the
network adds; paired, 95 % intervals over the test subjects.

Prediction, from Knoll et al. (MRM 2019), before this ran: a network that meets *more* noise than it
was trained on degrades (its advantage over zero-filling shrinks, and at x4 may vanish), while *less*
noise costs little or nothing. This is the SNR half of the clinical 3 T site's shift
(``clinical_site.py``), where the network meets about half its training SNR per voxel.

Results go to ``benchmarks/results/noise_sweep-<profile>.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import data, experiment as ex, simulate  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402
from mrtl_core.profiles import get_profile  # noqa: E402
from mrtl_core.stats import fmt_ci, interval_basis, paired_difference  # noqa: E402

from machine import cpu_model  # noqa: E402

NOISE_FACTORS = (0.5, 1.0, 2.0, 4.0)
METRICS = ("ssim_fg", "ssim", "psnr")
FIRST_SUBJECT = 20_000   # subject indices past every split of the experiment (and field_shift.py's)


def noise_domain(factor: float) -> simulate.Domain:
    """The source scanner with ``factor`` times its noise (one domain name: the same subjects)."""
    base = simulate.get_domain(ex.SOURCE_DOMAIN)
    return dataclasses.replace(base, snr_1p5T=base.snr_1p5T / factor)


def run(profile_name: str, subjects: int) -> dict:
    profile = get_profile(profile_name)
    t0 = time.perf_counter()
    model = ex.pretrained_unet(profile, progress=False)[0]
    results = {}
    with tempfile.TemporaryDirectory(prefix="mrtl-noise-") as tmp:
        for factor in NOISE_FACTORS:
            folder = Path(tmp) / f"x{factor:g}"
            folder.mkdir()
            files = [data.write_subject(folder / f"{s}.h5", simulate.simulate_subject(
                noise_domain(factor), FIRST_SUBJECT + s, profile.slices_per_subject, profile.image_size,
                seed=profile.data_seed)) for s in range(subjects)]
            dataset = ex.make_dataset(files, ex.SOURCE_ACCELERATION, profile, train=False)
            results[factor] = {name: evaluate(m, dataset, batch_size=profile.batch_size, examples=(), name=name)
                               for name, m in (("pre-trained", model), ("zero-filled", "zero-filled"))}
    levels = []
    for factor in NOISE_FACTORS:
        r = results[factor]
        levels.append({
            "noise": factor,
            "scores": {n: {m: float(r[n].metrics[m].mean()) for m in METRICS} for n in r},
            "change": {m: list(paired_difference(r["pre-trained"], results[1.0]["pre-trained"], m)) for m in METRICS}
            if factor != 1.0 else None,
            "advantage": {m: list(paired_difference(r["pre-trained"], r["zero-filled"], m)) for m in METRICS},
        })
    subjects_of = [f for f, _ in results[1.0]["pre-trained"].slices]
    return {"_meta": {"profile": profile.name, "subjects": subjects, "basis": interval_basis(subjects_of),
                      "acceleration": ex.SOURCE_ACCELERATION, "cpu": cpu_model(), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "seconds": time.perf_counter() - t0},
            "levels": levels}


def report(record: dict) -> str:
    meta = record["_meta"]
    lines = [f"brain-1.5T at R = {meta['acceleration']:g}, profile {meta['profile']}: foreground SSIM (whole-image PSNR); "
             f"paired, 95 % intervals over {meta['basis']}", "",
             "| noise | pre-trained | zero-filled | change from x1 | pre-trained − zero-filled |", "|---|---|---|---|---|"]
    for lv in record["levels"]:
        p, z = lv["scores"]["pre-trained"], lv["scores"]["zero-filled"]
        change = fmt_ci(lv["change"]["ssim_fg"]) if lv["change"] else "–"
        lines.append(f"| x{lv['noise']:g} | {p['ssim_fg']:.3f} ({p['psnr']:.2f} dB) | {z['ssim_fg']:.3f} ({z['psnr']:.2f} dB) "
                     f"| {change} | {fmt_ci(lv['advantage']['ssim_fg'])} |")
    lines += ["", f"{meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads; {meta['seconds']:.0f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--subjects", type=int, default=6, help="test subjects per noise level")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / f"noise_sweep-{args.profile}.json"
    if args.report:
        record = json.loads(out.read_text())
    else:
        record = run(args.profile, args.subjects)
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    print(report(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
