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
    assert TEXT_CLUTTER["notes the book does not contain"].search("see the DESIGN notes")


@pytest.mark.slow
def test_built_pages_show_no_clutter(built_book):
    from bs4 import BeautifulSoup

    problems = []
    pages = sorted(built_book.rglob("*.html"))
    chapters = [p for p in pages if p.parent.name == "notebooks"]
    assert len(chapters) >= 8, f"expected the eight chapters under {built_book}/notebooks, found {len(chapters)}"
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
    assert not problems, "clutter in the built book:\n" + "\n".join(problems)
