"""The built HTML book in a real headless browser (Chromium through playwright).

Checks, per page: the heading renders, every image decoded (naturalWidth > 0), no ipywidgets view
(which would need a CDN) was chosen over the self-contained explorer, and moving an explorer's
slider or select swaps the displayed frame. Saves full-page screenshots to ``ci-artifacts/``.
Skips only where Chromium is missing outside CI; in CI (env ``CI`` set) a missing browser fails.

The book is read offline: every request that would leave the machine (anything but the local
server, ``file:`` and ``data:``) is aborted and recorded, and each test fails if a page asked for
one, naming it. Equations must render with the MathJax shipped in the build (``mjx-container`` in
every math element, no TeX error), and no link may point at a placeholder repository; launch and
repository buttons appear only where ``MRTL_REPOSITORY_URL`` named a repository for the build.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ARTIFACTS, NOTEBOOKS, ROOT

pytestmark = pytest.mark.slow



LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"file", "data", "blob", "about"}

_spec = importlib.util.spec_from_file_location("book_config", ROOT / "scripts" / "book_config.py")
book_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_config)


def _is_local(url: str) -> bool:
    u = urlparse(url)
    return u.scheme in LOCAL_SCHEMES or (u.hostname or "") in LOCAL_HOSTS


def _toc_pages() -> list[str]:
    """Chapter pages listed in _toc.yml whose notebook exists, as paths relative to the html root."""
    text = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"^root:\s*(\S+)", text, re.M) + re.findall(r"file:\s*(\S+)", text)
    pages = []
    for f in files:
        if f.startswith("notebooks/") and not (ROOT / f"{f}.ipynb").exists():
            continue
        pages.append(f"{f}.html")
    return pages


@pytest.fixture(scope="session")
def server(built_book):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the pytest output readable
        pass


@pytest.fixture()
def blocked() -> list[str]:
    """The URLs this test's page tried to fetch from outside the machine (each one aborted)."""
    return []


@pytest.fixture()
def page(browser, blocked):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()

    def offline(route):
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    pg.route("**/*", offline)
    yield pg
    ctx.close()


def _open(page, url):
    page.goto(url, wait_until="load", timeout=60_000)
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
    # MathJax (deferred, so loaded by now if it loads at all) typesets asynchronously: wait for it,
    # then for its fonts and anything else the page fetches late
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise.then(() => true) : false")
    page.wait_for_load_state("networkidle", timeout=30_000)


def _assert_offline(rel, blocked):
    assert not blocked, f"{rel} requested the network ({len(blocked)} blocked): " + ", ".join(sorted(set(blocked)))


def _has_display_math(f: str) -> bool:
    """Whether the source of a page has a displayed equation (``$$`` or ``{math}``) in its text."""
    path = ROOT / f"{f}.ipynb" if (ROOT / f"{f}.ipynb").exists() else ROOT / f"{f}.md"
    if not path.exists():
        return False
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        text = path.read_text()
    return "$$" in text or "{math}" in text


PAGES = _toc_pages()


@pytest.mark.parametrize("rel", PAGES, ids=[Path(p).stem for p in PAGES])
def test_page_renders_with_images(page, blocked, server, rel):
    _open(page, f"{server}/{rel}")
    heading = page.locator("article h1").first
    assert heading.is_visible(), f"{rel}: no visible h1"
    assert heading.inner_text().strip(), f"{rel}: empty h1"
    broken = page.evaluate(
        "Array.from(document.querySelectorAll('article img')).filter(i => !(i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 60))"
    )
    assert not broken, f"{rel}: images that did not load: {broken}"
    # the static book must show the explorers' HTML, not an ipywidgets view that needs a CDN
    assert page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count() == 0
    if rel.startswith("notebooks/"):
        assert page.locator("article img").count() > 0, f"{rel}: a chapter without a single figure"
    name = Path(rel).stem
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if name == "01_kspace":
        shutil.copy(ARTIFACTS / f"{name}.png", ARTIFACTS / "chapter1.png")
    _assert_offline(rel, blocked)


MATH_PAGES = {p for p in PAGES if _has_display_math(p[: -len(".html")])}


