"""The book reads clean: every citation through the bibliography, and no clutter in the built pages.

The sources are checked directly (every ``{cite}`` key in ``book/references.bib``, every entry cited,
no author-year citation typed as plain text). The built HTML (the ci build of ``built_book``, made
from the executed chapters as ``scripts/build-book.sh`` makes it) is checked page by page: no output
shows a Python repr (``Text(...)``, ``<matplotlib...>``, ``PosixPath(...)``), a warning or a frozen
progress bar, no page shows a raw ``{glue`` or ``{eval}`` role, and none sends the reader to notes
the book does not contain.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^@\w+\{([^,\s]+),", re.M)
# "Roemer et al., 1990", "Zhao et al. (2017)", "(Gabriel 1996)": a citation that bypasses the bibliography
PLAIN_CITATION = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)?(?: et al\.)?,? \(?(?:19|20)\d\d\)?")
OUTPUT_CLUTTER = {
    "a matplotlib Text repr": re.compile(r"\bText\(\d"),
    "a matplotlib object repr": re.compile(r"<matplotlib\.[\w.]+ (?:object )?at 0x"),
    "a pathlib repr": re.compile(r"\b(?:Posix|Windows)Path\("),
    "a warning": re.compile(r"\w+Warning\b"),
    "a progress bar": re.compile(r"\d+%\|"),
    "an absolute path of the build machine": re.compile(r"(?<![\w.])/(?:tmp|home|root|Users|work)/[\w.-]+/"),
    "a library object's repr": re.compile(r"\b(?:EvalResult|TrainResult|UnetSample)\("),
    "a pandas Series footer": re.compile(r"\bName: [^\n]*, dtype: \w+"),
}
TEXT_CLUTTER = {
    "a raw glue role": re.compile(r"\{glue"),
    "a raw eval role": re.compile(r"\{eval\}"),
    "notes the book does not contain": re.compile(r"\bDESIGN\b|design notes|throwaway prototype", re.I),
}


def _sources() -> list[tuple[str, str]]:
    """(where, markdown text) of every chapter cell and book page, with inline literals removed."""
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb.read_text())["cells"]):
            if cell["cell_type"] == "markdown":
                out.append((f"{nb.name} cell {i}", "".join(cell["source"])))
    out += [(p.name, p.read_text()) for p in sorted((ROOT / "book").glob("*.md"))]
    return [(where, re.sub(r"``.*?``", "", text)) for where, text in out]


def _cited() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for where, text in _sources():
        for match in CITE.finditer(text):
            for key in match.group(1).split(","):
                cited.setdefault(key.strip(), []).append(where)
    return cited


def test_every_citation_is_in_the_bibliography_and_every_entry_is_cited():
    entries = set(BIB_KEY.findall((ROOT / "book" / "references.bib").read_text()))
    cited = _cited()
    missing = {k: v for k, v in cited.items() if k not in entries}
    assert not missing, f"cited but not in book/references.bib: {missing}"
    assert not entries - set(cited), f"in book/references.bib but never cited: {sorted(entries - set(cited))}"


def test_no_citation_is_typed_as_plain_text():
    found = []
    for where, text in _sources():
        prose = CITE.sub("", re.sub(r"`[^`]*`|\$[^$]*\$", "", text))
        found += [f"{where}: {m.group(0)!r}" for m in PLAIN_CITATION.finditer(prose)
                  if re.search(r"et al\.|\(", m.group(0))]
    assert not found, "author-year citations that bypass the bibliography ({cite}`key` them):\n" + "\n".join(found)


def test_the_checks_can_fail():
    assert PLAIN_CITATION.search("as Roemer et al., 1990 showed") and PLAIN_CITATION.search("Zhao et al. (2017)")
    assert OUTPUT_CLUTTER["a matplotlib Text repr"].search("Text(0.5, 0.98, 'x')")
    assert OUTPUT_CLUTTER["a progress bar"].search("R sweep:   0%|          | 0/4")
    assert OUTPUT_CLUTTER["a pathlib repr"].search("PosixPath('/tmp/x.json')")
    assert OUTPUT_CLUTTER["an absolute path of the build machine"].search("records from /tmp/build/notebooks/records")
    assert not OUTPUT_CLUTTER["an absolute path of the build machine"].search("records/ beside the chapters")
    assert OUTPUT_CLUTTER["a library object's repr"].search("EvalResult('U-Net', n=40, ssim=0.9)")
    assert OUTPUT_CLUTTER["a pandas Series footer"].search("Name: target training slices, dtype: int64")
    assert TEXT_CLUTTER["notes the book does not contain"].search("see the DESIGN notes")


def clutter(html: Path) -> list[str]:
    """Every clutter finding in a built book's html folder (one line each; empty when clean)."""
    from bs4 import BeautifulSoup

    problems = []
    pages = sorted(html.rglob("*.html"))
    chapters = [p for p in pages if p.parent.name == "notebooks"]
    if len(chapters) < 8:
        return [f"expected the eight chapters under {html}/notebooks, found {len(chapters)}"]
    for page in pages:
        if page.parent.name not in ("notebooks", "book") and page.name != "index.html":
            continue
        soup = BeautifulSoup(page.read_text(), "html.parser")
        main = soup.find("main") or soup
        for output in main.select("div.cell_output"):
            text = output.get_text(" ")
            problems += [f"{page.name}: {what}: {m.group(0)!r}" for what, rx in OUTPUT_CLUTTER.items()
                         for m in [rx.search(text)] if m]
        for code in main.select("div.cell_input"):
            code.decompose()   # the chapters' code may name what their text may not
        text = main.get_text(" ")
        problems += [f"{page.name}: {what}: {m.group(0)!r}" for what, rx in TEXT_CLUTTER.items()
                     for m in [rx.search(text)] if m]
    return problems


