"""Helpers the findings tests share: read a chapter's recorded numbers, check a value is a number."""
from __future__ import annotations

import math

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
