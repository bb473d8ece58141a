"""``benchmarks/more_test_subjects.py``: chapter 8's fine-tuning cases judged again on new test subjects.

Its networks come from the cache and its scoring is ``evaluate`` (tested elsewhere); here: that each run
of a recipe record is reloaded at the rate it was trained at (so its cache entry, not a new network, is
used), and that the cases are judged on both test sets by the book's rule, on records this test makes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mrtl_core import grid
from mrtl_core.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import more_test_subjects as mts  # noqa: E402

STANDARD = get_profile("standard")


def _entry(values, subjects, **extra):
    values = np.asarray(values, float)
    return {**extra, "summary": {"ssim_fg": {"mean": float(values.mean())}}, "per_slice": {"ssim_fg": values.tolist()},
            "subjects": [f"s{i}" for i in range(max(subjects) + 1)], "slice_subject": list(subjects)}


def _records(n_subjects: int, flips_at_5: float, seed_noise: float = 0.002):
    """A recipe record (pre-trained 0.5, twin 0.7; flips and scratch-flips at N = 5, 3 seeds) with its
    full-split scratch networks (0.66) in the same record, as more_test_subjects writes them."""
    subjects = np.repeat(np.arange(n_subjects), 3)
    wobble = np.tile([0.01, -0.01, 0.0], n_subjects) + 0.004 * np.sin(subjects)
    record = {"_meta": {"target": "knee-1.5T", "acceleration": 4.0},
              "pre-trained": _entry(np.full(subjects.size, 0.5), subjects),
              "twin": _entry(np.full(subjects.size, 0.7), subjects)}
    for seed in (0, 1, 2):
        for method, value in (("baseline", 0.58), ("flips", flips_at_5), ("scratch-flips", 0.60)):
            record[f"{method} | N=5 | seed={seed}"] = _entry(value + wobble + seed_noise * (seed - 1), subjects,
                                                             method=method, n=5, seed=seed)
        record[f"{grid.FULL_SPLIT} | seed={seed}"] = {"method": grid.FULL_SPLIT, "seed": seed,
                                                      **_entry(0.66 + wobble + 0.003 * (seed - 1), subjects)}
    return record


def test_each_run_is_reloaded_at_the_rate_it_was_trained_at():
    meta_tuned, meta_default = {"finetune_lr": None}, {"finetune_lr": STANDARD.finetune_lr}
    assert mts.run_lr({"lr": 1e-3}, meta_tuned, STANDARD.finetune_lr) == 1e-3          # --finetune-lrs: the entry's
    assert mts.run_lr({"lr": STANDARD.finetune_lr}, meta_tuned, STANDARD.finetune_lr) is None   # the profile's key
    assert mts.run_lr({}, meta_default, STANDARD.finetune_lr) is None                  # a record at the profile's rate
    assert mts.run_lr({}, {"finetune_lr": 1e-3}, STANDARD.finetune_lr) == 1e-3         # an --lr record


def test_the_cases_are_judged_on_both_test_sets_by_the_books_rule():
    book = _records(4, flips_at_5=0.605)     # flips - scratch +0.005: under the minimum effect
    more = _records(12, flips_at_5=0.625)    # +0.025 on the new subjects: better
    rows = {(r["claim"], r["case"]): r for r in mts.case_rows(book, book, more)}
    same_n = rows["finetune_beats_scratch_same_n", "knee-1.5T R4, N = 5 (flips)"]
    assert same_n["book"][0] == pytest.approx(0.005) and same_n["book_holds"] is False
    assert same_n["more"][0] == pytest.approx(0.025) and same_n["more_holds"] is True
    close = rows["finetune_close_to_full", "knee-1.5T R4, N = 5 (flips)"]
    assert close["book"][0] == pytest.approx(0.605 - 0.66) and close["book_holds"] is False   # more than 0.02 below
    assert close["more"][0] == pytest.approx(0.625 - 0.66) and close["more_holds"] is False
    text = mts.report_text({**more, "_meta": {**more["_meta"], "profile": {"name": "standard"}, "cpu": "a CPU",
                                               "torch": "2", "threads": 2}}, book, book)
    assert "| finetune_beats_scratch_same_n | knee-1.5T R4, N = 5 (flips) | +0.005" in text
    assert "4 test subjects (12 slices)" in text and "12 test subjects (36 slices)" in text
    share = [100 * (v + 0.004 * np.sin(np.arange(k)).mean() - 0.5) / 0.2 for v, k in ((0.605, 4), (0.625, 12))]
    assert f"* flips, N = 5: {share[0]:.0f} % -> {share[1]:.0f} %" in text


def test_bad_requests_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mts.main(["--profile", "ci", "--subjects", "1"])
    assert "--subjects must be >= 2" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="finetune-recipes-ci-knee-1.5T-R4.json: no recipe record"):
        mts.main(["--profile", "ci", "--results", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="no record to report"):
        mts.main(["--profile", "ci", "--results", str(tmp_path), "--report"])
