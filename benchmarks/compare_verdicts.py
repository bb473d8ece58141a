"""Did a change alter what the book *says*? Compare two built books sentence by sentence, numbers masked.

    python benchmarks/compare_verdicts.py BEFORE_HTML_DIR AFTER_HTML_DIR [--pages 04 05 06 07 08]

``compare_records.py`` asks whether any recorded number moved; a change of arithmetic (bf16 autocast
against float32, another CPU's kernels) moves them all a little, and the question is then whether any
*finding* moved. Every verdict in the book is a computed sentence ("is better than", "equivalent,
within ±0.01, to", "the best is *l2sp*", "partly"), so two builds agree on their findings when their
pages agree word for word once every number is masked. This reads each chapter page of both builds
(``notebooks/<page>*.html``), keeps the visible text of the article (no code cells: their source is the
same by construction), replaces every number by ``#``, splits it into sentences and prints every
sentence that differs (difflib), page by page. Exit status 1 if any page differs.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

NUMBER = re.compile(r"[+\-−–]?\d+(?:[.,]\d+)*(?:e[+\-]?\d+)?")
#: elements whose text is not prose: code and outputs that print tables, scripts, styles, navigation
SKIP = {"script", "style", "pre", "code", "nav", "table", "svg", "button", "label", "header", "footer"}


class _Text(HTMLParser):
    """The visible prose of the page's ``<article>``, outside code cells and tables."""

    #: elements without an end tag: they never close what they open
    VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "source", "col", "area", "base", "embed", "param", "track"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []   # (tag, whether it starts a skipped region)
        self.article = 0
        self.skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.VOID:
            return
        classes = dict(attrs).get("class") or ""
        skipping = tag in SKIP or "cell_input" in classes
        self.stack.append((tag, skipping))
        self.article += tag == "article"
        self.skip += skipping

    def handle_endtag(self, tag: str) -> None:
        # close up to the matching open tag (HTML lets some end tags be omitted)
        while self.stack:
            open_tag, skipping = self.stack.pop()
            self.article -= open_tag == "article"
            self.skip -= skipping
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.article and not self.skip:
            self.parts.append(data)


def sentences(html: str) -> list[str]:
    """The page's prose as sentences with every number replaced by ``#``."""
    parser = _Text()
    parser.feed(html)
    text = " ".join(" ".join(parser.parts).split())
    text = NUMBER.sub("#", text)
    return [s.strip() for s in re.split(r"(?<=[.;:!?])\s+", text) if s.strip()]


def page(root: Path, prefix: str) -> Path | None:
    found = sorted((root / "notebooks").glob(f"{prefix}*.html")) if (root / "notebooks").is_dir() else []
    return found[0] if found else None


def compare(before: Path, after: Path, pages: list[str]) -> dict[str, list[str]]:
    """``{page: [diff lines]}`` for every page whose masked sentences differ (missing pages say so)."""
    out: dict[str, list[str]] = {}
    for prefix in pages:
        a, b = page(before, prefix), page(after, prefix)
        if a is None or b is None:
            out[prefix] = [f"missing in {'before' if a is None else 'after'}: notebooks/{prefix}*.html"]
            continue
        sa, sb = sentences(a.read_text(encoding="utf-8")), sentences(b.read_text(encoding="utf-8"))
        diff = [line for line in difflib.unified_diff(sa, sb, lineterm="", n=0)
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
        if diff:
            out[prefix] = diff
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a built book's HTML folder (_build/<profile>/_build/html)")
    parser.add_argument("after", type=Path)
    parser.add_argument("--pages", nargs="+", default=["04", "05", "06", "07", "08"],
                        help="chapter page prefixes (default: the chapters with verdicts, 04-08)")
    args = parser.parse_args(argv)
    for root in (args.before, args.after):
        if not (root / "notebooks").is_dir():
            parser.error(f"{root}: no notebooks/ folder of a built book")
    changed = compare(args.before, args.after, args.pages)
    for prefix in args.pages:
        n = len(sentences(page(args.before, prefix).read_text(encoding="utf-8"))) if page(args.before, prefix) else 0
        print(f"page {prefix}: {n} sentences, " + (f"{len(changed[prefix])} differing lines" if prefix in changed else "the same words"))
        for line in changed.get(prefix, []):
            print("   ", line[:400])
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
