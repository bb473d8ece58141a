"""Take the clinical 3 T shift apart: which difference between the two hospital sites costs what?

    python benchmarks/clinical_factors.py --profile standard     # ~15 min with the six networks cached
    python benchmarks/clinical_factors.py --profile ci --seeds 0 # every code path once
    python benchmarks/clinical_factors.py --profile standard --report

``benchmarks/clinical_site.py`` measured the shift between the two sites of chapter 3 (the 1.5 T
site's network on 3 T site data, -0.20 foreground SSIM below the 3 T site's own network, over three
seeds) but could not say which of the sites' differences costs it. Here the 1.5 T site's scanner is
turned into the 3 T site's one difference at a time (``dataclasses.replace`` of the registered
domains; :func:`steps`), every step simulating the *same* test subjects under one domain name (the
anatomy, slice positions and masks are shared; subject indices past the experiment's splits):

0. ``1.5 T site``: ``brain-1.5T-clinical``;
1. ``+ 3 T relaxation``: the in-vivo T1/T2 at 3 T (the field set to 3 T), with the readout bandwidth
   doubled so that fat keeps its 1.5 T displacement in mm, and the noise held at the 1.5 T site's;
2. ``+ 3 T transmit``: the 3 T B1+ pattern, the SAR-reduced 140 deg refocusing and TR 5000 ms;
3. ``+ 16-channel array``: the 3 T head array (and its noise correlation);
4. ``+ 3 T matrix``: 448 x 320 over 220 mm, 4 mm slices, the noise per pixel held (so this step is
   the anatomy's scale in pixels and the echo-train blur's, not SNR);
5. ``+ 3 T bandwidth``: 220 Hz per pixel (the chemical shift of the 3 T protocol);
6. ``+ 3 T SNR``: the voxel law's noise, which makes the step the registered ``brain-3T-clinical``.

Two steps then switch one difference on *alone* on the 1.5 T site, so the two candidates that the
physics names (below) are also measured without the order of the cumulative path:

7. ``1.5 T site + 3 T matrix alone`` (noise held), 8. ``1.5 T site + 3 T SNR alone`` (the noise
   multiplied by step 6's factor).

Each step is scored with both sites' networks (``experiment.native_unet``) of every seed (all cached
by ``network_seeds.py --source``) and zero-filling. A step's **change** is the 1.5 T site's network's
score at that step minus its score at the step before (at step 0 for the two *alone* steps): each
network's per-slice scores averaged over its seeds, paired over the test subjects (``grid.paired``,
the book's rule), so the interval is over subjects and the seeds' spread is reported beside it.

Prediction, written before this ran (issue 14; Knoll et al. MRM 2019 found the move to lower SNR the
harmful one; ``field_shift.py`` found relaxation, B1+ and array cost at most 0.007 at a fixed
protocol): the matrix step costs most, since the network meets anatomy at 1.75 times its training
scale (a U-Net's receptive field and learnt features are scale-bound), then the SNR step (noise x 2;
``noise_sweep.py`` measured -0.007 at noise x 2 and -0.033 at x 4 on the fixed-protocol source);
relaxation, transmit, array and bandwidth each cost under 0.01. Results go to ``benchmarks/results/clinical-factors-<profile>.json``
(atomically, after every step; a rerun skips recorded steps) and the printed report.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import data, experiment as ex, grid, simulate  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402
from mrtl_core.profiles import get_profile  # noqa: E402

from machine import cpu_model, run_footer  # noqa: E402

LOW, HIGH = "brain-1.5T-clinical", "brain-3T-clinical"
NETWORKS = {"1.5 T site": LOW, "3 T site": HIGH}
ACCELERATION = 4
ABLATION_DOMAIN = "brain-clinical-ablation"
FIRST_SUBJECT = 10_000      # subject indices far past any split of the experiment
METRICS = ("ssim", "ssim_fg", "psnr", "psnr_fg")


def _with_noise(domain: simulate.Domain, sigma: float) -> simulate.Domain:
    """``domain`` with ``snr_1p5T`` set so that its noise standard deviation is ``sigma`` (the noise
    scales as ``1 / snr_1p5T`` whatever else the domain sets)."""
    return dataclasses.replace(domain, snr_1p5T=domain.snr_1p5T * domain.noise_std / sigma)


def steps() -> list[tuple[str, str, simulate.Domain]]:
    """``(label, reference label, domain)`` for each step: the cumulative path from the 1.5 T site to
    the 3 T site, then the two *alone* steps, all under :data:`ABLATION_DOMAIN`."""
    lo, hi = simulate.get_domain(LOW), simulate.get_domain(HIGH)
    site_lo, site_hi = lo.site, hi.site
    base = dataclasses.replace(lo, name=ABLATION_DOMAIN)
    sigma = base.noise_std
    path = [("1.5 T site", base)]

    def add(label: str, domain: simulate.Domain, hold: bool = True) -> None:
        path.append((label, _with_noise(domain, sigma) if hold else domain))

    prev = path[-1][1]
    # fat displacement (mm) = ppm x gamma x B0 / BW_px x pixel: doubling B0 and BW keeps it
    add("+ 3 T relaxation", dataclasses.replace(
        prev, field_strength_T=hi.field_strength_T,
        site=dataclasses.replace(prev.site, bandwidth_hz_per_px=site_lo.bandwidth_hz_per_px * hi.field_strength_T
                                 / lo.field_strength_T)))
    prev = path[-1][1]
    transmit = dataclasses.replace(prev.site, refocusing_deg=site_hi.refocusing_deg, TR=site_hi.TR)
    add("+ 3 T transmit", dataclasses.replace(prev, b1_centre=hi.b1_centre, b1_edge=hi.b1_edge, site=transmit,
                                              protocol=transmit.protocol))
    prev = path[-1][1]
    add("+ 16-channel array", dataclasses.replace(prev, num_coils=hi.num_coils, coil_rings=hi.coil_rings,
                                                  coil_radius_mm=hi.coil_radius_mm, coil_height_mm=hi.coil_height_mm))
    prev = path[-1][1]
    geometry = {"fov_mm": site_hi.fov_mm, "matrix": site_hi.matrix, "slice_thickness_mm": site_hi.slice_thickness_mm}
    add("+ 3 T matrix", dataclasses.replace(prev, site=dataclasses.replace(prev.site, **geometry)))
    prev = path[-1][1]
    add("+ 3 T bandwidth", dataclasses.replace(
        prev, site=dataclasses.replace(prev.site, bandwidth_hz_per_px=site_hi.bandwidth_hz_per_px)))
    before_snr = path[-1][1]
    last = dataclasses.replace(before_snr, snr_1p5T=hi.snr_1p5T,
                               site=dataclasses.replace(before_snr.site, name=site_hi.name, source=site_hi.source))
    add("+ 3 T SNR (= the 3 T site)", last, hold=False)
    if dataclasses.replace(last, name=HIGH, description=hi.description) != hi:
        raise AssertionError("the last cumulative step must be the brain-3T-clinical scanner")
    noise_factor = last.noise_std / before_snr.noise_std
    labelled = [(label, path[i - 1][0] if i else "", d) for i, (label, d) in enumerate(path)]
    labelled.append(("1.5 T site + 3 T matrix alone", "1.5 T site",
                     _with_noise(dataclasses.replace(base, site=dataclasses.replace(base.site, **geometry)), sigma)))
    labelled.append(("1.5 T site + 3 T SNR alone", "1.5 T site", _with_noise(base, sigma * noise_factor)))
    return labelled


def _entry(result, step: str, network: str, seed: int | None) -> dict:
    """The grid's entry format, subjects named by their index so that steps pair slice by slice."""
    names = [Path(f).stem for f, _ in result.slices]
    order = list(dict.fromkeys(names))
    return {"target": step, "method": network, "seed": seed, "n_slices_eval": len(result.slices),
            "summary": {k: dict(v) for k, v in result.summary().items()},
            "per_slice": {k: result.metrics[k].tolist() for k in METRICS},
            "subjects": order, "slice_subject": [order.index(n) for n in names]}


