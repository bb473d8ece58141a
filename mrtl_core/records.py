"""Chapter records: the key numbers each notebook computes, saved as a small JSON file.

Tests read them to assert the findings the text states; the results chapter reads them to build
its tables, so no number in the book is typed by hand. Files live in ``$MRTL_RECORDS_DIR`` or
``records/`` beside the notebooks (the working directory of papermill and jupyter-book).

The schema: what identifies a number is a level of nesting, never part of a key to be taken apart.
Scores are ``scores[method][metric] = {"mean", "ci": [low, high]}``; paired differences
``differences[a][b][metric] = [mean, ci_low, ci_high]`` (``a - b`` over the same test slices, as
:func:`mrtl_core.stats.paired_difference`); chapters with shifts nest them under the shift's name
first (``"knee-1.5T R4"``), and runs on N slices under ``str(N)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write

__all__ = ["records_dir", "save_record", "load_record", "load_records"]


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
    """Write ``{"chapter", "profile", "numbers"}`` to ``records_dir()/<chapter>.json`` atomically."""
    payload = {"chapter": chapter, "profile": profile, "numbers": _plain(numbers)}
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
