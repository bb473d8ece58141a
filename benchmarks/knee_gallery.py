"""The procedural knee, labelled, beside the previous revision of the phantom.

Renders (a) the current knee (:func:`mrtl_core.gallery.knee_gallery`: several subjects, slices from
one compartment through the notch to the other, at 128 and 256 px, structures labelled) and (b) the
previous knee, loaded from git (the module text at commit ``PREVIOUS``, executed in a fresh module
namespace) for the same subjects and slices as a plain grid. Run from the repository root::

    python benchmarks/knee_gallery.py                                  # both figures
    python benchmarks/knee_gallery.py --previous book/figures/knee_previous.png --no-current
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrtl_core.gallery import knee_gallery, knee_image  # noqa: E402

PREVIOUS = "31b73e6"          # the knee before the anatomy revision (issue 16)
SEEDS = (0, 1)
NUM_SLICES = 11
SLICES = (2, 4, 5, 8)
SIZES = (128, 256)


def previous_knee_module(commit: str = PREVIOUS) -> types.ModuleType:
    """The knee phantom module as it was at ``commit``, executed in a fresh namespace."""
    text = subprocess.run(["git", "show", f"{commit}:mrtl_core/phantoms/knee.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    mod = types.ModuleType("knee_previous")
    mod.__dict__["__name__"] = "knee_previous"
    exec(compile(text, f"{commit}:mrtl_core/phantoms/knee.py", "exec"), mod.__dict__)
    return mod


def previous_grid(path: Path, commit: str = PREVIOUS) -> None:
    """Save the previous knee's slices (same subjects, slices and sizes as the gallery) as a grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old = previous_knee_module(commit)
    rows = [(sd, n) for sd in SEEDS for n in SIZES]
    fig, axes = plt.subplots(len(rows), len(SLICES), figsize=(2.0 * len(SLICES), 2.1 * len(rows)), squeeze=False)
    for i, (sd, n) in enumerate(rows):
        fr = old.knee_tissue_slices(np.random.default_rng(sd), NUM_SLICES, n)
        for j, s in enumerate(SLICES):
            ax = axes[i, j]
            ax.imshow(knee_image(fr, s), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"subject {sd}, slice {s + 1}/{NUM_SLICES}, {n} px", fontsize=6)
            ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle(f"The previous knee phantom (commit {commit}), same subjects and slices", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--current", type=Path, default=ROOT / "book" / "figures" / "knee_gallery.png")
    ap.add_argument("--previous", type=Path, default=ROOT / "book" / "figures" / "knee_previous.png")
    ap.add_argument("--no-current", action="store_true")
    ap.add_argument("--no-previous", action="store_true")
    a = ap.parse_args(argv)
    if not a.no_current:
        import matplotlib

        matplotlib.use("Agg")
        fig = knee_gallery(seeds=SEEDS, num_slices=NUM_SLICES, slices=SLICES, sizes=SIZES)
        a.current.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.current, dpi=110)
        print(f"wrote {a.current}")
    if not a.no_previous:
        previous_grid(a.previous)


if __name__ == "__main__":
    main()