def run(profile_name: str, seeds: list[int], subjects: int, out: Path) -> dict:
    profile = get_profile(profile_name)
    record = json.loads(out.read_text()) if out.is_file() else {}
    plan = steps()
    record["_meta"] = {"profile": profile.to_dict(), "torch": torch.__version__, "python": platform.python_version(),
                       "threads": torch.get_num_threads(), "cpu": cpu_model(), "acceleration": ACCELERATION,
                       "seeds": seeds, "subjects": subjects, "sites": list(NETWORKS),
                       "steps": [{"label": label, "reference": ref,
                                  "noise_std": d.noise_std, "field_T": d.field_strength_T, "coils": d.num_coils,
                                  "protocol": d.site.to_dict(d.field_strength_T)} for label, ref, d in plan]}
    started = time.perf_counter()
    models = {}
    for label, domain in NETWORKS.items():
        for s in seeds:
            models[label, s], info = ex.native_unet(profile, domain, ACCELERATION, progress=False, seed=s)
            record["_meta"][f"network {label} seed={s}"] = {k: info.get(k) for k in ("seconds", "epochs", "best_epoch",
                                                                                       "cached", "precision")}
    for label, _, domain in plan:
        wanted = [f"{label} | {net} | seed={s}" for net, s in models] + [f"{label} | zero-filled"]
        if all(k in record for k in wanted):
            continue
        with tempfile.TemporaryDirectory(prefix="mrtl-clinical-") as tmp:
            files = [data.write_subject(Path(tmp) / f"{i}.h5",
                                        simulate.simulate_subject(domain, FIRST_SUBJECT + i, profile.slices_per_subject,
                                                                  profile.image_size, seed=profile.data_seed))
                     for i in range(subjects)]
            dataset = ex.make_dataset(files, ACCELERATION, profile, train=False)
            for (net, s), model in models.items():
                result = evaluate(model, dataset, batch_size=profile.batch_size, examples=(), name=net)
                record[f"{label} | {net} | seed={s}"] = _entry(result, label, net, s)
            result = evaluate("zero-filled", dataset, batch_size=profile.batch_size, examples=(), name="zero-filled")
            record[f"{label} | zero-filled"] = _entry(result, label, "zero-filled", None)
        atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
        mean = grid.factor_rows(record)[-1]
        print(f"{label}: 1.5 T site's network {mean['1.5 T site']:.4f}, 3 T site's {mean['3 T site']:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    record["_meta"]["seconds"] = time.perf_counter() - started
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return record


def report(record: dict) -> str:
    meta = record["_meta"]
    lines = [f"Foreground SSIM, mean over seeds {meta['seeds']} of each site's network, on the same "
             f"{meta['subjects']} test subjects at every step (R = {meta['acceleration']}); change: the 1.5 T site's "
             "network against the reference step, seed-averaged, paired over the test subjects.", "",
             grid.markdown_table(grid.factor_table(record)), "", grid.factor_sentence(record), "", run_footer(meta)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subjects", type=int, default=6, help="test subjects per step")
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/clinical-factors-<profile>.json")
    parser.add_argument("--report", action="store_true", help="only print the report of an existing JSON")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / f"clinical-factors-{args.profile}.json"
    record = grid.load_clinical_factors(out) if args.report else run(args.profile, args.seeds, args.subjects, out)
    text = report(record)
    print()
    print(text)
    if not args.report:
        atomic_write(out.with_suffix(".txt"), lambda tmp: Path(tmp).write_text(text + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
