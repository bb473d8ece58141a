"""CG-SENSE time: ``mrtl_core.sense.cg_sense`` against sigpy's ``SenseRecon``, in one run.

For each (coils, size) it builds one problem -- a smooth phantom, sigpy birdcage maps (normalised),
a 4x random column mask with fastMRI's 8% centre, complex64 -- and times, with the same number of
CG iterations (``tol=0`` for both, so both run every iteration):

* ``sigpy``:  ``sigpy.mri.app.SenseRecon(y, maps, weights=mask, max_iter=N, tol=0).run()``
  (NumPy back end: its FFTs and element-wise products run on one core whatever the thread count),
* ``ours``:   ``cg_sense(y, maps, mask, max_iter=N, tol=0)`` with ``torch`` at ``--threads``
  threads, and again at one thread (the same core count sigpy uses) -- one row each,
* **the limit**, the FFT floor: ``N x (C forward + C inverse)`` FFTs of the ``(C, H, W)`` complex64
  coil stack with ``torch.fft`` at the row's thread count and nothing else -- 2-D (a textbook
  CG-SENSE iteration) and 1-D along ``W`` only (``2 C H`` transforms of length ``W`` per iteration),
  which is all a column mask needs once the readout transform cancels (see ``mrtl_core/sense.py``).
  The floor calls the FFTs the fastest way torch offers on a CPU: unnormalised, each returning a new
  tensor (``out=`` adds a copy, ``norm="ortho"`` a scaling). ``ours / 1-D floor`` is the factor
  above the limit; ``% of limit`` = floor / ours.

``--loaded`` adds the thread grid: one solve (8 coils, 256, ``--iters``) in fresh interpreters with 1
and 2 threads, ``OMP_WAIT_POLICY`` unset and ``PASSIVE``, on the machine as it is and with one core
kept busy by a Python busy loop (``machine.busy_cores``).

Each time is the minimum over ``--repeats`` rounds; within a round every contender runs once, in
turn, so all see the same background load (the machine may be shared; minima are the least
inflated by other processes). ``agree`` is ``||ours - sigpy|| / ||sigpy||``. When CUDA is present
``cg_sense`` is also timed there (with ``torch.cuda.synchronize``) and the device is named.

    python benchmarks/cg_sense.py                 # about two minutes on 2 CPU cores
    python benchmarks/cg_sense.py --loaded        # + the thread grid (about a minute more)
    python benchmarks/cg_sense.py --configs 8x256 --iters 30 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model, load, thread_rows  # noqa: E402
from mrtl_core.fft import fft2c_np  # noqa: E402
from mrtl_core.masks import make_mask  # noqa: E402
from mrtl_core.sense import cg_sense  # noqa: E402



def _load() -> str:
    return f"{load()} (1 min)"


def problem(coils: int, size: int, seed: int = 0):
    import sigpy.mri as mr

    maps = mr.birdcage_maps((coils, size, size)).astype(np.complex128)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    img = ((xx / 0.75) ** 2 + (yy / 0.85) ** 2 < 1) * (1.0 + 0.4 * xx) * np.exp(0.5j * yy)
    mask = make_mask(size, 4, seed=seed)
    rng = np.random.default_rng(seed)
    noise = 0.01 * (rng.standard_normal(maps.shape) + 1j * rng.standard_normal(maps.shape))
    ksp = (fft2c_np(maps * img) + noise) * mask
    return ksp.astype(np.complex64), maps.astype(np.complex64), mask


def best_of(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), out


def fft_floor_fn(coils: int, size: int, iters: int, one_d: bool):
    """``iters`` x (C forward + C inverse) FFTs of ``(C, size, size)`` complex64 (2-D, or 1-D along W)."""
    a = torch.randn(coils, size, size, dtype=torch.complex64)

    def run():
        for _ in range(iters):
            if one_d:
                torch.fft.ifft(torch.fft.fft(a, dim=-1), dim=-1, norm="forward")
            else:
                torch.fft.ifft2(torch.fft.fft2(a), norm="forward")

    return run


def interleaved_best(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Minimum time of each ``(threads, fn)`` in ``fns``, timed round-robin so that every
    contender sees the same background load; returns (seconds, last outputs)."""
    best, outs = {k: float("inf") for k in fns}, {}
    for rep in range(repeats + 1):  # round 0 warms up (FFT plans, allocator) and is not timed
        for key, (threads, fn) in fns.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            outs[key] = fn()
            dt = time.perf_counter() - t0
            if rep:
                best[key] = min(best[key], dt)
    return best, outs


def child(args) -> int:
    """One thread-grid row: the first config's solve at ``--threads``, best of ``--repeats``; prints JSON."""
    torch.set_num_threads(args.threads)
    coils, size = (int(v) for v in args.configs[0].lower().split("x"))
    ksp, maps, mask = problem(coils, size)
    y_t, s_t = torch.from_numpy(ksp), torch.from_numpy(maps)
    run = lambda: cg_sense(y_t, s_t, mask, max_iter=args.iters, tol=0)  # noqa: E731
    run()
    seconds = best_of(run, args.repeats)[0]
    floor = best_of(fft_floor_fn(coils, size, args.iters, one_d=True), args.repeats)[0]
    print(json.dumps({"solve": seconds, "floor1": floor}))
    return 0


