"""mrtl_core.stats against independent references: scipy's t-tests, hand-made groupings, and a
direct two one-sided t-test computation."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats as sp

from mrtl_core import stats


@dataclass
class _Result:
    """The shape of an evaluation result the statistics read."""
    method: str
    slices: list
    metrics: dict


def _pair(seed=0, subjects=5, per_subject=8, effect=0.02, subject_sd=0.03, slice_sd=0.005):
    """Two methods on the same slices; the difference varies mostly *between* subjects."""
    rng = np.random.default_rng(seed)
    slices = [(f"s{i}.h5", j) for i in range(subjects) for j in range(per_subject)]
    base = rng.uniform(0.6, 0.9, len(slices))
    shift = np.repeat(effect + subject_sd * rng.standard_normal(subjects), per_subject)
    b = _Result("b", slices, {"ssim_fg": base})
    a = _Result("a", slices, {"ssim_fg": base + shift + slice_sd * rng.standard_normal(len(slices))})
    return a, b


def test_slice_interval_is_scipys_paired_t():
    a, b = _pair()
    m, lo, hi = stats.paired_difference(a, b, "ssim_fg", over="slices")
    ref = sp.ttest_rel(a.metrics["ssim_fg"], b.metrics["ssim_fg"]).confidence_interval(0.95)
    assert m == pytest.approx(np.mean(a.metrics["ssim_fg"] - b.metrics["ssim_fg"]))
    assert (lo, hi) == pytest.approx((ref.low, ref.high))


def test_subject_interval_is_the_t_interval_of_subject_means_and_wider():
    a, b = _pair()
    d = a.metrics["ssim_fg"] - b.metrics["ssim_fg"]
    means = d.reshape(5, 8).mean(axis=1)          # the slices are grouped by subject in order
    ref = sp.ttest_1samp(means, 0.0).confidence_interval(0.95)
    m, lo, hi = stats.paired_difference(a, b, "ssim_fg", over="subjects")
    assert m == pytest.approx(means.mean()) and (lo, hi) == pytest.approx((ref.low, ref.high))
    _, slo, shi = stats.paired_difference(a, b, "ssim_fg", over="slices")
    assert hi - lo > 2 * (shi - slo)   # slices of one subject are not independent observations
    assert stats.paired_difference(a, b, "ssim_fg") == (m, lo, hi)     # the default: subjects, 5 >= MIN_SUBJECTS


def test_the_rule_for_what_an_interval_is_over():
    few_a, few_b = _pair(subjects=2)
    assert stats.interval_over([s[0] for s in few_a.slices]) == "slices"
    assert stats.paired_difference(few_a, few_b, "ssim_fg") == stats.paired_difference(few_a, few_b, "ssim_fg", over="slices")
    assert stats.interval_basis([s[0] for s in few_a.slices]) == "16 test slices (2 subjects, too few for an interval over subjects)"
    a, _ = _pair(subjects=3, per_subject=4)
    assert stats.interval_basis([s[0] for s in a.slices]) == "3 test subjects (12 slices)"


def test_difference_over_subjects_paired_and_welch():
    a, b = _pair()
    subjects = [s[0] for s in a.slices]
    x, y = a.metrics["ssim_fg"], b.metrics["ssim_fg"]
    assert stats.difference(x, y, subjects=subjects) == pytest.approx(stats.paired_difference(a, b, "ssim_fg", over="subjects"))
    # Welch over subject means: scipy on the two sets of 5 means
    ref = sp.ttest_ind(x.reshape(5, 8).mean(1), y.reshape(5, 8).mean(1), equal_var=False).confidence_interval(0.95)
    m, lo, hi = stats.difference(x, y, paired=False, subjects=subjects, subjects_b=subjects)
    assert m == pytest.approx(x.mean() - y.mean()) and (lo, hi) == pytest.approx((ref.low, ref.high))
    few = [s[0] for s in _pair(subjects=2)[0].slices]
    assert stats.difference(x[:16], y[:16], paired=False, subjects=few, subjects_b=few) == \
        pytest.approx(stats.difference(x[:16], y[:16], paired=False))
    with pytest.raises(ValueError, match="subjects_b"):
        stats.difference(x, y, paired=False, subjects=subjects)


def test_subject_means_group_in_first_seen_order():
    means, names = stats.subject_means([1, 2, 3, 4, 5], ["b", "a", "b", "a", "c"])
    assert names == ["b", "a", "c"] and means.tolist() == [2.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="5 values but 4"):
        stats.subject_means([1, 2, 3, 4, 5], ["a"] * 4)
    with pytest.raises(ValueError, match="over must be"):
        stats.paired_difference(*_pair(), over="volumes")


def test_one_subject_has_no_interval():
    a, b = _pair(subjects=1)
    _, lo, hi = stats.paired_difference(a, b, "ssim_fg", over="subjects")
    assert math.isnan(lo) and math.isnan(hi)


def _tost_reference(x, margin):
    n, mean, se = len(x), np.mean(x), np.std(x, ddof=1) / math.sqrt(len(x))
    p_low = 1 - sp.t.cdf((mean + margin) / se, n - 1)
    p_high = sp.t.cdf((mean - margin) / se, n - 1)
    return max(p_low, p_high)


@pytest.mark.parametrize("shift", [0.0, 0.004, 0.009, 0.02])
def test_tost_is_the_larger_one_sided_p(shift):
    x = shift + 0.01 * np.random.default_rng(3).standard_normal(30)
    assert stats.tost(x, 0.01) == pytest.approx(_tost_reference(x, 0.01), rel=1e-9)


def test_equivalence_is_the_interval_inside_the_margin_and_matches_tost():
    rule = stats.Thresholds()   # foreground SSIM, min effect 0.01
    assert stats.equivalent([0.001, -0.004, 0.006], rule)
    assert not stats.equivalent([0.001, -0.012, 0.014], rule)          # inconclusive: too wide
    assert not stats.equivalent([0.001, float("nan"), float("nan")], rule)
    x = 0.002 + 0.008 * np.random.default_rng(5).standard_normal(40)
    s = stats.summarise(x)
    inside = stats.equivalent([s["mean"], s["ci_low"], s["ci_high"]], rule)
    assert inside == (stats.tost(x, rule.min_effect) < 0.025)   # the 95 % CI is TOST at 2.5 % a side


def test_sentences_tell_equivalent_from_inconclusive():
    assert "is equivalent, within ±0.01, to B" in stats.compare_sentence([0.001, -0.004, 0.006], "A", "B")
    assert "is not clearly different from B" in stats.compare_sentence([0.001, -0.02, 0.022], "A", "B")
    assert "is better than B" in stats.compare_sentence([0.05, 0.03, 0.07], "A", "B")
    psnr = stats.Thresholds().on("psnr")
    assert psnr.min_effect == stats.MIN_EFFECT["psnr"]
    assert "within ±0.3 dB" in stats.compare_sentence([0.05, -0.1, 0.2], "A", "B", psnr)


def test_welch_difference_is_scipys():
    rng = np.random.default_rng(1)
    x, y = rng.normal(0.8, 0.02, 12), rng.normal(0.78, 0.05, 9)
    m, lo, hi = stats.difference(x, y, paired=False)
    ref = sp.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert m == pytest.approx(x.mean() - y.mean()) and (lo, hi) == pytest.approx((ref.low, ref.high))


def test_a_mean_over_training_runs_pairs_like_the_mean_of_the_runs_differences():
    """``evaluate.mean_over_runs``: per-slice means over seeds; the paired difference of two such means
    equals the subject-level interval of the seed-averaged slice differences, computed here by hand
    with scipy."""
    import scipy.stats

    from mrtl_core.evaluate import EvalResult, mean_over_runs

    rng = np.random.default_rng(3)
    slices = [(f"subject{s}.h5", i) for s in range(5) for i in range(4)]
    runs_a = [EvalResult("a", {"ssim_fg": rng.uniform(0.6, 0.8, 20)}, slices) for _ in range(3)]
    runs_b = [EvalResult("b", {"ssim_fg": rng.uniform(0.6, 0.8, 20)}, slices) for _ in range(3)]
    mean_a, mean_b = mean_over_runs(runs_a), mean_over_runs(runs_b, "b over seeds")
    assert mean_a.method == "a (mean of 3 runs)" and mean_b.method == "b over seeds"
    np.testing.assert_allclose(mean_a.metrics["ssim_fg"], np.mean([r.metrics["ssim_fg"] for r in runs_a], 0))
    diffs = np.mean([a.metrics["ssim_fg"] - b.metrics["ssim_fg"] for a, b in zip(runs_a, runs_b)], 0)
    per_subject = diffs.reshape(5, 4).mean(1)
    lo, hi = scipy.stats.t.interval(0.95, 4, loc=per_subject.mean(), scale=scipy.stats.sem(per_subject))
    np.testing.assert_allclose(stats.paired_difference(mean_a, mean_b, "ssim_fg", over="subjects"),
                               [per_subject.mean(), lo, hi], rtol=1e-12)
    with pytest.raises(ValueError, match="same slices"):
        mean_over_runs([runs_a[0], EvalResult("c", {"ssim_fg": np.zeros(19)}, slices[:19])])
    with pytest.raises(ValueError, match="records metrics"):
        mean_over_runs([runs_a[0], EvalResult("d", {"psnr": np.zeros(20)}, slices)])
    with pytest.raises(ValueError, match="at least one"):
        mean_over_runs([])