@pytest.mark.slow
def test_built_pages_show_no_clutter(built_book):
    problems = clutter(built_book)
    assert not problems, "clutter in the built book:\n" + "\n".join(problems)


@pytest.mark.slow
def test_a_glued_list_renders_as_a_list(tmp_path):
    """``{eval}`` of a glued Markdown list on a line of its own is a list in the page (chapter 6's gap
    sentences, chapter 8's verdicts), and an inline value stays inline in its sentence."""
    import subprocess
    import sys

    import nbformat
    import yaml
    from bs4 import BeautifulSoup
    from nbclient import NotebookClient

    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "references.bib").write_text((ROOT / "book" / "references.bib").read_text())
    (tmp_path / "book" / "intro.md").write_text("# Tiny\n\nA page.\n")
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
                    "from IPython.display import Markdown\nfrom myst_nb import glue\n"
                    "items = Markdown('* first item\\n* second item')\nglue('items', items, display=False)\n"
                    "word = 'plainword'\nglue('word', word, display=False)"),
                nbformat.v4.new_markdown_cell("# Chapter\n\nThe list:\n\n{eval}`items`\n\nAn inline {eval}`word` here.")]
    NotebookClient(nb, timeout=120).execute()
    nbformat.write(nb, tmp_path / "notebooks" / "chapter.ipynb")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/chapter\n")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config.get("launch_buttons", {}).clear()
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path), "--path-output",
                           str(tmp_path / "out"), "-W", "-n", "--keep-going"], capture_output=True, text=True,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    soup = BeautifulSoup((tmp_path / "out" / "_build" / "html" / "notebooks" / "chapter.html").read_text(), "html.parser")
    main = soup.find("main")
    for code in main.select("div.cell_input, div.cell_output"):
        code.decompose()
    items = [li.get_text(" ", strip=True) for li in main.select("ul li")]
    assert "first item" in items and "second item" in items, items
    assert "* first" not in main.get_text(" ")
    assert any("An inline plainword here." in " ".join(p.get_text(" ").split()) for p in main.select("p"))


def test_the_legend_check_finds_a_series_the_legend_leaves_out():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from legend_check import missing_from_legends

    fig, (left, right) = plt.subplots(1, 2)
    left.plot([0, 1], label="fine-tuned"); left.plot([1, 0], label="scratch (full)")
    right.plot([0, 1], label="fine-tuned"); right.plot([0, 0], label="_hidden")
    right.legend()
    assert missing_from_legends(fig) == ["scratch (full)"]
    series = {label: h for ax in (left, right) for h, label in zip(*ax.get_legend_handles_labels())}
    right.legend(series.values(), series.keys())   # chapter 6's fix: one legend for every series
    assert missing_from_legends(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="no legend drawn")
    assert missing_from_legends(fig) == []   # a figure without a legend is not checked
    plt.close(fig)


def test_progress_bars_obey_tqdm_disable_in_the_notebook_class_too(monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm

    from mrtl_core import progress

    monkeypatch.setenv("TQDM_DISABLE", "1")
    import io
    assert not notebook_tqdm(range(2), file=io.StringIO()).disable   # tqdm's own default does not reach it
    assert progress.tqdm(range(2)).disable and progress.tqdm(range(2), disable=False).disable
    monkeypatch.setenv("TQDM_DISABLE", "")
    assert not progress.tqdm(range(2), file=open("/dev/null", "w")).disable
    assert progress.tqdm(range(2), disable=True).disable


if __name__ == "__main__":
    # the same checks on any build, e.g. the standard one:
    #   python tests/test_book_clean.py _build/standard/_build/html
    import sys

    found = clutter(Path(sys.argv[1]))
    print("\n".join(found) if found else f"{sys.argv[1]}: no clutter")
    sys.exit(1 if found else 0)
