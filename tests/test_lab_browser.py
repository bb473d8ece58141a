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
* ``test_chapter_reads_in_jupyterlab`` (slow), for chapters 1, 5 and 6: one JupyterLab, headless, on
  the environment's kernel for the module (``scripts/lab.sh``'s flags, a free loopback port, a token,
  ``MRTL_PROFILE=ci`` and temporary cache and records folders in the server's environment, so chapter
  6 reuses the network chapter 5 pre-trained), checks that the environment's setting to render every
  cell is in effect (jupyterlab-myst finds no expressions in a text cell it has not rendered, so with
  JupyterLab's default of rendering only the cells in view Run All left chapter 1's exercise numbers
  as code), opens a copy of the chapter in a workspace of its own, runs all cells and asserts: no cell erred; the
  learning-goals admonition renders as a box; a solution dropdown is closed and opens when clicked;
  after that one Run All every ``{eval}`` of every text cell was evaluated without error and shows
  its value (chapter 1's numbers are also compared with the values its record holds), and no
  rendered text contains ``{eval``, ``{glue``, a ``:::`` fence or a role such as ``{term}`` left as
  markup. Then the chapter's live explorer
  (an ipywidgets slider, ``mrtl_core.widgets``) is moved one step with the keyboard, as a student
  would, and the figure must change (the image's bytes differ) with no cell erring. The chapter's
  kernel is shut down afterwards. A screenshot per chapter lands in ``ci-artifacts/``. Skips where
  Chromium is missing outside CI; in CI (env ``CI``) that fails.
"""
from __future__ import annotations

import contextlib
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

# The chapters a student meets first (1) and the two whose explorers redraw trained networks (5, 6):
# each with a solution dropdown's title, words of its hidden text, and how long its Run All may take at
# the ci profile (5 and 6 train small networks; a busy two-core machine takes 2-3 times the quiet time).
CHAPTERS = {
    "01_kspace": {"solution": "Solution 1", "solution_text": "ghosts are shifted by", "run_s": 300},
    "05_generalization": {"solution": "Solution", "solution_text": "the benign direction", "run_s": 600},
    "06_fine_tuning": {"solution": "Solution", "solution_text": "memorising", "run_s": 600},
}
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    """One JupyterLab on copies of the chapters for the module: ``(base_url, token, records_dir)``;
    stopped afterwards. The chapters share its cache, as a student's runs in one environment do.
    Asks for the session's ``browser`` first, so it skips (or fails under CI) without chromium."""
    tmp_path = tmp_path_factory.mktemp("lab")
    jupyter = Path(sys.executable).parent / "jupyter"
    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "notebooks"  # a copy: nothing the lab saves can touch the stored chapter
    root.mkdir()
    for chapter in CHAPTERS:
        shutil.copy(ROOT / "notebooks" / f"{chapter}.ipynb", root)
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


# Per text cell that quotes {eval}: the names its source quotes, what jupyterlab-myst evaluated (stored in
# the cell's metadata) and the rendered text. textContent, not innerText: cells outside the viewport
# are not laid out.
_EVAL_CELLS = """() => window.jupyterapp.shell.currentWidget.content.widgets.flatMap((c, i) => {
  if (c.model.type !== 'markdown') return [];
  const names = Array.from(c.model.sharedModel.getSource().matchAll(/\\{eval\\}`([^`]*)`/g), m => m[1]);
  if (!names.length) return [];
  const node = c.node.querySelector('.jp-RenderedMarkdown, .myst');
  return [{cell: i, names,
           evaluated: (c.model.getMetadata('user_expressions') || []).map(e => ({expression: e.expression,
             status: e.result.status, value: (e.result.data || {})['text/plain'] || e.result.evalue,
             markdown: (e.result.data || {})['text/markdown'] || null})),
           text: node ? node.textContent.replace(/\\s+/g, ' ') : ''}];
})"""

# The first live explorer: its slider's handle (noUiSlider, focusable, with aria values) and its image
# (a blob URL); the digest of the image's bytes, so "the figure changed" means other pixels, not a new URL.
_EXPLORER = ".jp-OutputArea-output:has(.widget-slider .noUi-handle):has(img.widget-image)"
_IMAGE_DIGEST = """async img => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(d), b => b.toString(16).padStart(2, '0')).join('');
}"""


def _when_attached(action, tries: int = 20):
    """Run a playwright ``action`` again while its element is being replaced: jupyterlab-myst
    re-renders a text cell when its inline expressions come back from the kernel, which can detach
    the element a locator had found (a slower kernel, e.g. with ATEN_CPU_CAPABILITY=default, makes
    that later). Any other error, or the last try's, is raised."""
    from playwright.sync_api import Error

    for attempt in range(tries):
        try:
            return action()
        except Error as err:
            if "not attached" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.5)


def _squash(text: str) -> str:
    return re.sub(r"[\s*`_]", "", text)


def _is_shown(result: dict, text: str) -> bool:
    """Whether a cell's rendered ``text`` shows an evaluated expression: a string's ``text/plain`` repr
    without its quotes; a ``Markdown`` value's words (markup and whitespace left out on both sides)."""
    if result.get("markdown"):
        return _squash(result["markdown"]) in _squash(text)
    value = str(result["value"])
    return (value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value) in text


def _shutdown_kernels(base: str, token: str) -> None:
    """End every kernel session of the lab: the next chapter starts with the machine's cores free."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers=headers), timeout=10) as r:
        sessions = json.loads(r.read())
    for session in sessions:
        req = urllib.request.Request(f"{base}/api/sessions/{session['id']}", headers=headers, method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def _chapter_1_numbers(records: Path) -> dict[str, str]:
    """What chapter 1's text quotes, formatted as the chapter formats it, from the record it saved."""
    record = json.loads((records / "01_kspace.json").read_text())["numbers"]
    by_R = {row["R"]: row for row in record["sweep"]}
    return {
        "parseval_err": f"agree to {record['parseval_rel_error']:.1e}",
        "sidelobe_equi": f"with {record['peak_sidelobe_R4']['equispaced']:.2f} of the peak",
        "psf_spacing": f"at an offset of {record['psf_replica_spacing']} pixels",
        "nmse_r2": f"from {by_R[2]['nmse_random']:.4f} at R = 2",
        "nmse_ratio": f"a factor of {by_R[8]['nmse_random'] / by_R[2]['nmse_random']:.1f}",
        "size_px": f"in a {record['image_size']}-pixel-wide image",
    }


def _eval_problems(cells: list[dict]) -> list[str]:
    """What is wrong with the text cells' ``{eval}`` expressions (``_EVAL_CELLS``): none when each was
    evaluated without error and its cell's rendered text shows the value."""
    problems = []
    for cell in cells:
        evaluated = {e["expression"]: e for e in cell["evaluated"]}
        for name in cell["names"]:
            e = evaluated.get(name)
            if e is None:
                problems.append(f"cell {cell['cell']}: {{eval}}`{name}` was not evaluated")
            elif e["status"] != "ok":
                problems.append(f"cell {cell['cell']}: {{eval}}`{name}` failed: {e['value']}")
            elif not _is_shown(e, cell["text"]):
                problems.append(f"cell {cell['cell']}: {{eval}}`{name}` = {e['value']} is not in the "
                                f"rendered text: {cell['text'][:400]}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_chapter_reads_in_jupyterlab(lab, browser, chapter):
    base, token, records = lab
    spec = CHAPTERS[chapter]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    started = time.monotonic()
    try:
        # a workspace of its own: the default one would reopen the previous chapter's tab (and a kernel)
        page.goto(f"{base}/lab/workspaces/{chapter}/tree/{chapter}.ipynb?token={token}")
        page.wait_for_function(
            "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }", timeout=90_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.widgets"
                               ".some(c => c.model.type === 'code' && c.model.executionCount !== null)",
                               timeout=60_000)
        page.wait_for_function(_RUN_FINISHED, timeout=spec["run_s"] * 1000, polling=1000)
        ran = time.monotonic() - started
        nb = page.locator(f'[id="{page.evaluate("window.jupyterapp.shell.currentWidget.id")}"]')
        errors = page.evaluate(_ERRORS)
        assert not errors, f"cells erred in JupyterLab: {errors}"

        # every {eval} was evaluated by the kernel and shows its value in its cell; a text cell's numbers
        # arrive once the kernel has run the cells above it, and are drawn a moment after they arrive
        deadline = time.monotonic() + 30
        while True:
            problems = _eval_problems(page.evaluate(_EVAL_CELLS))
            if not problems or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        assert not problems, f"{chapter}: computed numbers not shown in JupyterLab:\n" + "\n".join(problems)

        text_js = ("() => Array.from(window.jupyterapp.shell.currentWidget.node.querySelectorAll("
                   "'.jp-MarkdownCell .jp-RenderedMarkdown, .jp-MarkdownCell .myst'))"
                   ".map(e => e.textContent.replace(/\\s+/g, ' ')).join('\\n')")
        text = page.evaluate(text_js)
        if chapter == "01_kspace":  # the values themselves, from the chapter's record
            missing = {k: v for k, v in _chapter_1_numbers(records).items() if v not in text}
            assert not missing, f"computed numbers not shown in JupyterLab: {missing}\n{text[-3000:]}"
        failed = nb.locator(".jp-MarkdownCell .myst-RenderedExpression [data-mime-type='application/vnd.jupyter.stderr']")
        assert failed.count() == 0, f"inline expressions failed: {failed.all_text_contents()}"
        for literal in ("{eval", "{glue", ":::{", ":class:"):
            assert literal not in text, f"rendered markdown shows literal MyST {literal!r}:\n{text[:3000]}"
        role = re.search(r".{0,80}\{[a-z][\w:-]*\}`.{0,80}", text)  # {term}, {cite}, {ref}... left as markup
        assert not role, f"rendered markdown shows a literal MyST role: {role.group(0)!r}"

        goals = nb.locator(".jp-MarkdownCell aside.myst-admonition", has_text="Learning goals").first
        _when_attached(goals.scroll_into_view_if_needed)
        assert goals.is_visible(), "the learning-goals admonition did not render as a box"
        box = _when_attached(goals.bounding_box)
        border = _when_attached(lambda: goals.evaluate("e => parseFloat(getComputedStyle(e).borderLeftWidth)"))
        assert box and box["height"] > 40 and border > 0, f"admonition not drawn as a box: {box}, border {border}"

        solution = nb.locator(".jp-MarkdownCell details.dropdown", has_text=spec["solution"]).first
        _when_attached(solution.scroll_into_view_if_needed)
        assert solution.count() and not _when_attached(lambda: solution.evaluate("e => e.open")), \
            f"{spec['solution']} is not a closed dropdown"
        body = solution.locator(".details-body")
        assert not body.is_visible(), "a closed solution's text is visible"
        solution.locator("summary").click()
        assert solution.evaluate("e => e.open") and body.is_visible(), f"{spec['solution']} did not open when clicked"
        assert spec["solution_text"] in body.inner_text()

        # the live explorer: one step of its slider with the keyboard redraws the figure from the kernel
        explorer = nb.locator(_EXPLORER).first
        assert explorer.count(), "no live explorer (ipywidgets slider and image) rendered after Run All"
        _when_attached(explorer.scroll_into_view_if_needed)
        handle = explorer.locator(".widget-slider .noUi-handle").first
        image = explorer.locator("img.widget-image").first
        now, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
        readout = explorer.locator(".widget-slider .widget-readout").first.inner_text()
        before = image.evaluate(_IMAGE_DIGEST)
        handle.focus()
        page.keyboard.press("ArrowLeft" if now >= top else "ArrowRight")
        page.wait_for_function("([h, v]) => parseFloat(h.getAttribute('aria-valuenow')) !== v",
                               arg=[handle.element_handle(), now], timeout=10_000)
        moved = explorer.locator(".widget-slider .widget-readout").first.inner_text()
        assert moved != readout, f"the slider moved but its readout still says {readout!r}"
        deadline = time.monotonic() + 30
        after = before
        while after == before and time.monotonic() < deadline:
            page.wait_for_timeout(250)
            after = image.evaluate(_IMAGE_DIGEST)
        assert after != before, f"the slider moved from {readout} to {moved} but the figure did not change"
        errors = page.evaluate(_ERRORS)
        assert not errors, f"cells erred after the slider moved: {errors}"
        print(f"{chapter}: Run All {ran:.0f} s, checks {time.monotonic() - started - ran:.0f} s")
    finally:
        with contextlib.suppress(Exception):  # the state the checks ended in, passed or failed
            page.screenshot(path=str(ARTIFACTS / f"lab-{chapter}.png"), full_page=False)
        page.close()
        _shutdown_kernels(base, token)
