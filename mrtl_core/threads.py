"""How many torch threads to use: all cores on a quiet machine, fewer when other processes hold cores.

The one job: :func:`choose_threads`. Measured on a 2-core Xeon (``benchmarks/RESULTS.md``, "Threads
under load"): with both cores free two threads beat one (U-Net step, CG-SENSE), but while another
process keeps one core busy, two OpenMP threads wait for each other at every barrier and lose to one
thread. So the count is the cores left free by the others, at least one; ``MRTL_THREADS`` overrides.

Opt-in, because the count changes the bits of a training run (1 and 2 threads give other floating-
point sums): with ``MRTL_THREADS`` set, importing :mod:`mrtl_core` applies it (:func:`apply_policy`):
an integer fixes the count, ``auto`` follows the load at that moment. ``scripts/lab.sh`` sets ``auto``
for JupyterLab's kernels, where a student's laptop always carries other work; the book build and the
test suite leave it unset, so their numbers do not depend on what else the machine runs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

__all__ = ["choose_threads", "apply_policy"]


def _runnable_others() -> float | None:
    """Runnable tasks now, other than the caller (``/proc/loadavg``'s 4th field minus one); None off Linux."""
    try:
        running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        return max(0.0, float(running) - 1.0)
    except (OSError, IndexError, ValueError):
        return None


def choose_threads(cpu_count: int | None = None, load: float | None = None,
                   environ: Mapping[str, str] | None = None) -> int:
    """Torch intra-op threads for this process: ``MRTL_THREADS`` if an integer, else (unset or ``auto``)
    the cores others leave free.

    Args:
        cpu_count: logical cores (default ``os.cpu_count()``).
        load: how many cores other processes keep busy (default: the smaller of the 1-minute load
            average, ``os.getloadavg()[0]``, and the tasks runnable right now on Linux -- the load
            average trails by a minute, so a process that just ended still counts in it).
        environ: where ``MRTL_THREADS`` is read (default ``os.environ``).

    Returns:
        An integer in ``[1, cpu_count]`` (``MRTL_THREADS`` may ask for more; it is taken as given).
        ``cpu_count - round(load)``, at least 1; all cores where the OS reports no load average.

    Raises:
        ValueError: ``MRTL_THREADS`` is neither ``auto`` nor an integer >= 1.

    Call it once, before the first torch work: ``torch.set_num_threads(choose_threads())``.
    """
    env = os.environ if environ is None else environ
    override = env.get("MRTL_THREADS", "").strip()
    if override and override.lower() != "auto":
        try:
            value = int(override)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"MRTL_THREADS must be 'auto' or an integer >= 1, got {override!r}")
        return value
    cores = max(1, int(cpu_count if cpu_count is not None else (os.cpu_count() or 1)))
    if load is None:
        try:
            load = float(os.getloadavg()[0])
        except (OSError, AttributeError):   # no load average (Windows): assume a quiet machine
            return cores
        now = _runnable_others()
        if now is not None:
            load = min(load, now)
    if not math.isfinite(load) or load < 0:
        return cores
    return max(1, min(cores, cores - int(math.floor(load + 0.5))))


def apply_policy(environ: Mapping[str, str] | None = None) -> int | None:
    """``torch.set_num_threads(choose_threads())`` when ``MRTL_THREADS`` is set (``auto`` or a count);
    returns the count set, or ``None`` (unset: torch keeps its default). :mod:`mrtl_core` calls it on
    import, before any torch work of a process."""
    env = os.environ if environ is None else environ
    if not env.get("MRTL_THREADS", "").strip():
        return None
    import torch

    count = choose_threads(environ=env)
    torch.set_num_threads(count)
    return count
