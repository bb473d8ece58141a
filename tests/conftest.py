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


def _execute(notebooks: list[Path], out_dir: Path, records: Path, environ: dict[str, str],
             timing_suffix: str = "") -> dict[str, dict]:
    """Run ``notebooks`` in order through papermill (profile ``ci``) with ``environ`` as the
    kernel's environment; ``{stem: {"path", "seconds", "error"}}`` and ``"_records_dir"``."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    # every kernel checks its figures' legends after each cell (tests/legend_check.py)
    startup = out_dir.parent / f".ipython-{out_dir.name}" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "50-legend-check.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport legend_check\nlegend_check.register()\n")
    environ = dict(environ, IPYTHONDIR=str(startup.parents[1]))
    saved = dict(os.environ)
    os.environ.clear()
    # the kernel inherits it; progress bars off as scripts/build-book.sh has them, so the pages built
    # from these outputs are the book's (a bar in a static page is frozen at its first frame)
    os.environ.update(environ, MRTL_RECORDS_DIR=str(records), MRTL_PROFILE="ci", TQDM_DISABLE="1")
    results: dict[str, dict] = {}
    try:
        for nb in notebooks:
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
            TIMINGS[nb.stem + timing_suffix] = seconds
            results[nb.stem] = {"path": out, "seconds": seconds, "error": error}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    results["_records_dir"] = {"path": records}
    return results


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory) -> dict[str, dict]:
    """``{stem: {"path": executed .ipynb, "seconds": wall time, "error": str | None}}`` for every notebook."""
    return _execute(NOTEBOOKS, ARTIFACTS / "executed", tmp_path_factory.mktemp("records"), dict(os.environ))


# The chapters whose numbers come from trained networks, run a second time on other CPU kernels.
LEARNING_CHAPTERS = ("04_pretrained_unet", "05_generalization", "06_fine_tuning", "07_beyond")
VARIANT_KERNEL, VARIANT_THREADS = "default", 1


@pytest.fixture(scope="session")
def variant_records(tmp_path_factory) -> dict[str, dict]:
    """The learning chapters' records from a run on another CPU's kernels: the portable ``default``
    family (no AVX in ATen, SSE4.1 in oneDNN and MKL) with one thread, and an empty cache, so the
    data, the pre-trained network and every fine-tuned one are rebuilt with those kernels. A finding
    that holds on this CPU only by a floating-point accident fails here, not on the next machine.
    The executed copies land in ``ci-artifacts/executed-kernel-variant/``."""
    from kernels import pinned_environ

    cache = tmp_path_factory.mktemp("variant-cache")
    environ = dict(pinned_environ(dict(os.environ), VARIANT_KERNEL, VARIANT_THREADS), MRTL_CACHE_DIR=str(cache))
    notebooks = [nb for nb in NOTEBOOKS if nb.stem in LEARNING_CHAPTERS]
    results = _execute(notebooks, ARTIFACTS / "executed-kernel-variant", tmp_path_factory.mktemp("variant-records"),
                       environ, timing_suffix=f" ({VARIANT_KERNEL}, {VARIANT_THREADS} thread)")
    failed = {stem: info["error"] for stem, info in results.items() if not stem.startswith("_") and info["error"]}
    if failed:
        pytest.fail(f"the learning chapters failed on the {VARIANT_KERNEL} kernels: {failed}")
    return _load_records(results["_records_dir"]["path"])


def _load_records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


@pytest.fixture(scope="session", params=["native", "kernel-variant"])
def learning_records(request) -> dict[str, dict]:
    """The records the learning findings are checked on: this CPU's run (``executed_records``) and
    the kernel-variant run (``variant_records``); every learning test runs on both."""
    if request.param == "native":
        return request.getfixturevalue("executed_records")
    if os.environ.get("MRTL_CHECK_RECORDS"):
        pytest.skip("MRTL_CHECK_RECORDS names one set of records: checked once, as 'native'")
    return request.getfixturevalue("variant_records")


@pytest.fixture(scope="session")
def executed_records(request) -> dict[str, dict]:
    """The records (``mrtl_core.records``) every notebook saved, keyed by chapter name.

    With ``MRTL_CHECK_RECORDS=<folder>`` the findings tests read the records in that folder instead
    of executing the notebooks: ``benchmarks/kernel_spread.py`` checks each CPU kernel's records so.
    """
    given = os.environ.get("MRTL_CHECK_RECORDS")
    if given:
        records = Path(given)
        if not sorted(records.glob("*.json")):
            pytest.fail(f"MRTL_CHECK_RECORDS={given!r} holds no records (*.json)")
    else:
        records = request.getfixturevalue("executed_notebooks")["_records_dir"]["path"]
    return _load_records(records)


def free_port() -> int:
    """A loopback TCP port that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session``), SIGKILL after 20 s."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for every browser test of the session: playwright's sync API
    runs one driver per thread, so a second ``sync_playwright()`` beside a live one would fail."""
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not executable:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but chromium is not installed at {CHROMIUM}: the browser checks cannot run")
        pytest.skip(f"chromium not installed at {CHROMIUM} (apt-get install chromium); set CI to make this fail")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


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