def test_some_pages_have_math():
    assert len(MATH_PAGES) >= 2, f"expected equations in several chapters, found them in {sorted(MATH_PAGES)}"


@pytest.mark.parametrize("rel", PAGES, ids=[Path(p).stem for p in PAGES])
def test_equations_render_offline(page, blocked, server, rel):
    _open(page, f"{server}/{rel}")
    n_math = page.locator("article .math").count()
    if rel in MATH_PAGES:
        assert n_math > 0, f"{rel}: its source has equations but the page has no math element"
    if n_math == 0:
        _assert_offline(rel, blocked)
        pytest.skip(f"{rel} has no equations")
    mathjax = page.evaluate("() => !!(window.MathJax && MathJax.version)")
    unrendered = page.evaluate(
        "Array.from(document.querySelectorAll('article .math')).filter(e => !e.querySelector('mjx-container'))"
        ".map(e => e.textContent.trim().slice(0, 60))"
    )
    errors = page.evaluate(
        "Array.from(document.querySelectorAll('article mjx-merror')).map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 60))"
    )
    _assert_offline(rel, blocked)
    assert mathjax, f"{rel}: MathJax did not load"
    assert not unrendered, f"{rel}: {len(unrendered)} of {n_math} equations not typeset, e.g. {unrendered[:3]}"
    assert not errors, f"{rel}: TeX errors {errors[:5]}"


@pytest.mark.parametrize("rel", PAGES, ids=[Path(p).stem for p in PAGES])
def test_launch_links_real_or_absent(page, blocked, server, rel):
    _open(page, f"{server}/{rel}")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    placeholders = [h for h in hrefs if "OWNER" in h]
    assert not placeholders, f"{rel}: links to a placeholder repository: {placeholders}"
    header = page.eval_on_selector_all(".article-header-buttons a[href]", "els => els.map(e => e.href)")
    external = [h for h in header if not _is_local(h)]
    url = book_config.repository_url()  # the setting the built_book fixture built with
    _assert_offline(rel, blocked)
    if url is None:
        assert not external, f"{rel}: buttons to a repository though MRTL_REPOSITORY_URL is unset: {external}"
        return
    assert url in external, f"{rel}: no repository button for {url}: {external}"
    if rel.startswith("notebooks/"):
        assert any("/v2/" in h and rel.replace(".html", ".ipynb") in h for h in external), \
            f"{rel}: no Binder button for this chapter: {external}"


@pytest.mark.parametrize("rel", [p for p in PAGES if p.startswith("notebooks/")],
                         ids=[Path(p).stem for p in PAGES if p.startswith("notebooks/")])
def test_explorers_move(page, blocked, server, rel):
    _open(page, f"{server}/{rel}")
    explorers = page.locator("div.mrtl-explorer")
    if explorers.count() == 0:
        pytest.skip(f"{rel} has no explorer")
    for k in range(explorers.count()):
        ex = explorers.nth(k)
        img = ex.locator("img").first
        assert img.evaluate("i => i.naturalWidth") > 0
        controls = ex.locator("input[type=range], select")
        assert controls.count() > 0, "explorer without controls"
        changed = False
        for c in range(controls.count()):
            ctl = controls.nth(c)
            before = img.get_attribute("src")
            # move to another value: the last option, or the first if it already is the last
            ctl.evaluate(
                """el => {
                    const n = el.tagName === 'SELECT' ? el.options.length : parseInt(el.max, 10) + 1;
                    const v = parseInt(el.value, 10) === n - 1 ? 0 : n - 1;
                    el.value = String(v);
                    el.dispatchEvent(new Event('input', {bubbles: true}));
                }"""
            )
            after = img.get_attribute("src")
            changed |= after != before
            if ctl.evaluate("el => el.type") == "range":
                label = ex.locator(f"output[id='{ctl.get_attribute('id')}-v']").inner_text()
                labels = ctl.evaluate("el => JSON.parse(el.dataset.labels)")
                assert label == labels[int(ctl.input_value())], "the value label did not follow the slider"
        assert changed, f"explorer {k} on {rel}: no control changed the frame"
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    _assert_offline(rel, blocked)
