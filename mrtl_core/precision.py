"""Which arithmetic a training or validation pass runs in, chosen per device at run time.

:func:`choose` turns a requested ``amp`` setting (``TrainConfig.amp``) and a device into a
:class:`Precision`: whether to run the forward pass under :func:`torch.autocast`, in which dtype,
and whether the loss needs a ``GradScaler``. Every trained model records the choice's ``name``
(``"float32"``, ``"bf16-autocast"``, ``"fp16-autocast"``) in its checkpoint and info, so a record
says what arithmetic produced it.

* **CUDA**: ``True`` or ``"bf16"`` -> bf16 autocast where the GPU supports it (no loss scaling
  needed: bf16 has float32's exponent range), else fp16 autocast with a ``GradScaler``;
  ``"fp16"`` -> fp16 with a ``GradScaler``.
* **CPU**: ``True`` -> float32. bf16 autocast on a CPU halves a training step only where the CPU
  has native bf16 matrix units (Intel AMX or AVX512-BF16); elsewhere torch emulates bf16 and is
  slower than float32. Even where it is native it is not the default: two standard builds,
  float32 and bf16, read the same in every verdict but one of chapter 7 (a single-seed difference
  0.002 past the minimum effect; ``benchmarks/RESULTS.md``, "Mixed precision"), and a default must
  leave every verdict as it was. ``"bf16"`` asks for it
  explicitly and gets it only where the CPU has it (:func:`cpu_has_native_bf16`), float32 otherwise;
  ``"fp16"`` on a CPU runs float32.
* **MPS** and other devices: float32.
* ``False``: float32 everywhere.

The environment variable ``MRTL_AMP`` (``1``/``0``/``bf16``/``fp16``) overrides the default of the
book's training configurations (:func:`requested`), so a whole build can be run both ways.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["Precision", "AMP_CHOICES", "choose", "cpu_has_native_bf16", "requested"]

#: the values ``TrainConfig.amp`` accepts
AMP_CHOICES = (True, False, "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """One pass's arithmetic: autocast on/off, its dtype, loss scaling, and why it was chosen."""

    autocast: bool
    dtype: torch.dtype
    scaler: bool
    reason: str

    @property
    def name(self) -> str:
        """``"float32"``, ``"bf16-autocast"`` or ``"fp16-autocast"`` (what checkpoints record)."""
        if not self.autocast:
            return "float32"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype] + "-autocast"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has native bf16 matrix arithmetic (Intel AMX-BF16 or AVX512-BF16).

    Read from the kernel's CPU flags on Linux; ``False`` where they cannot be read (other systems:
    Apple silicon trains on MPS, in float32 here).
    """
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"amx_bf16", "avx512_bf16"})
    return False


def _check(amp: bool | str) -> None:
    if amp not in AMP_CHOICES or (amp is not True and amp is not False and not isinstance(amp, str)):
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")


def choose(amp: bool | str, device: torch.device | str) -> Precision:
    """The arithmetic a pass on ``device`` runs in for the request ``amp`` (see the module docstring)."""
    _check(amp)
    device = torch.device(device)
    float32 = torch.float32
    if amp is False:
        return Precision(False, float32, False, "amp off")
    if device.type == "cuda":
        if amp == "fp16":
            return Precision(True, torch.float16, True, "fp16 requested (loss scaled)")
        if torch.cuda.is_bf16_supported():
            return Precision(True, torch.bfloat16, False, "CUDA with bf16")
        return Precision(True, torch.float16, True, "CUDA without bf16: fp16, loss scaled")
    if device.type == "cpu":
        if amp == "bf16":
            if cpu_has_native_bf16():
                return Precision(True, torch.bfloat16, False, "bf16 requested; CPU has AMX/AVX512-BF16")
            return Precision(False, float32, False, "bf16 requested; CPU lacks AMX/AVX512-BF16 (emulated bf16 is slower)")
        return Precision(False, float32, False, "CPU default: float32 (bf16 not yet measured on the findings)")
    return Precision(False, float32, False, f"{device.type}: float32")


def requested(default: bool | str = True) -> bool | str:
    """The ``amp`` request of the book's training configurations: ``MRTL_AMP`` if set, else ``default``.

    ``MRTL_AMP``: ``1``/``true`` -> ``True``, ``0``/``false`` -> ``False``, ``bf16`` or ``fp16``.
    """
    raw = os.environ.get("MRTL_AMP")
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    mapping = {"1": True, "true": True, "0": False, "false": False, "bf16": "bf16", "fp16": "fp16"}
    if value not in mapping:
        raise ValueError(f"MRTL_AMP={raw!r}: choose 1, 0, bf16 or fp16")
    return mapping[value]
