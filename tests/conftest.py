"""Shared fixtures: the book's notebooks, executed once per pytest session with the ``ci`` profile.

``executed_notebooks`` runs every ``notebooks/NN_*.ipynb`` through papermill (sorted, so the order
is deterministic and a later chapter may read an earlier one's cache), ``executed_records`` returns
the records they saved, and ``built_book`` renders those executed notebooks into HTML without
executing them a second time. Executed copies land in ``ci-artifacts/executed/`` for inspection.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
ARTIFACTS = ROOT / "ci-artifacts"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
TIMINGS: dict[str, float] = {}


def notebook_ids() -> list[str]:
    return [p.stem for p in NOTEBOOKS]


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory) -> dict[str, dict]:
    """``{stem: {"path": executed .ipynb, "seconds": wall time, "error": str | None}}`` for every notebook."""
    import papermill as pm

    records = tmp_path_factory.mktemp("records")
    out_dir = ARTIFACTS / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("MRTL_RECORDS_DIR", "MRTL_PROFILE")}
    os.environ["MRTL_RECORDS_DIR"] = str(records)  # the kernel inherits it
    os.environ["MRTL_PROFILE"] = "ci"
    results: dict[str, dict] = {}
    try:
        for nb in NOTEBOOKS:
            out = out_dir / nb.name
            start = time.perf_counter()
            error = None
            try:
                pm.execute_notebook(
                    str(nb), str(out), parameters=dict(profile="ci"), kernel_name="python3",
                    cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False,
                )
            except Exception as exc:  # PapermillExecutionError carries the cell and traceback
                error = f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            TIMINGS[nb.stem] = seconds
            results[nb.stem] = {"path": out, "seconds": seconds, "error": error}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    results["_records_dir"] = {"path": records}
    return results


@pytest.fixture(scope="session")
def executed_records(executed_notebooks) -> dict[str, dict]:
    """The records (``mrtl_core.records``) every notebook saved, keyed by chapter name."""
    records = executed_notebooks["_records_dir"]["path"]
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(records).glob("*.json"))}


def book_output(src: Path) -> Path:
    return src / "_build" / "ci" / "_build" / "html"


@pytest.fixture(scope="session")
def built_book(executed_notebooks, tmp_path_factory) -> Path:
    """HTML of the book built from the already executed notebooks (no second execution).

    The source is a copy of the book with the executed notebooks in ``notebooks/`` and execution
    switched off; the same ``-W -n --keep-going`` flags as ``scripts/build-book.sh``.
    Returns the html folder (``index.html`` inside).
    """
    import yaml

    src = tmp_path_factory.mktemp("book")
    shutil.copytree(ROOT / "book", src / "book")
    shutil.copy(ROOT / "_toc.yml", src / "_toc.yml")
    (src / "notebooks").mkdir()
    for stem, info in executed_notebooks.items():
        if not stem.startswith("_"):
            shutil.copy(info["path"], src / "notebooks" / f"{stem}.ipynb")
    # the config scripts/build-book.sh derives: launch buttons only where MRTL_REPOSITORY_URL is set
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_config", ROOT / "scripts" / "book_config.py")
    book_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(book_config)
    config = book_config.load(ROOT / "_config.yml")
    config["execute"]["execute_notebooks"] = "off"
    (src / "_config.yml").write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run(
        [str(jb), "build", str(src), "--path-output", str(src / "_build" / "ci"), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, cwd=src,
    )
    (ARTIFACTS / "book-build.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "WARNING" in line or "ERROR" in line]
        pytest.fail(f"jupyter-book build failed (exit {proc.returncode}):\n" + "\n".join(warnings[-30:]))
    return book_output(src)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TIMINGS:
        terminalreporter.section("notebook wall times (papermill, ci profile)")
        for stem, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{stem:<24} {seconds:7.1f} s")
        terminalreporter.write_line(f"{'total':<24} {sum(TIMINGS.values()):7.1f} s")
