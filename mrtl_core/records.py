"""Chapter records: the key numbers each notebook computes, saved as a small JSON file.

Tests read them to assert the findings the text states; the results chapter reads them to build
its tables, so no number in the book is typed by hand. Files live in ``$MRTL_RECORDS_DIR`` or
``records/`` beside the notebooks (the working directory of papermill and jupyter-book).

The schema: what identifies a number is a level of nesting, never part of a key to be taken apart.
Scores are ``scores[method][metric] = {"mean", "ci": [low, high]}``; paired differences
``differences[a][b][metric] = [mean, ci_low, ci_high]`` (``a - b`` over the same test slices, as
:func:`mrtl_core.stats.paired_difference`); chapters with shifts nest them under the shift's name
first (``"knee-1.5T R4"``), and runs on N slices under ``str(N)``.

Beside the numbers a record keeps ``elapsed_seconds``: how long the chapter's kernel had run when
it saved, counted from the first import of this module, which every chapter does in its setup cell
(the cell after ``parameters``). It is the build's own timing of the chapter, cache hits included
as that build found them; the course kit (``notebooks/09_course_kit.ipynb``) reads it, and
``benchmarks/compare_records.py`` skips it, as every key with ``seconds`` in its name.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write

__all__ = ["records_dir", "save_record", "load_record", "load_records"]

#: when this module was first imported in this process: a chapter's setup cell imports it
_IMPORTED_AT = time.perf_counter()


def records_dir() -> Path:
    return Path(os.environ.get("MRTL_RECORDS_DIR", "records")).resolve()


def _plain(value: Any) -> Any:
    """Convert numpy / torch scalars and arrays into JSON-native values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_record(chapter: str, profile: str, numbers: dict[str, Any]) -> Path:
    """Write ``{"chapter", "profile", "elapsed_seconds", "numbers"}`` to ``records_dir()/<chapter>.json``
    atomically; ``elapsed_seconds`` is the time since this module was imported (the chapter's run)."""
    payload = {"chapter": chapter, "profile": profile,
               "elapsed_seconds": round(time.perf_counter() - _IMPORTED_AT, 3), "numbers": _plain(numbers)}
    path = records_dir() / f"{chapter}.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1, sort_keys=True)))
    return path


def load_record(chapter: str) -> dict[str, Any]:
    path = records_dir() / f"{chapter}.json"
    if not path.exists():
        raise FileNotFoundError(f"no record for chapter {chapter!r} at {path}: run that chapter first")
    return json.loads(path.read_text())


def load_records() -> dict[str, dict[str, Any]]:
    """All records in ``records_dir()``, keyed by chapter name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(records_dir().glob("*.json"))}
