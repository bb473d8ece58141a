"""How many torch threads to use: all cores on a quiet machine, fewer when other processes hold cores.

The one job: :func:`choose_threads`. Measured on a 2-core Xeon (``benchmarks/RESULTS.md``, "Threads
under load"): with both cores free two threads beat one (U-Net step, CG-SENSE), but while another
process keeps one core busy, two OpenMP threads wait for each other at every barrier and lose to one
thread. So the count is the cores left free by the others, at least one; ``MRTL_THREADS`` overrides.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

__all__ = ["choose_threads"]


def _runnable_others() -> float | None:
    """Runnable tasks now, other than the caller (``/proc/loadavg``'s 4th field minus one); None off Linux."""
    try:
        running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        return max(0.0, float(running) - 1.0)
    except (OSError, IndexError, ValueError):
        return None


def choose_threads(cpu_count: int | None = None, load: float | None = None,
                   environ: Mapping[str, str] | None = None) -> int:
    """Torch intra-op threads for this process: ``MRTL_THREADS`` if set, else the cores others leave free.

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
        ValueError: ``MRTL_THREADS`` is not an integer >= 1.

    Call it once, before the first torch work: ``torch.set_num_threads(choose_threads())``.
    """
    env = os.environ if environ is None else environ
    override = env.get("MRTL_THREADS", "").strip()
    if override:
        try:
            value = int(override)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"MRTL_THREADS must be an integer >= 1, got {override!r}")
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
