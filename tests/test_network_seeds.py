"""``benchmarks/network_seeds.py``'s arithmetic (``grid.seed_comparison``), on records this test makes: per seed, seed-averaged over
test subjects, and Welch over seeds, against scipy."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import network_seeds as ns  # noqa: E402
from mrtl_core import grid  # noqa: E402

SUBJECTS = np.repeat(np.arange(4), 3)   # 4 test subjects, 3 slices each


def _entry(values, method, seed):
    values = np.asarray(values, float)
    return {"method": method, "seed": seed, "summary": {"ssim_fg": {"mean": float(values.mean())}},
            "per_slice": {"ssim_fg": values.tolist()}, "subjects": ["a", "b", "c", "d"],
            "slice_subject": SUBJECTS.tolist(), "best_epoch": 18, "epochs": 18, "precision": "float32"}


def _record(shift_pre, spread):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.8, 0.9, 12)
    record = {"_meta": {"target": "brain-3T", "acceleration": 4.0, "profile": {"name": "test"}, "cpu": "cpu",
                        "torch": "t", "threads": 1}}
    scores = {}
    for seed in (0, 1, 2):
        for method, shift in (("pre-trained", shift_pre), ("twin", 0.0)):
            scores[method, seed] = base + shift + spread * rng.standard_normal() + 0.001 * rng.standard_normal(12)
            record[ns._key(method, seed)] = _entry(scores[method, seed], method, seed)
    return record, scores


def test_the_three_views_of_a_difference_match_their_references():
    record, scores = _record(shift_pre=-0.001, spread=0.001)
    c = grid.seed_comparison(record, "pre-trained", "twin")
    # seed-averaged: slice scores averaged over seeds, then a mean per subject, t over the 4 subjects
    d = np.mean([scores["pre-trained", s] for s in (0, 1, 2)], 0) - np.mean([scores["twin", s] for s in (0, 1, 2)], 0)
    per_subject = np.array([d[SUBJECTS == k].mean() for k in range(4)])
    lo, hi = scipy.stats.t.interval(0.95, 3, loc=per_subject.mean(), scale=scipy.stats.sem(per_subject))
    assert c["averaged"] == pytest.approx([per_subject.mean(), lo, hi])
    # over seeds: each network's seed means as two samples, Welch
    a = np.array([scores["pre-trained", s].mean() for s in (0, 1, 2)])
    b = np.array([scores["twin", s].mean() for s in (0, 1, 2)])
    ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert c["over_seeds"] == pytest.approx([a.mean() - b.mean(), ci.low, ci.high])
    assert c["spread_a"]["std"] == pytest.approx(a.std(ddof=1))
    assert set(c["per_seed"]) == {0, 1, 2}
    assert c["equal_over_seeds"]                     # a 0.001 difference with a 0.001 seed spread
    text = ns.report(record)
    assert "equal over seeds (both equivalent within ±0.01): yes" in text and "| twin | 2 |" in text


def test_a_wide_seed_spread_keeps_equality_unshown_even_when_the_average_is_equivalent():
    record, _ = _record(shift_pre=0.0, spread=0.006)
    c = grid.seed_comparison(record, "pre-trained", "twin")
    lo, hi = c["over_seeds"][1:]
    assert not (-0.01 < lo and hi < 0.01) and not c["equal_over_seeds"]
    assert grid.seed_comparison(record, "pre-trained", "scratch (full split)") is None   # none recorded


def test_the_benchmark_refuses_the_source_as_target_and_negative_seeds(capsys):
    with pytest.raises(SystemExit):
        ns.main(["--profile", "ci", "--target", "brain-1.5T"])
    assert "is the source itself" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ns.main(["--profile", "ci", "--seeds", "-1"])
    with pytest.raises(SystemExit):    # another source: its own domain is the source itself
        ns.main(["--profile", "ci", "--source", "brain-1.5T-clinical", "--target", "brain-1.5T-clinical"])
    assert "is the source itself" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ns.main(["--profile", "ci", "--source", "brain-2T"])
    assert "invalid choice: 'brain-2T'" in capsys.readouterr().err


def test_another_source_is_that_domains_network_by_the_pretraining_recipe(monkeypatch):
    calls = []
    monkeypatch.setattr(ns.ex, "native_unet", lambda *a, **k: calls.append(("native", a, k)) or ("net", {}))
    monkeypatch.setattr(ns.ex, "pretrained_unet", lambda *a, **k: calls.append(("pretrained", a, k)) or ("net", {}))
    ns._train("ci", "pre-trained", "brain-3T-clinical", 4, 2, source="brain-1.5T-clinical")
    ns._train("ci", "pre-trained", "brain-3T", 4, 1)
    assert calls[0] == ("native", ("ci", "brain-1.5T-clinical", ns.ex.SOURCE_ACCELERATION), {"progress": False, "seed": 2})
    assert calls[1] == ("pretrained", ("ci",), {"progress": False, "seed": 1})


def test_the_sentence_states_the_average_the_spread_and_the_seed_level_verdict():
    record, _ = _record(shift_pre=-0.001, spread=0.001)
    text = grid.seed_sentence(record, "pre-trained", "twin")
    assert text.startswith("averaged over seeds [0, 1, 2] and [0, 1, 2], the pre-trained network is equivalent, within ±0.01, to the twin")
    assert "over 4 test subjects (12 slices)" in text and "seed means spread by" in text
    assert "taking each seed's mean as one observation (Welch), the pre-trained network is equivalent" in text
    one = {k: v for k, v in record.items() if k.startswith("_") or v["seed"] == 0}
    assert "Welch" not in grid.seed_sentence(one, "pre-trained", "twin")       # one seed: no interval over seeds
    assert grid.seed_sentence(record, "pre-trained", "scratch (full split)").startswith("*no pre-trained or no scratch")


def test_a_spread_below_the_digits_is_shown_not_rounded_to_zero():
    record, _ = _record(shift_pre=-0.001, spread=0.0)
    c = grid.seed_comparison(record, "pre-trained", "twin")
    text = grid.seed_sentence(record, "pre-trained", "twin")
    assert 0 < c["spread_b"]["std"] < 0.0005
    assert f"the twin's by {c['spread_b']['std']:.1g};" in text
    assert "by 0.000 (sd)" not in text and "by 0.000;" not in text
