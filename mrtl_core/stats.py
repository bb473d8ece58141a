"""Statistics of the book's comparisons and the one rule that turns them into words.

* :func:`summarise` -- mean, sample std and the t confidence interval of the mean;
* :func:`difference` -- ``a - b`` of two arrays of per-slice scores with its interval: paired over
  the same slices, or Welch's interval for independent samples;
* :func:`paired_difference` -- the same for two evaluation results (any objects with ``method``,
  ``slices`` and a ``metrics`` dict of per-slice arrays, as :class:`mrtl_core.evaluate.EvalResult`),
  over slices or, since slices of one subject are not independent, over subjects (the per-subject
  means of the paired differences; a subject is a file, one volume as in fastMRI);
* :func:`interval_over` and :func:`interval_basis` -- the one rule for what an interval is over:
  test subjects when there are at least :data:`MIN_SUBJECTS`, else slices, said in words;
* :func:`tost` and :func:`equivalent` -- the equivalence test behind every "no difference": two
  one-sided t-tests at the minimum effect, i.e. the whole interval inside ``±min_effect``;
* :class:`Thresholds` and :func:`classify` -- the verdict rule: a difference counts when its
  confidence interval excludes zero **and** its mean is at least the minimum effect of its metric;
* :func:`fmt_ci` (:func:`fmt_interval` for an interval alone, :func:`interval_text` in words) --
  a difference as text; :func:`judge`, :func:`change_phrase` and :func:`compare_sentence` -- a
  difference in words chosen by that rule. Every chapter phrases its comparisons with these, so no
  two pages can read the same numbers differently.

Differences are ``[mean, ci_low, ci_high]`` triples (95 % t-intervals unless said otherwise). This
module imports nothing else from the package: every layer above may use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["summarise", "difference", "MIN_SUBJECTS", "interval_over", "interval_basis", "subject_means", "paired_difference", "tost", "equivalent", "as_diff", "MIN_EFFECT", "CLOSE", "Thresholds", "classify",
           "fmt_interval", "fmt_ci", "interval_text", "judge", "change_phrase", "compare_sentence", "gap_to_recover"]

# The smallest difference the book calls a difference, per metric, fixed before any result was seen.
# SSIM: 0.01, the step at which reconstruction papers' SSIM tables start to rank methods apart.
# PSNR: 0.3 dB, three steps of the 0.1 dB those tables print. "Close to" allows twice the effect.
MIN_EFFECT = {"ssim": 0.01, "ssim_fg": 0.01, "psnr": 0.3, "psnr_fg": 0.3}
CLOSE = {"ssim": 0.02, "ssim_fg": 0.02, "psnr": 0.6, "psnr_fg": 0.6}


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


def difference(a: np.ndarray, b: np.ndarray, paired: bool = True, confidence: float = 0.95,
               subjects: Sequence[Any] | None = None, subjects_b: Sequence[Any] | None = None) -> tuple[float, float, float]:
    """``mean(a - b)`` with its confidence interval: (mean, low, high).

    ``paired``: ``a`` and ``b`` score the same slices in the same order, and the interval is the
    t-interval of the per-slice differences. Otherwise they are independent samples and the
    interval is Welch's (unequal variances). Fewer than two values give NaN bounds.

    ``subjects`` (the subject of each value of ``a``; of ``b`` too when paired, else ``subjects_b``)
    makes the observations subjects where :func:`interval_over` says there are enough of them: the
    mean difference of each subject's slices (paired), or each sample's subject means (Welch).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired and a.shape != b.shape:
        raise ValueError(f"a paired difference needs scores of the same slices: shapes {a.shape} and {b.shape}")
    if subjects is not None:
        if paired and interval_over(subjects) == "subjects":
            st = summarise(subject_means(a - b, subjects)[0], confidence)
            return st["mean"], st["ci_low"], st["ci_high"]
        if not paired:
            if subjects_b is None:
                raise ValueError("an unpaired difference over subjects needs subjects_b, the subjects of b")
            if interval_over(subjects) == "subjects" and interval_over(subjects_b) == "subjects":
                a, b = subject_means(a, subjects)[0], subject_means(b, subjects_b)[0]
    if paired:
        s = summarise(a - b, confidence)
        return s["mean"], s["ci_low"], s["ci_high"]
    from scipy import stats as scipy_stats

    m = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return m, float("nan"), float("nan")
    ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return m, float(ci.low), float(ci.high)


#: the fewest test subjects an interval is taken over: with two, the t quantile (12.7 at 1 degree
#: of freedom) leaves no interval worth reading, so the ``ci`` profile's two test subjects fall back
#: to slices and say so (:func:`interval_basis`)
MIN_SUBJECTS = 3


def interval_over(subjects: Sequence[Any]) -> str:
    """``"subjects"`` when ``subjects`` (one label per slice) holds at least :data:`MIN_SUBJECTS`
    distinct subjects, else ``"slices"``: the book's one rule for what an interval is over."""
    return "subjects" if len(set(subjects)) >= MIN_SUBJECTS else "slices"


