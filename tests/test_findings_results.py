"""Chapter 8 (results) against the records it summarises.

The results chapter judges the paper's claims from the other chapters' records. These tests read
the records of the papermill session (``executed_records``, profile ``ci``), re-derive verdicts from
the raw numbers of chapters 4 and 6 with code written here (not ``mrtl_core.report``), and check that
the chapter's record says the same: a results page whose verdicts drift from its sources fails.
"""
from __future__ import annotations

import pytest

RESULTS = "08_results"
VERDICTS = {"reproduced", "partly", "not reproduced", "not tested"}


@pytest.fixture(scope="module")
def results(executed_records) -> dict:
    if RESULTS not in executed_records:
        pytest.fail(f"no record for {RESULTS!r}: notebooks/08_results.ipynb did not run or did not save "
                    f"(records found: {sorted(executed_records)})")
    return executed_records[RESULTS]


def _source(records: dict, chapter: str) -> dict:
    if chapter not in records:
        pytest.fail(f"no record for {chapter!r}, which the results chapter reads (records: {sorted(records)})")
    return records[chapter]["numbers"]


def _holds_better(diff, min_effect: float) -> bool:
    mean, low, _ = diff
    return low is not None and low == low and low > 0 and mean >= min_effect


def _verdict(holds: list[bool]) -> str:
    if not holds:
        return "not tested"
    return "reproduced" if all(holds) else ("partly" if any(holds) else "not reproduced")


def test_results_record_is_complete(results, executed_records):
    n = results["numbers"]
    assert results["profile"] == "ci"
    assert set(n["verdicts"]) == {"source_beats_zero_filled", "generalises_poorly", "finetune_improves",
                                  "finetune_close_to_full", "finetune_beats_scratch_same_n"}
    assert set(n["verdicts"].values()) <= VERDICTS
    # under papermill every earlier chapter ran in the same session: nothing the chapter reads is missing
    earlier = {c for c in executed_records if c[:2].isdigit() and c < RESULTS}
    assert {"04_pretrained_unet", "05_generalization", "06_fine_tuning"} <= earlier
    assert set(n["records_read"]) >= earlier
    assert not [m for m in n["missing_records"] if any(c[:3] == m[:3] for c in earlier)]
    assert n["profile_mismatch"] == {}
    assert n["metric"] == "ssim_fg" and n["min_effect"] > 0 and n["close"] > 0


def test_source_verdict_recomputed_from_chapter_4(results, executed_records):
    n = results["numbers"]
    diff = _source(executed_records, "04_pretrained_unet")["differences"]["U-Net"]["zero-filled"][n["metric"]]
    assert n["verdicts"]["source_beats_zero_filled"] == _verdict([_holds_better(diff, n["min_effect"])])
    case = n["claims"]["source_beats_zero_filled"]["cases"][0]
    assert case["diff"] == pytest.approx(diff)


def test_finetune_verdicts_recomputed_from_chapter_6(results, executed_records):
    n = results["numbers"]
    ft = _source(executed_records, "06_fine_tuning")
    metric, eff, n_tab = n["metric"], n["min_effect"], str(ft["n_table"])
    improves = [_holds_better(s["diff_ft_minus_pre"][n_tab][metric], eff)
                for s in ft["shifts"].values() if n_tab in s["diff_ft_minus_pre"]]
    assert n["verdicts"]["finetune_improves"] == _verdict(improves)
    beats = [_holds_better(d[metric], eff) for s in ft["shifts"].values() for d in s["diff_ft_minus_scratch"].values()]
    assert n["verdicts"]["finetune_beats_scratch_same_n"] == _verdict(beats)
    assert len(n["claims"]["finetune_beats_scratch_same_n"]["cases"]) == len(beats)
    close = [s["fine-tuned"][n_tab][metric] >= s["scratch (full)"][metric] - n["close"]
             for s in ft["shifts"].values()
             if "scratch (full)" in s and n_tab in s["fine-tuned"]
             and s["scratch (full)"][metric] - s["pre-trained"][metric] >= eff]
    assert n["verdicts"]["finetune_close_to_full"] == _verdict(close)


def test_generalization_cases_quote_chapter_5(results, executed_records):
    n = results["numbers"]
    gen = _source(executed_records, "05_generalization")
    cases = {c["case"]: c for c in n["claims"]["generalises_poorly"]["cases"]}
    assert set(gen["reference"]) <= set(cases), "every shift with a target-trained reference must be judged"
    for name, ref in gen["reference"].items():
        diff = ref["unet_minus_ref"][n["metric"]]
        assert cases[name]["diff"] == pytest.approx(diff)
        mean, _, high = diff
        assert cases[name]["holds"] == (high == high and high < 0 and mean <= -n["min_effect"])


def test_verdicts_reproduce_from_the_same_records(results, executed_records):
    from mrtl_core import report, stats

    sources = {k: v for k, v in executed_records.items() if k != RESULTS}
    n = results["numbers"]
    again = report.claims(sources, stats.Thresholds(metric=n["metric"], min_effect=n["min_effect"], close=n["close"]),
                          n.get("extra_cases"))
    assert {v.key: v.verdict for v in again} == n["verdicts"]
