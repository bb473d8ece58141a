"""What machine a benchmark ran on, how loaded it was, and the helpers that load it on purpose.

Every script prints :func:`cpu_model` and :func:`load` beside its figures. :func:`matmul_peak` is the
machine's measured float32 GEMM rate (the "limit" a compute-bound step is a fraction of);
:func:`busy_cores` starts competing busy loops (a loaded laptop) and :func:`run_child` runs one
measurement in a fresh interpreter, where environment variables that must be set before torch
loads (``OMP_WAIT_POLICY``, ``OMP_NUM_THREADS``) take effect.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_footer(meta: dict) -> str:
    """The last line of a training benchmark's report: profile, machine, and each network's time and kept
    epoch (the ``network*`` entries of the record's ``_meta``)."""
    return (f"profile {meta['profile']['name']}, {meta['cpu']}, torch {meta['torch']}, {meta['threads']} threads; "
            + "; ".join(f"{k}: {v.get('seconds') or 0:.0f} s, best epoch {v.get('best_epoch')}"
                        for k, v in meta.items() if k.startswith("network")))


def load() -> str:
    """The 1-minute load average as printed beside every result (``unknown`` where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (OSError, AttributeError):
        return "unknown"


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 GEMM rate (FLOP/s) of ``torch.matmul`` on ``(n, n)`` at ``threads`` threads.

    ``2 n^3`` FLOPs per product, best of ``repeats``: the compute limit a convolution network's step
    can approach on this CPU (MKL/oneDNN reach close to the vector units' peak at this size).
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.matmul(a, b, out=c)  # warm-up (MKL's thread pool, page faults)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2.0 * n**3 / best


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """Keep ``count`` cores busy with Python busy loops (child processes this process starts and ends)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(1.0)  # let the scheduler see them running
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def run_child(script: Path, args: Sequence[str], env: dict[str, str] | None = None,
              busy: int = 0, timeout: float = 900.0) -> dict:
    """Run ``script args`` in a fresh interpreter (with ``env`` added) while ``busy`` cores are kept busy;
    the child prints one JSON object as its last stdout line, which is returned."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    with busy_cores(busy):
        out = subprocess.run([sys.executable, str(script), *args], env=child_env, capture_output=True,
                             text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def thread_rows(script: Path, args: Sequence[str], threads: Sequence[int], policies=("default", "PASSIVE"),
                loads=(0, 1)) -> list[dict]:
    """The thread-policy grid: one child run per (competing busy cores, ``OMP_WAIT_POLICY``, threads).

    ``args`` must make ``script`` print one JSON object with its seconds (it gets ``--threads T``
    appended). Each row dict holds ``busy``, ``policy``, ``threads``, the child's JSON and the load
    average seen just before the child started.
    """
    rows = []
    for busy in loads:
        for policy in policies:
            env = {} if policy == "default" else {"OMP_WAIT_POLICY": policy}
            for t in threads:
                before = load()
                result = run_child(script, [*args, "--threads", str(t)], env=env, busy=busy)
                rows.append({"busy": busy, "policy": policy, "threads": t, "load": before, **result})
    return rows