def loaded_rows(args) -> None:
    """The thread grid: 8 coils x 256, one solve per fresh interpreter."""
    threads = sorted({1, os.cpu_count() or 1})
    print()
    print(f"Threads under load: one cg_sense solve, 8 coils, 256 x 256, {args.iters} iterations, best of 3, "
          "each row a fresh interpreter")
    print("busy = cores kept busy by a Python busy loop this script runs; load = 1-min load average before the row")
    header = (f"{'busy':>4} {'OMP_WAIT_POLICY':>15} {'threads':>7} {'load':>5} | {'solve s':>8} {'1-D floor s':>11} "
              f"{'ours/1-D':>8} {'vs 1 thread':>11}")
    print(header)
    print("-" * len(header))
    rows = thread_rows(Path(__file__), ["--child", "--configs", "8x256", "--iters", str(args.iters),
                                        "--repeats", "3"], threads)
    one = {(r["busy"], r["policy"]): r["solve"] for r in rows if r["threads"] == 1}
    for r in rows:
        print(f"{r['busy']:>4} {r['policy']:>15} {r['threads']:>7} {r['load']:>5} | {r['solve']:8.3f} "
              f"{r['floor1']:11.3f} {r['solve'] / r['floor1']:8.2f} {one[r['busy'], r['policy']] / r['solve']:10.2f}x",
              flush=True)
    print("vs 1 thread: the 1-thread time of the same (busy, policy) / this row's (> 1: more threads help).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["8x256", "16x256", "8x320", "16x320"],
                        help="COILSxSIZE problems (square images)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--loaded", action="store_true", help="also run the thread grid in child processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one JSON row (thread grid)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    import sigpy as sp
    import sigpy.mri as mr

    torch.set_num_threads(args.threads)
    print("CG-SENSE: mrtl_core.sense.cg_sense vs sigpy.mri.app.SenseRecon (same problem, same iterations)")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical cores; python {platform.python_version()}")
    print(f"torch {torch.__version__} ({args.threads} threads), numpy {np.__version__}, sigpy {sp.__version__}")
    print(f"load average at start (other processes share this CPU): {_load()}")
    print(f"R=4 random columns, centre 8%, complex64, {args.iters} CG iterations, tol=0, "
          f"best of {args.repeats}")
    print()
    print("the limit: per CG iteration 2C FFTs (C forward, C inverse) of the coil stack -- 1-D: 2 C H "
          "transforms of length W; the floors time exactly those FFTs, nothing else")
    header = (f"{'coils':>5} {'size':>5} {'threads':>7} | {'ours s':>7} {'sigpy s':>8} {'sigpy/ours':>10} "
              f"{'agree':>8} | {'2-D floor s':>11} {'ours/2-D':>8} | {'1-D floor s':>11} {'ours/1-D':>8} "
              f"{'% of limit':>10}")
    print(header)
    print("-" * len(header))
    rows = []
    for cfg in args.configs:
        coils, size = (int(v) for v in cfg.lower().split("x"))
        ksp, maps, mask = problem(coils, size)
        weights = np.broadcast_to(mask, (size, size)).astype(np.float32)
        y_t, s_t = torch.from_numpy(ksp), torch.from_numpy(maps)

        def ours():
            return cg_sense(y_t, s_t, mask, max_iter=args.iters, tol=0)

        def theirs():
            return mr.app.SenseRecon(ksp, maps, weights=weights, max_iter=args.iters, tol=0, show_pbar=False).run()

        thread_counts = list(dict.fromkeys([args.threads, 1]))
        fns = {"sigpy": (args.threads, theirs)}
        for t in thread_counts:
            fns[("ours", t)] = (t, ours)
            fns[("fft2", t)] = (t, fft_floor_fn(coils, size, args.iters, one_d=False))
            fns[("fft1", t)] = (t, fft_floor_fn(coils, size, args.iters, one_d=True))
        best, outs = interleaved_best(fns, args.repeats)
        t_sp, x_sp = best["sigpy"], outs["sigpy"]
        for threads in thread_counts:
            t_ours, x_ours = best[("ours", threads)], outs[("ours", threads)]
            floor2, floor1 = best[("fft2", threads)], best[("fft1", threads)]
            agree = float(np.linalg.norm(x_ours.numpy() - x_sp) / np.linalg.norm(x_sp))
            if threads == args.threads:
                rows.append((coils, size, t_ours))
            print(f"{coils:>5} {size:>5} {threads:>7} | {t_ours:>7.3f} {t_sp:>8.3f} {t_sp / t_ours:>9.1f}x "
                  f"{agree:>8.1e} | {floor2:>11.3f} {t_ours / floor2:>8.2f} | {floor1:>11.3f} "
                  f"{t_ours / floor1:>8.2f} {100 * floor1 / t_ours:>9.0f}%", flush=True)
        torch.set_num_threads(args.threads)
    print(f"load average at end: {_load()}")
    print("sigpy's NumPy back end runs on one core; the threads=1 rows compare like with like.")
    print("ours / 2-D < 1 is possible: a column mask lets A^H A skip the readout FFTs (the 1-D floor is the limit).")
    if args.loaded:
        loaded_rows(args)

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        print(f"\nCUDA: {torch.cuda.get_device_name(dev)}")
        print(f"{'coils':>5} {'size':>5} | {'c64 s':>8} {'c128 s':>8} {'CPU ours / c64':>14}")
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        for coils, size, t_cpu in rows:
            ksp, maps, mask = problem(coils, size)
            times = []
            for dt in (torch.complex64, torch.complex128):
                y_g = torch.from_numpy(ksp).to(dev, dt)
                s_g = torch.from_numpy(maps).to(dev, dt)
                run = lambda: cg_sense(y_g, s_g, mask, max_iter=args.iters, tol=0)  # noqa: E731
                run()
                times.append(best_of(run, max(args.repeats, 5), sync)[0])
            print(f"{coils:>5} {size:>5} | {times[0]:>8.4f} {times[1]:>8.4f} {t_cpu / times[0]:>13.1f}x")
    else:
        print("\nCUDA: not available on this machine (GPU path not timed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
