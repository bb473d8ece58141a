"""Tables of the benchmark grid (``mrtl_core.grid``), against independent computations."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mrtl_core import grid

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _entry(target, method, values, **extra):
    values = np.asarray(values, dtype=float)
    per_slice = {m: (values if m.startswith("ssim") else 30 * values).tolist() for m in grid.METRICS}
    summary = {m: {"mean": float(np.mean(v))} for m, v in per_slice.items()}
    return {"target": target, "method": method, "summary": summary, "per_slice": per_slice, **extra}


@pytest.fixture()
def results():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.9, size=12)
    r = {"_meta": {"profile": {"name": "test", "slices_per_subject": 3}, "torch": "x", "threads": 1}}  # 4 subjects
    r["knee R4 | pretrained"] = _entry("knee R4", "pretrained", base)
    r["knee R4 | native"] = _entry("knee R4", "native", base + 0.05 + 0.01 * rng.standard_normal(12), num_train_slices=300)
    r["knee R4 | scratch-full"] = _entry("knee R4", "scratch-full", base + 0.03)
    for n in (1, 5):
        for seed in (0, 1, 2):
            r[f"knee R4 | fine-tuned N={n} seed={seed}"] = _entry("knee R4", "fine-tuned", base + 0.01 * n + 0.002 * seed, n=n, seed=seed)
            r[f"knee R4 | scratch N={n} seed={seed}"] = _entry("knee R4", "scratch", base - 0.1 + 0.01 * n, n=n, seed=seed)
            r[f"knee R4 | forgetting N={n} seed={seed}"] = _entry("knee R4", "forgetting", base - 0.2, n=n, seed=seed)
    return r


def test_paired_difference_matches_scipy(results):
    a = np.array(results["knee R4 | pretrained"]["per_slice"]["ssim_fg"])
    b = np.array(results["knee R4 | native"]["per_slice"]["ssim_fg"])
    mean, lo, hi = grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"))
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-10)
    assert hi < 0   # the twin is better by construction
    assert grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "nope")) is None


def test_subject_interval_matches_scipy_on_subject_means(results):
    """Over subjects: the t-interval of the 4 subjects' mean differences (3 consecutive slices each, as
    an old entry is read), and the same from the subjects an entry records, in any slice order."""
    a = np.array(results["knee R4 | pretrained"]["per_slice"]["psnr"])
    b = np.array(results["knee R4 | native"]["per_slice"]["psnr"])
    per_subject = (a - b).reshape(4, 3).mean(axis=1)
    ref = stats.ttest_1samp(per_subject, 0.0).confidence_interval(0.95)
    pre, twin = grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native")
    mean, lo, hi = grid.paired(pre, twin, "psnr", over="subjects", slices_per_subject=3)
    assert mean == pytest.approx(per_subject.mean(), abs=1e-12)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-10)
    slices = grid.paired(pre, twin, "psnr")
    assert hi - lo > slices[2] - slices[1]          # 3 df instead of 11: wider
    # recorded subjects: interleaved order, the same grouping -> the same interval
    order = np.argsort(np.arange(12) % 3, kind="stable")
    for item in (pre, twin):
        item["per_slice"] = {m: np.asarray(v)[order].tolist() for m, v in item["per_slice"].items()}
        item["subjects"] = ["s0", "s1", "s2", "s3"]
        item["slice_subject"] = [int(i) // 3 for i in order]
    assert grid.slice_subjects(pre)[:4] == ["s0", "s1", "s2", "s3"]
    assert grid.paired(pre, twin, "psnr", over="subjects") == pytest.approx([mean, lo, hi], abs=1e-12)
    twin["subjects"] = ["s0", "s1", "s2", "x"]
    with pytest.raises(ValueError, match="different subjects"):
        grid.paired(pre, twin, "psnr", over="subjects")


def test_subjects_unknown_is_a_clear_error(results):
    pre, twin = grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native")
    with pytest.raises(ValueError, match="records no subjects.*12 slices.*5"):
        grid.paired(pre, twin, over="subjects", slices_per_subject=5)
    with pytest.raises(ValueError, match="over must be"):
        grid.paired(pre, twin, over="seeds")


def test_paired_refuses_different_slices(results):
    results["knee R4 | native"]["per_slice"]["ssim_fg"] = [0.5] * 3
    with pytest.raises(ValueError, match="different slices"):
        grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"))


def test_entries_are_found_by_their_fields_and_keys_are_checked(tmp_path, results):
    assert grid.entry(results, "knee R4", "fine-tuned", 5, 1) is results["knee R4 | fine-tuned N=5 seed=1"]
    assert grid.entry(results, "knee R4", "fine-tuned", 5) is None        # seeded runs need their seed
    assert [e["seed"] for e in grid.seed_runs(results, "knee R4", "scratch", 1)] == [0, 1, 2]
    assert grid.entry_key("knee R4", "fine-tuned-no-early-stopping", 5, 0, budget=300) == \
        "knee R4 | fine-tuned-no-early-stopping N=5 steps=300 seed=0"
    results["knee R4 | fine-tuned N=5 seed=1"]["seed"] = 7   # a key that disagrees with its fields
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match="N=5 seed=1.*seed=7"):
        grid.load_grid(path)


def test_overfit_table_pairs_runs_by_fields(results):
    for seed in (0, 1, 2):
        ref = results[f"knee R4 | fine-tuned N=5 seed={seed}"]["per_slice"]["ssim_fg"]
        results[grid.entry_key("knee R4", "fine-tuned-no-early-stopping", 5, seed, budget=300)] = _entry(
            "knee R4", "fine-tuned-no-early-stopping", np.asarray(ref) - 0.02 * (seed + 1), n=5, seed=seed, budget=300, steps=300)
    table = grid.overfit_table(results)
    row = table.loc["knee R4, N=5"]
    assert row["steps without"] == 300 and row["seeds"] == 3
    assert row["no early stopping"] - row["early stopping"] == pytest.approx(-0.04)


def test_seed_summary_is_the_t_interval_over_seeds(results):
    runs = grid.seed_runs(results, "knee R4", "fine-tuned", 5)
    means = np.array([results[f"knee R4 | fine-tuned N=5 seed={s}"]["summary"]["ssim_fg"]["mean"] for s in (0, 1, 2)])
    s = grid.seed_summary(runs)
    lo, hi = stats.t.interval(0.95, 2, loc=means.mean(), scale=stats.sem(means))
    assert s["n"] == 3 and s["mean"] == pytest.approx(means.mean())
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    single = grid.seed_summary(runs[:1])
    assert single["n"] == 1 and math.isnan(single["ci_low"])
    assert grid.seed_summary([]) is None


def test_tables(results):
    assert grid.seeds(results) == [0, 1, 2] and grid.ns(results) == [1, 5] and grid.targets(results) == ["knee R4"]
    gaps = grid.gap_table(results)
    assert list(gaps.index) == ["knee R4"] and gaps.loc["knee R4", "twin slices"] == 300
    mean, lo, hi = grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"))
    assert gaps.loc["knee R4", "[CI over slices]"] == f"[{lo:+.3f}, {hi:+.3f}]"
    mean_s, lo_s, hi_s = grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"),
                                     over="subjects", slices_per_subject=3)
    assert gaps.loc["knee R4", "pre − native [CI]"] == f"{mean_s:+.3f} [{lo_s:+.3f}, {hi_s:+.3f}]"
    assert gaps.loc["knee R4", "CI over"] == "4 test subjects (12 slices)"
    assert grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"),
                       over="auto", slices_per_subject=3) == [mean_s, lo_s, hi_s]
    # two subjects are too few: the book's rule falls back to slices, and says so
    assert grid.paired(grid.entry(results, "knee R4", "pretrained"), grid.entry(results, "knee R4", "native"),
                       over="auto", slices_per_subject=6) == [mean, lo, hi]
    assert -0.06 < mean < -0.04
    curve = grid.curve_table(results, "knee R4")
    assert list(curve.index) == [1, 5]
    assert curve.loc[5, "fine-tuned"] > curve.loc[1, "fine-tuned"] > curve.loc[1, "scratch"]
    assert curve.loc[1, "fine-tuned seeds"] == 3
    assert curve["native twin"].iloc[0] == pytest.approx(results["knee R4 | native"]["summary"]["ssim_fg"]["mean"])
    forgetting = grid.forgetting_table(results)
    assert forgetting.loc["knee R4", "N=5"] == pytest.approx(results["knee R4 | forgetting N=5 seed=0"]["summary"]["ssim_fg"]["mean"])
    text = grid.markdown_report(results)
    assert "| knee R4 |" in text and "Generalisation gap at equal data (psnr)" in text


def test_load_grid_names_file_and_bad_entry(tmp_path, results):
    missing = tmp_path / "experiment-x.json"
    with pytest.raises(FileNotFoundError, match="experiment-x.json.*benchmarks/experiment.py"):
        grid.load_grid(missing)
    del results["knee R4 | native"]["per_slice"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match="knee R4 \\| native.*per_slice"):
        grid.load_grid(path)


def test_committed_standard_grid_reads():
    """The grid recorded in the repository (the book's chapter 8 reads it) parses into every table."""
    results = grid.load_grid(RESULTS / "experiment-standard.json")
    assert results["_meta"]["profile"]["name"] == "standard"
    for t in grid.targets(results):
        grid.curve_table(results, t)
    assert len(grid.gap_table(results)) >= 1


@pytest.mark.slow
def test_the_benchmark_writes_entries_the_grid_reads(tmp_path):
    """``benchmarks/experiment.py`` (ci profile, one target, one N and seed) writes keys from the
    entries' fields, and every table reads them back, the over-fitting pair included."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("grid_benchmark", RESULTS.parent / "experiment.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "grid.json"
    assert bench.main(["--profile", "ci", "--shifts", "knee-1.5T", "--ns", "5", "--seeds", "0", "--no-scratch",
                       "--no-native", "--overfit-steps", "5", "--out", str(out)]) == 0
    results = grid.load_grid(out)   # checks every key against its fields
    assert grid.entry(results, "knee-1.5T R4", "fine-tuned", 5, 0) is not None
    assert grid.entry(results, "knee-1.5T R4", "forgetting", 5, 0) is not None
    stopped = grid.entry(results, "knee-1.5T R4", "fine-tuned-no-early-stopping", 5, 0, budget=5)
    assert stopped is not None and stopped["budget"] == 5
    assert list(grid.overfit_table(results).index) == ["knee-1.5T R4, N=5"]
    assert grid.curve_table(results, "knee-1.5T R4").loc[5, "fine-tuned seeds"] == 1
