"""``benchmarks/source_control.py``'s arithmetic, on a record this test makes: each arm minus the
pre-trained network (``grid.seed_averaged_difference``: seed-averaged, paired over test subjects) against scipy, and the grid's
over-fitting table read from the same record."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import source_control as sc  # noqa: E402
from mrtl_core import grid  # noqa: E402

SUBJECTS = np.repeat(np.arange(4), 3)   # 4 test subjects, 3 slices each


def _entry(values, **fields):
    values = np.asarray(values, float)
    return {**fields, "summary": {"ssim_fg": {"mean": float(values.mean())}}, "per_slice": {"ssim_fg": values.tolist()},
            "subjects": ["a", "b", "c", "d"], "slice_subject": SUBJECTS.tolist()}


def _record(drift):
    rng = np.random.default_rng(3)
    pre = rng.uniform(0.8, 0.9, 12)
    record = {"_meta": {"profile": {"name": "test"}, "n": 5, "steps": 300, "cpu": "cpu", "torch": "t", "threads": 1},
              grid.entry_key(sc.TARGET, "pretrained"): _entry(pre, target=sc.TARGET, method="pretrained")}
    scores = {}
    for seed in (0, 1, 2):
        for method, shift, budget in (("fine-tuned", 0.0, None), ("fine-tuned-no-early-stopping", drift, 300)):
            scores[method, seed] = pre + shift + 0.003 * rng.standard_normal(12)
            fields = dict(target=sc.TARGET, method=method, n=5, seed=seed, budget=budget)
            record[grid.entry_key(**fields)] = _entry(scores[method, seed], **{k: v for k, v in fields.items() if v is not None})
    return record, pre, scores


def test_each_arm_minus_the_pretrained_network_matches_scipy_over_subjects():
    record, pre, scores = _record(drift=-0.04)
    for method in ("fine-tuned", "fine-tuned-no-early-stopping"):
        averaged = np.mean([scores[method, s] for s in (0, 1, 2)], axis=0)
        per_subject = np.array([(averaged - pre)[SUBJECTS == j].mean() for j in range(4)])
        half = scipy.stats.t.ppf(0.975, 3) * per_subject.std(ddof=1) / np.sqrt(4)
        mean, lo, hi = grid.seed_averaged_difference(record, sc.TARGET, method)
        assert mean == pytest.approx(per_subject.mean(), abs=1e-12)
        assert (lo, hi) == pytest.approx((per_subject.mean() - half, per_subject.mean() + half), abs=1e-12)
    assert grid.seed_averaged_difference({"_meta": {}}, sc.TARGET, "fine-tuned") is None


def test_the_report_reads_the_grid_table_and_says_which_arm_loses(tmp_path, capsys):
    record, _, scores = _record(drift=-0.04)
    table = grid.overfit_table(record)
    assert list(table.index) == [f"{sc.TARGET}, N=5"] and table.iloc[0]["seeds"] == 3
    diffs = [scores["fine-tuned-no-early-stopping", s].mean() - scores["fine-tuned", s].mean() for s in (0, 1, 2)]
    assert table.iloc[0]["difference [CI over seeds]"].startswith(f"{np.mean(diffs):+.3f}")
    text = sc.report(record)
    assert "early stopping, seed-averaged, minus the pre-trained network: the fine-tuned network is equivalent" in text
    assert "no early stopping, 300 steps, seed-averaged, minus the pre-trained network: the fine-tuned network is worse" in text
    out = tmp_path / "r.json"
    out.write_text(json.dumps(record))
    assert sc.main(["--report", "--out", str(out)]) == 0
    assert "is worse than the pre-trained one" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sc.main(["--steps", "0"])
