"""The book's build config: launch buttons from ``MRTL_REPOSITORY_URL`` or none, MathJax shipped.

``scripts/book_config.py`` derives the config that ``scripts/build-book.sh`` and the test suite build
with. Checked on the derived dicts and on a tiny real book (one page, one notebook with math, no
execution) built with jupyter-book under ``-W``, with no repository, a GitHub one and a GitLab one.
The whole book is checked the same way in a browser, offline, by ``test_book_browser.py``.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("book_config", ROOT / "scripts" / "book_config.py")
book_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_config)

LAUNCH_KEYS = ("binderhub_url", "colab_url", "jupyterhub_url")


def test_static_config_names_no_placeholder_and_no_button():
    text = (ROOT / "_config.yml").read_text()
    assert "OWNER" not in text
    config = yaml.safe_load(text)
    assert not config["repository"]["url"], "the repository comes from MRTL_REPOSITORY_URL, not _config.yml"
    assert not any(config["launch_buttons"].get(k) for k in LAUNCH_KEYS)
    assert not config["html"].get("use_repository_button")
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]


def test_without_url_every_button_is_off_whatever_the_config_says():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/OWNER/mrtl"
    config["launch_buttons"].update(binderhub_url="https://mybinder.org", jupyterhub_url="https://hub.example.org")
    config["html"]["use_repository_button"] = True
    out = book_config.derive(config, None)
    assert out["repository"]["url"] == ""
    assert not any(out["launch_buttons"].get(k) for k in LAUNCH_KEYS)
    assert not any(out["html"].get(k) for k in ("use_repository_button", "use_edit_page_button", "use_issues_button"))
    assert config["repository"]["url"] == "https://github.com/OWNER/mrtl", "derive must not change its input"


def test_with_url_binder_repository_and_colab_on_github_only():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    gh = book_config.derive(config, "https://github.com/someone/mrtl")
    assert gh["repository"]["url"] == "https://github.com/someone/mrtl"
    assert gh["launch_buttons"]["binderhub_url"] and gh["launch_buttons"]["colab_url"]
    assert gh["html"]["use_repository_button"] is True
    gl = book_config.derive(config, "https://gitlab.com/someone/mrtl")
    assert gl["launch_buttons"]["binderhub_url"] and not gl["launch_buttons"]["colab_url"]


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("  ", None),
    ("https://github.com/someone/mrtl/", "https://github.com/someone/mrtl"),
    ("https://github.com/someone/mrtl.git", "https://github.com/someone/mrtl"),
])
def test_repository_url_normalised(monkeypatch, value, expected):
    monkeypatch.delenv(book_config.ENV_VAR, raising=False)
    assert book_config.repository_url(value if value is not None else None) == expected


def test_repository_url_from_environment(monkeypatch):
    monkeypatch.setenv(book_config.ENV_VAR, "https://github.com/someone/mrtl")
    assert book_config.repository_url() == "https://github.com/someone/mrtl"
    monkeypatch.setenv(book_config.ENV_VAR, "github.com/someone")
    with pytest.raises(ValueError, match=book_config.ENV_VAR):
        book_config.repository_url()


def _tiny_book(tmp: Path, url: str | None) -> Path:
    """Build a one-page, one-notebook book with the derived config; return its html folder."""
    (tmp / "book").mkdir(parents=True)
    (tmp / "book" / "references.bib").write_text((ROOT / "book" / "references.bib").read_text())
    (tmp / "book" / "intro.md").write_text("# Tiny\n\nAn equation: $E = m c^2$.\n\n$$\\hat x = A^H y$$\n")
    (tmp / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter\n\nInline $k_y$ and\n\n$$y = M F S x$$"),
                nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp / "notebooks" / "chapter.ipynb")
    (tmp / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/chapter\n")
    config = book_config.derive(yaml.safe_load((ROOT / "_config.yml").read_text()), book_config.repository_url(url))
    config["execute"]["execute_notebooks"] = "off"
    (tmp / "_config.yml").write_text(yaml.safe_dump(config))
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(tmp), "--path-output", str(tmp / "out"), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, f"tiny book build failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return tmp / "out" / "_build" / "html"


class _HeaderLinks(HTMLParser):
    """Absolute hrefs of the links inside the theme's header buttons (launch, repository, download)."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[bool] = []  # per open element: inside the header buttons?
        self.seen = False
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        inside = (bool(self.stack) and self.stack[-1]) or "article-header-buttons" in (attrs.get("class") or "").split()
        self.seen |= inside
        if tag == "a" and inside and re.match(r"https?://", attrs.get("href") or ""):
            self.links.append(attrs["href"])
        if tag not in self.VOID:
            self.stack.append(inside)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()


def _header_links(html: str) -> list[str]:
    parser = _HeaderLinks()
    parser.feed(html)
    assert parser.seen, "no header buttons block: the theme's markup changed"
    return parser.links


@pytest.mark.parametrize("url", [None, "https://github.com/someone/mrtl", "https://gitlab.com/someone/mrtl"],
                         ids=["no-repository", "github", "gitlab"])
def test_tiny_book_buttons_and_offline_mathjax(tmp_path, url):
    html_dir = _tiny_book(tmp_path, url)
    page = (html_dir / "notebooks" / "chapter.html").read_text()
    # MathJax is shipped, and no page loads a script or stylesheet from elsewhere
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for f in html_dir.rglob("*.html"):
        text = f.read_text()
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"', text)
        assert not remote, f"{f.name} loads {remote}"
    assert "_static/mathjax/tex-chtml.js" in page
    links = _header_links(page)
    assert not [h for h in re.findall(r'href="([^"]+)"', page) if "OWNER" in h]
    if url is None:
        assert links == [], f"buttons that point at a repository when none was given: {links}"
        return
    assert url in links, f"no repository button for {url}: {links}"
    path = url.split("://", 1)[1].split("/", 1)[1]
    binder = [h for h in links if "mybinder.org/v2/" in h]
    assert binder and all("notebooks/chapter.ipynb" in h for h in binder), links
    if "github.com" in url:
        assert any(h.startswith("https://colab.research.google.com/github/" + path) for h in links), links
        assert any(f"/v2/gh/{path}/main" in h for h in binder), binder
    else:
        assert not any("colab" in h for h in links), f"Colab opens GitHub notebooks only: {links}"
