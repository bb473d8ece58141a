"""CPU kernel families a run can be pinned to, so a finding can be checked beyond this CPU's own.

Floating-point kernels differ between CPUs (an Intel Xeon with AVX512, an AMD EPYC with AVX2, ...)
and so do the sums of a 1- and a 2-thread run. Three libraries choose kernels at run time, and each
has a switch to cap it: ATen's vector kernels (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions
(``ONEDNN_MAX_CPU_ISA``) and MKL's FFT and BLAS (``MKL_ENABLE_INSTRUCTIONS``). ``native`` leaves
every library its best path on this CPU. Used by ``tests/conftest.py`` (the ``kernel-variant`` run of
the learning chapters) and ``benchmarks/kernel_spread.py`` (the measured spread).
"""
from __future__ import annotations

KERNELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def kernel_env(kernel: str, threads: int) -> dict[str, str]:
    """Environment variables that pin a process (and a Jupyter kernel it starts) to ``kernel``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel family {kernel!r}; choose one of {sorted(KERNELS)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return dict(KERNELS[kernel], OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def pinned_environ(base: dict[str, str], kernel: str, threads: int) -> dict[str, str]:
    """``base`` (e.g. ``os.environ``) with every kernel switch replaced by ``kernel``'s: ``native``
    removes switches that ``base`` set, so it really is this CPU's own choice."""
    switches = {name for env in KERNELS.values() for name in env}
    env = {k: v for k, v in base.items() if k not in switches}
    env.update(kernel_env(kernel, threads))
    return env
