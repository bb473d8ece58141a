"""Helpers the findings tests share: read a chapter's recorded numbers, check a value is a number."""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import pytest


def chapter_numbers(records: dict, chapter: str) -> dict:
    """The ``numbers`` a chapter recorded; fail (not skip) when the chapter left no record."""
    if chapter not in records:
        pytest.fail(f"no record for {chapter!r}: the notebook did not run or did not call save_record "
                    f"(records found: {sorted(records)})")
    return records[chapter]["numbers"]


def finite(value, name: str) -> float:
    assert isinstance(value, (int, float)) and math.isfinite(value), f"{name} = {value!r} is not a finite number"
    return float(value)


# --- the margin a ci-profile comparison must clear ------------------------------------------------
BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"   # the recorded benchmarks
SPREAD_RECORD = BENCHMARK_RESULTS / "kernel_spread-ci.json"


@functools.lru_cache(maxsize=1)
def _spread_ranges() -> dict:
    if not SPREAD_RECORD.exists():
        pytest.fail(f"{SPREAD_RECORD} is missing: run benchmarks/kernel_spread.py")
    return json.loads(SPREAD_RECORD.read_text())["ranges"]


def recorded(numbers: dict, path: str) -> float:
    """The number at ``path`` (keys joined by ``/``, list indices as digits) of a chapter's record."""
    value = numbers
    for key in path.split("/"):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return finite(value, path)


def kernel_range(chapter: str, path: str) -> float:
    """How far the number at ``path`` of ``chapter``'s ci record moved between CPU kernel families
    and thread counts (max - min), as ``benchmarks/kernel_spread.py`` measured it."""
    ranges = _spread_ranges()
    if path not in ranges.get(chapter, {}):
        pytest.fail(f"{SPREAD_RECORD.name} has no spread for {chapter}: {path}; a finding asserted on a new "
                    "number needs its spread measured: re-run benchmarks/kernel_spread.py")
    low, high = ranges[chapter][path]
    return high - low


def clears(numbers: dict, chapter: str, better: str | None, worse: str | None, what: str = "") -> str | None:
    """``None`` when the number at ``better`` exceeds the one at ``worse`` (``None``: zero) by more
    than the two numbers' kernel spread, the most their difference can have moved between kernels;
    else the failure message. A ci-profile finding asserted this way does not flip on a CPU whose
    kernels the measured spread covers."""
    if better is None and worse is None:
        raise ValueError("clears needs at least one recorded number")
    b, w = (recorded(numbers, path) if path else 0.0 for path in (better, worse))
    if os.environ.get("MRTL_FINDINGS_WORST_CASE"):
        # certify the assertion itself: the worst measured kernel for each side, not this run's values
        b = _spread_ranges()[chapter][better][0] if better else 0.0
        w = _spread_ranges()[chapter][worse][1] if worse else 0.0
    margin = sum(kernel_range(chapter, path) for path in (better, worse) if path)
    if b - w > margin:
        return None
    return (f"{what or chapter}: {better or 0} = {b:.4f} vs {worse or 0} = {w:.4f}: the difference {b - w:+.4f} "
            f"does not clear the cross-kernel spread {margin:.4f}")