def interval_basis(subjects: Sequence[Any]) -> str:
    """What an interval on these slices is over, in words: ``"4 test subjects (40 slices)"``, or
    ``"8 test slices (2 subjects, too few for an interval over subjects)"``."""
    n, k = len(subjects), len(set(subjects))
    if interval_over(subjects) == "subjects":
        return f"{k} test subjects ({n} slices)"
    return f"{n} test slices ({k} subject{'s' if k != 1 else ''}, too few for an interval over subjects)"


def subject_means(values: Sequence[float], subjects: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """The mean of ``values`` per subject (``subjects[i]`` labels ``values[i]``), subjects in the order
    first seen: ``(means, subjects)``."""
    values = np.asarray(values, dtype=np.float64)
    if len(subjects) != values.size:
        raise ValueError(f"{values.size} values but {len(subjects)} subject labels")
    order = list(dict.fromkeys(subjects))
    index = {s: i for i, s in enumerate(order)}
    groups = np.array([index[s] for s in subjects])
    sums = np.bincount(groups, weights=values, minlength=len(order))
    return sums / np.bincount(groups, minlength=len(order)), order


def paired_difference(result_a: Any, result_b: Any, metric: str = "ssim", confidence: float = 0.95,
                      over: str = "auto") -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same slices, with its t confidence interval: (mean, low, high).

    ``over="slices"`` takes every slice as an observation; ``over="subjects"`` first averages the
    slice differences of each subject (each file: ``slices[i][0]``) and takes the interval over
    those means, which is the honest one when slices of one subject resemble each other (one
    subject: NaN bounds). ``"auto"`` (the default) is :func:`interval_over`'s choice: subjects when
    there are at least :data:`MIN_SUBJECTS` of them.
    """
    if over not in ("auto", "slices", "subjects"):
        raise ValueError(f"over must be 'auto', 'slices' or 'subjects', got {over!r}")
    if over == "auto":
        over = interval_over([s[0] for s in result_a.slices])
    if result_a.slices != result_b.slices:
        raise ValueError(
            f"paired_difference needs results on the same slices in the same order: "
            f"{result_a.method!r} has {len(result_a.slices)}, {result_b.method!r} has {len(result_b.slices)}"
        )
    for r in (result_a, result_b):
        if metric not in r.metrics:
            raise ValueError(f"metric {metric!r} not in result {r.method!r}; choose from {sorted(r.metrics)}")
    if over == "slices":
        return difference(result_a.metrics[metric], result_b.metrics[metric], True, confidence)
    diffs = np.asarray(result_a.metrics[metric], dtype=np.float64) - np.asarray(result_b.metrics[metric], dtype=np.float64)
    means, _ = subject_means(diffs, [s[0] for s in result_a.slices])
    st = summarise(means, confidence)
    return st["mean"], st["ci_low"], st["ci_high"]


def tost(values: Sequence[float], margin: float) -> float:
    """The p-value of the two one-sided t-tests that the mean of ``values`` (paired differences) lies
    within ``(-margin, +margin)``: the larger of the two one-sided p-values. Equivalence at level
    ``alpha`` is ``tost(...) < alpha``; with 0.025 it is the 95 % interval lying inside the margin."""
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not (margin > 0 and math.isfinite(margin)):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    n = values.size
    if n < 2:
        return float("nan")
    se = values.std(ddof=1) / math.sqrt(n)
    if se == 0:
        return 0.0 if abs(values.mean()) < margin else 1.0
    lower = scipy_stats.t.sf((values.mean() + margin) / se, n - 1)   # H0: mean <= -margin
    upper = scipy_stats.t.cdf((values.mean() - margin) / se, n - 1)  # H0: mean >= +margin
    return float(max(lower, upper))


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
    ``min_effect`` (in units of ``metric``; by default :data:`MIN_EFFECT` of the metric); "close to"
    means no more than ``close`` below (by default :data:`CLOSE`).
    """

    metric: str = "ssim_fg"
    min_effect: float | None = None
    close: float | None = None

    def __post_init__(self):
        if self.metric not in MIN_EFFECT:
            raise ValueError(f"metric must be one of {', '.join(MIN_EFFECT)}; got {self.metric!r}")
        if self.min_effect is None:
            object.__setattr__(self, "min_effect", MIN_EFFECT[self.metric])
        if self.close is None:
            object.__setattr__(self, "close", CLOSE[self.metric])
        if not (self.min_effect >= 0 and math.isfinite(self.min_effect)):
            raise ValueError(f"min_effect must be a finite number >= 0, got {self.min_effect!r}")
        if not (self.close >= 0 and math.isfinite(self.close)):
            raise ValueError(f"close must be a finite number >= 0, got {self.close!r}")

    def on(self, metric: str) -> "Thresholds":
        """The same rule for another metric: this effect and tolerance where the unit is the same
        (SSIM and foreground SSIM), the metric's defaults where it is not (PSNR in dB)."""
        if metric == self.metric:
            return self
        if metric in MIN_EFFECT and metric.split("_")[0] == self.metric.split("_")[0]:
            return Thresholds(metric, self.min_effect, self.close)
        return Thresholds(metric)

    @property
    def unit(self) -> str:
        return " dB" if self.metric.startswith("psnr") else ""

    @property
    def digits(self) -> int:
        return 2 if self.metric.startswith("psnr") else 3

    @property
    def label(self) -> str:
        return {"ssim": "SSIM", "ssim_fg": "foreground SSIM", "psnr": "PSNR", "psnr_fg": "foreground PSNR"}[self.metric]

    def describe(self) -> str:
        unit = self.unit
        return (f"Verdicts use the {self.label}. A difference counts only when its 95 % confidence interval "
                f"excludes zero and its mean is at least {self.min_effect:g}{unit}; \"close to\" means at most "
                f"{self.close:g}{unit} below. A difference that does not count is *equivalent* when its whole "
                f"interval lies within ±{self.min_effect:g}{unit} (two one-sided tests at that margin), and "
                "*not clearly different* (the data cannot tell) otherwise. A claim is *reproduced* when every tested case satisfies it, "
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


def interval_text(diff: Sequence[float], thresholds: Thresholds = Thresholds()) -> str:
    """``"95 % CI +0.032 to +0.070"`` in the metric's unit and digits; ``"no interval: too few slices"``."""
    _, lo, hi = as_diff(diff, "diff")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval: too few slices"
    d, u = thresholds.digits, thresholds.unit
    return f"95 % CI {lo:+.{d}f} to {hi:+.{d}f}{u}"


def judge(diff: Sequence[float], thresholds: Thresholds = Thresholds(), better: str = "better",
          worse: str = "worse", same: str = "no clear difference") -> str:
    """The word among ``better`` / ``worse`` / ``same`` that :func:`classify` picks for ``diff``."""
    return {"better": better, "worse": worse, "no clear difference": same}[classify(diff, thresholds)]


def change_phrase(diff: Sequence[float], thresholds: Thresholds = Thresholds(), better: str = "higher by",
                  worse: str = "lower by", same: str = "not clearly different") -> str:
    """A difference in words by the rule: ``"higher by 0.051 (95 % CI +0.032 to +0.070)"``, ``"lower by
    1.20 dB (...)"``, or ``"not clearly different (+0.004, 95 % CI -0.002 to +0.010)"``."""
    m, _, _ = as_diff(diff, "diff")
    d, u, ci = thresholds.digits, thresholds.unit, interval_text(diff, thresholds)
    verdict = classify(diff, thresholds)
    if verdict == "no clear difference":
        return f"{same} ({m:+.{d}f}{u}, {ci})"
    return f"{better if verdict == 'better' else worse} {abs(m):.{d}f}{u} ({ci})"


def equivalent(diff: Sequence[float], thresholds: Thresholds = Thresholds()) -> bool:
    """Whether a difference is shown to be negligible: its whole confidence interval lies inside
    ``±min_effect`` (the two one-sided tests of :func:`tost`, each at half the interval's level).
    A "no clear difference" that is not equivalent is *inconclusive*: the data cannot tell."""
    _, lo, hi = as_diff(diff, "diff")
    e = thresholds.min_effect
    return math.isfinite(lo) and math.isfinite(hi) and e > 0 and -e < lo and hi < e


_WORDS = {"better": "better than", "worse": "worse than", "no clear difference": "not clearly different from"}


def compare_sentence(diff: Sequence[float], a: str, b: str, thresholds: Thresholds = Thresholds()) -> str:
    """``"<a> is better than <b> (foreground SSIM +0.051, 95 % CI +0.032 to +0.070)"``, by :func:`classify`;
    a "no clear difference" reads "equivalent, within ±0.01, to" when :func:`equivalent` holds, else
    "not clearly different from" (the data cannot tell)."""
    m, _, _ = as_diff(diff, "diff")
    d, u = thresholds.digits, thresholds.unit
    verdict = classify(diff, thresholds)
    words = _WORDS[verdict]
    if verdict == "no clear difference":
        words = (f"equivalent, within ±{thresholds.min_effect:g}{u}, to" if equivalent(diff, thresholds)
                 else "not clearly different from")
    return f"{a} is {words} {b} ({thresholds.label} {m:+.{d}f}{u}, {interval_text(diff, thresholds)})"


def gap_to_recover(pre: float, full: float, thresholds: Thresholds = Thresholds()) -> bool:
    """Whether a network trained on the whole target set (mean score ``full``) beats the pre-trained
    one (``pre``) by at least the minimum effect: only then is there a gap for fine-tuning to close."""
    return float(full) - float(pre) >= thresholds.min_effect
