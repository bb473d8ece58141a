"""The chapters read in JupyterLab as the book shows them (Chromium through playwright).

Where the course is taught, in JupyterLab, markdown cells once showed literal MyST: every
``:::{admonition}`` fence, every solution open, every computed number as ``{glue:text}`` markup.
The environment now installs jupyterlab-myst, the chapters quote numbers with ``{eval}`name``` (the
kernel's variable in JupyterLab, the glued copy in the static book: ``mrtl_core/sphinx_eval.py``),
and solutions are dropdown admonitions.

* ``test_every_eval_is_glued_above_it`` (fast, no browser): each ``{eval}`name``` names a variable
  that a code cell *above* it glues under the same name, so the static book has the value and
  JupyterLab's Run All has computed it before the text asks; no chapter quotes a ``{glue`` role,
  which JupyterLab cannot evaluate (it shows the key).
* ``test_chapter_reads_in_jupyterlab`` (slow): JupyterLab, headless, on the environment's kernel
  (``scripts/lab.sh``'s flags, a free loopback port, a token, ``MRTL_PROFILE=ci`` and temporary
  cache and records folders in the server's environment), checks that the environment's setting to
  render every cell is in effect (jupyterlab-myst finds no expressions in a text cell it has not
  rendered, so with JupyterLab's default of rendering only the cells in view Run All left chapter 1's
  exercise numbers as code), opens a copy of chapter 1, runs all cells and asserts: no cell erred;
  the learning-goals admonition renders as a box; a solution dropdown is closed and opens when
  clicked; after that one Run All the computed numbers show the values the chapter recorded, and no
  rendered text contains ``{eval``, ``{glue`` or a ``:::`` fence. A screenshot lands in
  ``ci-artifacts/``. Skips where Chromium is missing outside CI; in CI (env ``CI``) that fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ARTIFACTS, NOTEBOOKS, ROOT, free_port, stop_process_group

CHAPTER = "01_kspace"  # the cheapest chapter with admonitions, dropdown solutions and computed numbers
EVAL = re.compile(r"\{eval\}`([^`]*)`")


def _glued_names(source: str) -> set[str]:
    """Names a code cell glues as ``glue("name", name, ...)``: the value JupyterLab reads is the glued one."""
    return set(re.findall(r"""glue\(\s*["']([A-Za-z_]\w*)["']\s*,\s*\1\s*[,)]""", source))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_eval_is_glued_above_it(path):
    nb = nbformat.read(path, as_version=4)
    glued: set[str] = set()
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            glued |= _glued_names(cell.source)
            continue
        if cell.cell_type != "markdown":
            continue
        for name in EVAL.findall(cell.source):
            if name not in glued:
                problems.append(f"cell {i}: {{eval}}`{name}` but no code cell above glues "
                                f'glue("{name}", {name}, display=False)')
        if "{glue" in cell.source:
            problems.append(f"cell {i}: a {{glue...}} role, which JupyterLab shows as its key: use {{eval}}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def lab_windowing_mode(base: str, token: str) -> str:
    """The notebook windowing mode this JupyterLab starts with (the environment's overrides included)."""
    url = f"{base}/lab/api/settings/@jupyterlab/notebook-extension:tracker?token={token}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())["schema"]["properties"]["windowingMode"]["default"]


@pytest.fixture()
def lab(tmp_path, browser):
    """JupyterLab on a copy of the chapter: ``(base_url, token, records_dir)``; stopped afterwards.
    Asks for the session's ``browser`` first, so it skips (or fails under CI) without chromium."""
    jupyter = Path(sys.executable).parent / "jupyter"
    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "notebooks"  # a copy: nothing the lab saves can touch the stored chapter
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / f"{CHAPTER}.ipynb", root)
    records = tmp_path / "records"
    settings = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    port, token = free_port(), os.urandom(12).hex()
    env = dict(os.environ, MRTL_PROFILE="ci", MRTL_CACHE_DIR=str(tmp_path / "cache"), MRTL_RECORDS_DIR=str(records),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               TQDM_DISABLE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    # scripts/lab.sh's command, with --allow-root exactly when root, on the copy instead of notebooks/;
    # expose_app_in_browser lets the test call JupyterLab's own commands (Run All) and read cell models
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd + [str(root)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
            try:
                urllib.request.urlopen(f"{base}/api", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"JupyterLab did not answer within 60 s:\n{log.read_text()[-2000:]}"
                time.sleep(0.5)
        assert lab_windowing_mode(base, token) == "none", (
            "JupyterLab renders only the cells in view, so Run All leaves the {eval} numbers of text cells below "
            "the screen unevaluated: scripts/setup-env.sh installs jupyter/lab/settings/overrides.d/ to prevent it")
        yield base, token, records
    finally:
        stop_process_group(proc)
        shutil.copy(log, ARTIFACTS / "lab.log")


# Every code cell has run (or one erred, which stops Run All) and the kernel is idle.
_RUN_FINISHED = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const erred = cells.some(c => Array.from({length: c.model.outputs.length}, (_, i) => c.model.outputs.get(i))
                                  .some(o => o.type === 'error'));
  return erred || cells.every(c => c.model.executionCount !== null);
}"""

_ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets.flatMap((c, i) => c.model.type !== 'code' ? [] :
  Array.from({length: c.model.outputs.length}, (_, j) => c.model.outputs.get(j).toJSON())
       .filter(o => o.output_type === 'error').map(o => `cell ${i}: ${o.ename}: ${o.evalue}`))"""


# jupyterlab-myst stores each markdown cell's evaluated expressions in its metadata
_EXPRESSIONS = """() => window.jupyterapp.shell.currentWidget.content.widgets.flatMap((c, i) =>
  c.model.type !== 'markdown' ? [] : (c.model.getMetadata('user_expressions') || []).map(e =>
    ({cell: i, expression: e.expression, status: e.result.status, value: (e.result.data || {})['text/plain'] || e.result.evalue})))"""


@pytest.mark.slow
def test_chapter_reads_in_jupyterlab(lab, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    base, token, records = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/{CHAPTER}.ipynb?token={token}")
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }", timeout=90_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.widgets"
                               ".some(c => c.model.type === 'code' && c.model.executionCount !== null)",
                               timeout=60_000)
        page.wait_for_function(_RUN_FINISHED, timeout=150_000, polling=500)
        errors = page.evaluate(_ERRORS)
        assert not errors, f"cells erred in JupyterLab: {errors}"

        record = json.loads((records / f"{CHAPTER}.json").read_text())["numbers"]
        by_R = {row["R"]: row for row in record["sweep"]}
        expected = {  # what the text quotes, formatted as the chapter formats it
            "parseval_err": f"agree to {record['parseval_rel_error']:.0e}",
            "sidelobe_equi": f"with {record['peak_sidelobe_R4']['equispaced']:.2f} of the peak",
            "psf_spacing": f"at an offset of {record['psf_replica_spacing']} pixels",
            "nmse_r2": f"from {by_R[2]['nmse_random']:.4f} at R = 2",
            "nmse_ratio": f"a factor of {by_R[8]['nmse_random'] / by_R[2]['nmse_random']:.1f}",
            "size_px": f"in a {record['image_size']}-pixel-wide image",
        }
        # textContent, not innerText: JupyterLab leaves cells outside the viewport unlaid-out
        text_js = ("() => Array.from(document.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown, "
                   ".jp-MarkdownCell .myst')).map(e => e.textContent.replace(/\\s+/g, ' ')).join('\\n')")
        shows_all = (f"() => {{ const t = ({text_js})(); return {json.dumps(list(expected.values()))}"
                     ".every(v => t.includes(v)); }")
        try:  # a markdown cell's numbers arrive once the kernel has run the cells above it
            page.wait_for_function(shows_all, timeout=30_000, polling=500)
        except PlaywrightTimeout:
            pass  # reported below, with the text and what the kernel answered
        page.screenshot(path=str(ARTIFACTS / f"lab-{CHAPTER}.png"), full_page=False)
        text = page.evaluate(text_js)
        missing = {k: v for k, v in expected.items() if v not in text}
        if missing:  # say whether the kernel answered (cell metadata) or only the view is stale
            answered = page.evaluate(_EXPRESSIONS)
            pytest.fail(f"computed numbers not shown in JupyterLab: {missing}\n"
                        f"evaluated per markdown cell: {answered}\n{text[-3000:]}")
        failed = page.locator(".jp-MarkdownCell .myst-RenderedExpression [data-mime-type='application/vnd.jupyter.stderr']")
        assert failed.count() == 0, f"inline expressions failed: {failed.all_text_contents()}"
        for literal in ("{eval", "{glue", ":::{", ":class:"):
            assert literal not in text, f"rendered markdown shows literal MyST {literal!r}:\n{text[:3000]}"

        goals = page.locator(".jp-MarkdownCell aside.myst-admonition", has_text="Learning goals").first
        goals.scroll_into_view_if_needed()
        assert goals.is_visible(), "the learning-goals admonition did not render as a box"
        box = goals.bounding_box()
        border = goals.evaluate("e => parseFloat(getComputedStyle(e).borderLeftWidth)")
        assert box and box["height"] > 40 and border > 0, f"admonition not drawn as a box: {box}, border {border}"

        solution = page.locator(".jp-MarkdownCell details.dropdown", has_text="Solution 1").first
        solution.scroll_into_view_if_needed()
        assert solution.count() and not solution.evaluate("e => e.open"), "Solution 1 is not a closed dropdown"
        body = solution.locator(".details-body")
        assert not body.is_visible(), "a closed solution's text is visible"
        solution.locator("summary").click()
        assert solution.evaluate("e => e.open") and body.is_visible(), "Solution 1 did not open when clicked"
        assert "ghosts are shifted by" in body.inner_text()
    finally:
        page.close()
