"""Speed of the synthetic scanners, and a gallery of what they produce.

Prints slices per second of :func:`mrtl_core.simulate.simulate_subject` at 128 x 128 and 256 x 256 for
every registered domain, against a peer measured in the same run: a plain multi-coil FFT of the same
array size (numpy), which is the floor any simulator that writes k-space must pay, and the limit of this
one: that FFT plus drawing the k-space noise (``standard_normal`` float32 of the same array, the stream
the recorded data fix), timed in the same run; ``% of limit`` = limit time / simulator time. Run from the
repository root::

    python benchmarks/simulate.py                       # timings -> stdout
    python benchmarks/simulate.py --save benchmarks/results/simulate.txt
    python benchmarks/simulate.py --gallery book/figures/gallery_domains.png --no-timing
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model as _cpu_model  # noqa: E402

from mrtl_core import simulate as sim  # noqa: E402
from mrtl_core.fft import ifft2c_np  # noqa: E402




def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timing(domains, sizes=(128, 256), num_slices=10, repeats=3) -> None:
    import scipy

    print(f"CPU: {_cpu_model()}; cores visible: {os.cpu_count()}; load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"{num_slices} slices a subject, best of {repeats}; peer = numpy fft2 of the same (S, C, 2n, n) complex64 array")
    print("limit = numpy fft2 + float32 standard_normal noise of the same array (what any simulator writing"
          " this noisy k-space must pay)")
    print(f"{'domain':<12} {'size':>5} {'coils':>5} {'slices/s':>9} {'s/subject':>10} {'fft-only slices/s':>18} {'ratio':>6} "
          f"{'limit slices/s':>14} {'% of limit':>10}")
    for name in domains:
        dom = sim.get_domain(name)
        sim.simulate_subject(dom, 0, 2, 64)  # warm caches (template load, distance map)
        for size in sizes:
            sim.simulate_subject(dom, 0, 2, size)  # per-resolution template level
            counter = iter(range(1, 10**6))
            t_sim = _best_of(lambda: sim.simulate_subject(dom, next(counter), num_slices, size), repeats)
            x = np.ones((num_slices, dom.num_coils, 2 * size, size), dtype=np.complex64)
            t_fft = _best_of(lambda: np.fft.fft2(x, norm="ortho"), repeats)
            rng = np.random.default_rng(0)
            t_noise = _best_of(lambda: rng.standard_normal(x.shape + (2,), dtype=np.float32), repeats)
            t_lim = t_fft + t_noise
            print(f"{name:<12} {size:>5} {dom.num_coils:>5} {num_slices / t_sim:>9.1f} {t_sim:>10.3f} "
                  f"{num_slices / t_fft:>18.1f} {t_fft / t_sim:>6.2f} {num_slices / t_lim:>14.1f} "
                  f"{100 * t_lim / t_sim:>9.0f}%")
    print(f"load average at end (1 min): {os.getloadavg()[0]:.2f}")


def gallery(path: Path, domains, size: int = 128, subject: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 6
    fig, axes = plt.subplots(len(domains), cols, figsize=(cols * 1.9, len(domains) * 2.05))
    axes = np.atleast_2d(axes)
    for row, name in enumerate(domains):
        s = sim.simulate_subject(name, subject, 6, size)
        sl = 3
        coil = ifft2c_np(s.kspace[sl])[:, size // 2: size // 2 + size]
        rss = np.sqrt(np.sum(np.abs(coil) ** 2, axis=0))
        other = np.sqrt(np.sum(np.abs(ifft2c_np(s.kspace[1])[:, size // 2: size // 2 + size]) ** 2, axis=0))
        vmax = np.percentile(rss, 99.5)
        panels = [(rss, f"{name}: RSS", vmax), (other, "another slice", np.percentile(other, 99.5))]
        for c in (0, s.num_coils // 4, s.num_coils // 2):
            panels.append((np.abs(coil[c]), f"coil {c + 1}/{s.num_coils}", np.percentile(np.abs(coil[c]), 99.5)))
        for ax, (img, title, vm) in zip(axes[row], panels):
            ax.imshow(img, cmap="gray", vmin=0, vmax=vm)
            ax.set_title(title, fontsize=7)
        axes[row, -1].imshow(np.log10(np.abs(s.kspace[sl, 0]) + 1e-6), cmap="gray", aspect=0.5)
        axes[row, -1].set_title("log|k|, coil 1 (2x readout)", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    from PIL import Image

    Image.open(path).convert("L").save(path, optimize=True)  # grey levels only: a third of the bytes
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="*", default=list(sim.DOMAINS))
    parser.add_argument("--save", type=Path, help="also write the timing table to this file")
    parser.add_argument("--gallery", type=Path, help="write a PNG gallery of every domain")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_timing:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            timing(args.domains)
        print(buffer.getvalue(), end="")
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text("$ python benchmarks/simulate.py\n" + buffer.getvalue())
    if args.gallery:
        gallery(args.gallery, args.domains)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
