"""Take the 1.5 T -> 3 T shift apart: which factor costs the pre-trained U-Net what?

    python benchmarks/field_shift.py --profile standard           # ~1 min with the models cached
    python benchmarks/field_shift.py --profile ci

The simulated 3 T scanner differs from the 1.5 T one in four ways at once (``mrtl_core.simulate``):
relaxation times (contrast), the transmit field B1+ (centre-bright shading), the receive array
(16 instead of 8 loops) and the SNR (2x). Starting from the 1.5 T scanner, this script switches them
on one at a time, each step a :class:`~mrtl_core.simulate.Domain` made with ``dataclasses.replace``:

0. ``1.5 T``: the source scanner;
1. ``+ 3 T relaxation``: T1/T2 at 3 T, noise kept at the 1.5 T level (SNR halved to compensate);
2. ``+ 3 T B1+``: the 3 T transmit pattern;
3. ``+ 16 coils``: the 3 T receive array;
4. ``+ 3 T SNR`` = the ``brain-3T`` scanner.

Two *what-ifs* follow that the registered scanners do not model, each applied to the 3 T scanner:

5. ``3 T + chemical shift``: fat and marrow displaced along the readout by the fat-water shift
   (3.4 ppm: 217 Hz at 1.5 T, 434 Hz at 3 T) at the same readout bandwidth as a 1.5 T protocol
   (150 Hz per pixel of a 1 mm readout): 2.9 mm at 3 T, while the training data had none;
6. ``3 T, phase encoding A-P``: the site encodes the other in-plane direction (the anatomy turned
   by 90 degrees relative to the sampling mask), a protocol difference between hospitals rather
   than a field effect, for scale.

Every step simulates the *same* test subjects (one domain name for all variants, so the anatomy,
the slice positions and the masks are identical; subject indices past the experiment's splits), so
step-to-step differences are paired. Each step is scored with the pre-trained U-Net, with its 3 T
twin (``experiment.native_unet``: trained from scratch on as many 3 T subjects, the same schedule)
and with zero-filling. The column ``pre - native`` is the generalisation gap at equal data.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core import data, experiment as ex, simulate  # noqa: E402
from mrtl_core.cache import atomic_write  # noqa: E402
from mrtl_core.stats import fmt_ci, paired_difference  # noqa: E402
from mrtl_core.profiles import get_profile  # noqa: E402
from mrtl_core.evaluate import evaluate  # noqa: E402

from machine import cpu_model  # noqa: E402


FAT_WATER_PPM = 3.4           # main methylene peak of fat vs water
GAMMA_MHZ_PER_T = 42.577      # proton gyromagnetic ratio / 2 pi
BANDWIDTH_HZ_PER_MM = 150.0   # readout bandwidth per pixel of a 1 mm readout (a 1.5 T T2 TSE)


@dataclasses.dataclass(frozen=True)
class WhatIf(simulate.Domain):
    """A scanner variant: fat signal displaced along the readout, or the encoding axes swapped."""

    fat_shift_mm: float = 0.0
    swap_encoding: bool = False

    @property
    def tissue_slices(self):
        anatomy = simulate.Domain.tissue_slices.fget(self)

        def slices(rng: np.random.Generator, num_slices: int, size: int) -> dict[str, np.ndarray]:
            fractions = anatomy(rng, num_slices, size)
            shift_px = self.fat_shift_mm / (self.fov_mm / size)
            if shift_px:
                # sub-pixel shift along the rows (the readout), linear interpolation (no negative
                # ringing); the fat signal is displaced, not removed, so it overlaps its neighbours
                # on one side and leaves a dark gap on the other
                for tissue in ("fat", "marrow"):
                    fractions[tissue] = ndimage.shift(fractions[tissue], (0, shift_px, 0), order=1, mode="constant")
            if self.swap_encoding:
                fractions = {t: np.ascontiguousarray(v.transpose(0, 2, 1)) for t, v in fractions.items()}
            return fractions

        return slices


def fat_shift_mm(field_strength_T: float) -> float:
    """Chemical-shift displacement of fat (mm) at ``BANDWIDTH_HZ_PER_MM``: 1.45 mm at 1.5 T, 2.9 mm at 3 T."""
    return FAT_WATER_PPM * GAMMA_MHZ_PER_T * field_strength_T / BANDWIDTH_HZ_PER_MM


def what_if(domain: simulate.Domain, **changes) -> WhatIf:
    return WhatIf(**{f.name: getattr(domain, f.name) for f in dataclasses.fields(domain)}, **changes)


def variants() -> list[tuple[str, simulate.Domain]]:
    """The cumulative steps from the 1.5 T to the 3 T brain scanner, all under one domain name."""
    lo, hi = simulate.get_domain("brain-1.5T"), simulate.get_domain("brain-3T")
    name = "brain-field-ablation"
    steps = [("1.5 T", dataclasses.replace(lo, name=name))]
    # noise_std scales with 1.5 / B0: halving snr_1p5T at 3 T keeps the 1.5 T noise level
    steps.append(("+ 3 T relaxation", dataclasses.replace(steps[-1][1], field_strength_T=hi.field_strength_T,
                                                          snr_1p5T=lo.snr_1p5T * lo.field_strength_T / hi.field_strength_T)))
    steps.append(("+ 3 T B1+", dataclasses.replace(steps[-1][1], b1_centre=hi.b1_centre, b1_edge=hi.b1_edge)))
    steps.append(("+ 16 coils", dataclasses.replace(steps[-1][1], num_coils=hi.num_coils, coil_rings=hi.coil_rings,
                                                    coil_height_mm=hi.coil_height_mm)))
    steps.append(("+ 3 T SNR (= brain-3T)", dataclasses.replace(steps[-1][1], snr_1p5T=hi.snr_1p5T)))
    last = steps[-1][1]
    same = dataclasses.replace(hi, name=name, description=last.description)
    assert last == same, "the last ablation step must be the brain-3T scanner"
    steps.append(("3 T + chemical shift (what-if)", what_if(last, fat_shift_mm=fat_shift_mm(last.field_strength_T))))
    steps.append(("3 T, phase encoding A-P (what-if)", what_if(last, swap_encoding=True)))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--subjects", type=int, default=6, help="test subjects per step")
    parser.add_argument("--out", default=None, help="JSON (default benchmarks/results/field_shift-<profile>.json)")
    parser.add_argument("--no-native", action="store_true", help="skip the 3 T twin (it trains once if not cached)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    t0 = time.perf_counter()
    models = {"pre-trained": ex.pretrained_unet(profile, progress=False)[0]}
    if not args.no_native:
        models["3 T twin"] = ex.native_unet(profile, "brain-3T", progress=False)[0]
    first = 10_000  # subject indices far past any split of the experiment
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mrtl-field-") as tmp:
        for i, (label, domain) in enumerate(variants()):
            folder = Path(tmp) / f"step{i}"
            folder.mkdir()
            files = []
            for s in range(args.subjects):
                subject = simulate.simulate_subject(domain, first + s, profile.slices_per_subject, profile.image_size,
                                                    seed=profile.data_seed)
                files.append(data.write_subject(folder / f"{s}.h5", subject))
            dataset = ex.make_dataset(files, ex.SOURCE_ACCELERATION, profile, train=False)
            results[label] = {name: evaluate(m, dataset, batch_size=profile.batch_size, examples=(), name=name)
                              for name, m in {**models, "zero-filled": "zero-filled"}.items()}

    labels = list(results)
    names = list(models) + ["zero-filled"]
    steps = []
    for i, label in enumerate(labels):
        r = results[label]
        ref = labels[min(i - 1, 4)] if i else None   # the what-ifs are changes of the 3 T scanner (step 4)
        step = {"label": label,
                "scores": {n: {m: float(np.mean(r[n].metrics[m])) for m in ("ssim_fg", "ssim", "psnr")} for n in names},
                "change": {m: list(paired_difference(r["pre-trained"], results[ref]["pre-trained"], m))
                           for m in ("ssim_fg", "ssim", "psnr")} if ref else None,
                "gap": {m: list(paired_difference(r["pre-trained"], r["3 T twin"], m))
                        for m in ("ssim_fg", "ssim", "psnr")} if "3 T twin" in r else None}
        steps.append(step)
    record = {"_meta": {"profile": profile.name, "subjects": args.subjects, "slices": len(results[labels[0]]["pre-trained"].slices),
                        "acceleration": ex.SOURCE_ACCELERATION, "cpu": cpu_model(), "torch": torch.__version__,
                        "seconds": time.perf_counter() - t0},
              "steps": steps}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"field_shift-{profile.name}.json")
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))

    print(f"# python benchmarks/field_shift.py --profile {profile.name} --subjects {args.subjects}")
    print(f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; {record['_meta']['seconds']:.0f} s")
    print(f"Foreground SSIM on {args.subjects} x {profile.slices_per_subject} test slices per step (the same subjects "
          f"and masks at every step, R = {ex.SOURCE_ACCELERATION}); change = paired difference of the pre-trained "
          "U-Net to the previous step (to the 3 T step for the what-ifs), 95% t-interval over slices.\n")
    head = "| step | " + " | ".join(names) + " | pre-trained change |" + (" pre - 3 T twin |" if "3 T twin" in models else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for step in steps:
        row = f"| {step['label']} | " + " | ".join(f"{step['scores'][n]['ssim_fg']:.3f}" for n in names)
        row += f" | {fmt_ci(step['change']['ssim_fg']) if step['change'] else ''} |"
        if step["gap"]:
            row += f" {fmt_ci(step['gap']['ssim_fg'])} |"
        print(row)
    if steps[0]["gap"]:
        print("\nThe same gap (pre-trained - 3 T twin) in whole-image SSIM and PSNR (dB):\n")
        print("| step | SSIM | PSNR |\n|---|---|---|")
        for step in steps:
            print(f"| {step['label']} | {fmt_ci(step['gap']['ssim'])} | {fmt_ci(step['gap']['psnr'], 2)} |")


if __name__ == "__main__":
    main()
