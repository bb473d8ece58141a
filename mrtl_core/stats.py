"""Statistics of the book's comparisons and the one rule that turns them into words.

* :func:`summarise` -- mean, sample std and the t confidence interval of the mean;
* :func:`paired_difference` -- ``a - b`` over the same slices of two evaluation results, with its
  interval (any objects with ``method``, ``slices`` and a ``metrics`` dict of per-slice arrays,
  as :class:`mrtl_core.evaluate.EvalResult`);
* :class:`Thresholds` and :func:`classify` -- the verdict rule: a difference counts when its
  confidence interval excludes zero **and** its mean is at least the minimum effect;
* :func:`fmt_ci` (:func:`fmt_interval` for an interval alone) and :func:`compare_sentence` -- a
  difference as text, and as a sentence judged by that rule.

Differences are ``[mean, ci_low, ci_high]`` triples (95 % t-intervals unless said otherwise). This
module imports nothing else from the package: every layer above may use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["summarise", "paired_difference", "as_diff", "Thresholds", "classify", "fmt_interval", "fmt_ci",
           "compare_sentence"]


def summarise(values: np.ndarray, confidence: float = 0.95) -> dict:
    """Mean, sample std, and the t-distribution confidence interval of the mean."""
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = values.size
    mean = float(values.mean()) if n else float("nan")
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired_difference(result_a: Any, result_b: Any, metric: str = "ssim", confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same slices, with its t confidence interval: (mean, low, high)."""
    if result_a.slices != result_b.slices:
        raise ValueError(
            f"paired_difference needs results on the same slices in the same order: "
            f"{result_a.method!r} has {len(result_a.slices)}, {result_b.method!r} has {len(result_b.slices)}"
        )
    for r in (result_a, result_b):
        if metric not in r.metrics:
            raise ValueError(f"metric {metric!r} not in result {r.method!r}; choose from {sorted(r.metrics)}")
    s = summarise(result_a.metrics[metric] - result_b.metrics[metric], confidence)
    return s["mean"], s["ci_low"], s["ci_high"]


def as_diff(value: Any, what: str = "diff") -> tuple[float, float, float]:
    """A recorded ``[mean, ci_low, ci_high]`` as three floats (``None`` -> NaN); a clear error otherwise."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ValueError(f"{what} must be [mean, ci_low, ci_high], got {value!r}")
    return tuple(float("nan") if v is None else float(v) for v in value)  # type: ignore[return-value]


def fmt_interval(ci: Sequence[float] | None, digits: int = 3, signed: bool = False) -> str:
    """``"[0.812, 0.845]"`` (``signed``: ``"[+0.032, +0.070]"``); ``"–"`` for None or an undefined bound."""
    if ci is None or len(ci) != 2 or not all(v is not None and math.isfinite(float(v)) for v in ci):
        return "–"
    sign = "+" if signed else ""
    return f"[{float(ci[0]):{sign}.{digits}f}, {float(ci[1]):{sign}.{digits}f}]"


def fmt_ci(diff: Sequence[float] | None, digits: int = 3, unit: str = "") -> str:
    """``"+0.051 [+0.032, +0.070]"`` (``unit=" dB"``: ``"+1.20 dB [...]"``); ``"+0.051 (no CI)"`` when the
    interval is undefined; ``"–"`` for None."""
    if diff is None:
        return "–"
    m, lo, hi = as_diff(diff, "diff")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:+.{digits}f}{unit} (no CI)"
    return f"{m:+.{digits}f}{unit} {fmt_interval((lo, hi), digits, signed=True)}"


@dataclass(frozen=True)
class Thresholds:
    """The rule that turns a recorded difference into "better", "worse" or "no clear difference".

    A difference counts when its confidence interval excludes zero **and** its mean is at least
    ``min_effect`` (in units of ``metric``); "close to" means no more than ``close`` below.
    """

    metric: str = "ssim_fg"
    min_effect: float = 0.01
    close: float = 0.02

    def __post_init__(self):
        if self.metric not in ("ssim", "ssim_fg", "psnr", "psnr_fg"):
            raise ValueError(f"metric must be one of ssim, ssim_fg, psnr, psnr_fg; got {self.metric!r}")
        if not (self.min_effect >= 0 and math.isfinite(self.min_effect)):
            raise ValueError(f"min_effect must be a finite number >= 0, got {self.min_effect!r}")
        if not (self.close >= 0 and math.isfinite(self.close)):
            raise ValueError(f"close must be a finite number >= 0, got {self.close!r}")

    @property
    def label(self) -> str:
        return {"ssim": "SSIM", "ssim_fg": "foreground SSIM", "psnr": "PSNR", "psnr_fg": "foreground PSNR"}[self.metric]

    def describe(self) -> str:
        unit = " dB" if self.metric.startswith("psnr") else ""
        return (f"Verdicts use the {self.label}. A difference counts only when its 95 % confidence interval "
                f"excludes zero and its mean is at least {self.min_effect:g}{unit}; \"close to\" means at most "
                f"{self.close:g}{unit} below. A claim is *reproduced* when every tested case satisfies it, "
                "*partly* when some do, *not reproduced* when none does, and *not tested* when the records "
                "hold no case.")


def classify(diff: Sequence[float], thresholds: Thresholds = Thresholds()) -> str:
    """``"better"``, ``"worse"`` or ``"no clear difference"`` for a ``[mean, ci_low, ci_high]`` difference.

    An undefined interval (a single slice) is never significant.
    """
    m, lo, hi = as_diff(diff, "diff")
    if math.isfinite(lo) and lo > 0 and m >= thresholds.min_effect:
        return "better"
    if math.isfinite(hi) and hi < 0 and m <= -thresholds.min_effect:
        return "worse"
    return "no clear difference"


_WORDS = {"better": "better than", "worse": "worse than", "no clear difference": "not clearly different from"}


def compare_sentence(diff: Sequence[float], a: str, b: str, thresholds: Thresholds = Thresholds()) -> str:
    """``"<a> is better than <b> (foreground SSIM +0.051, 95 % CI +0.032 to +0.070)"``, by :func:`classify`."""
    m, lo, hi = as_diff(diff, "diff")
    ci = (f"95 % CI {lo:+.3f} to {hi:+.3f}" if math.isfinite(lo) and math.isfinite(hi) else "no interval")
    return f"{a} is {_WORDS[classify(diff, thresholds)]} {b} ({thresholds.label} {m:+.3f}, {ci})"

