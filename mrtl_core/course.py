"""The course kit's reading of the chapters: learning goals, exercises and run times, for instructors.

Nothing here is typed per chapter. :func:`learning_goals` and :func:`exercises` read a chapter's
notebook (the ``:::{admonition} Learning goals`` block of its first text cells, the numbered
exercises of its ``## Exercises`` section and their folded solutions); :func:`run_minutes` reads
the time each chapter's kernel took in this build from its record (``elapsed_seconds``, written by
:func:`mrtl_core.records.save_record`); :func:`lab_plan` packs chapters and exercises into labs of
a given length with a stated allowance per exercise.

An exercise is a *run-it* exercise when its solution holds a code block, its question holds code
(a span in backticks, roles such as ``{eval}`` aside) or its question asks for a run (one of the
words of :data:`RUN_WORDS`); any other is a *thought* exercise, answered from the chapter's text,
figures and numbers.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["RUN_WORDS", "Exercise", "Lab", "chapter_notebooks", "chapter_title", "learning_goals", "short_goal",
           "exercises", "prerequisites", "run_minutes", "lab_plan", "plain_text"]

_GOALS = re.compile(r"^:::\{admonition\} Learning goals\s*$(.*?)^:::\s*$", re.M | re.S)
_ITEM = re.compile(r"^(?:[-*]|\d+\.)\s+", re.M)
_TITLE_BOLD_NUMBER = re.compile(r"^\*\*(\d+)\.\s+(.+?)\*\*", re.M)        # **1. Title.**
_TITLE_NUMBER_BOLD = re.compile(r"^(\d+)\.\s+\*\*(.+?)\*\*", re.M)        # 1. **Title.**
_SOLUTION = re.compile(r"^:::\{admonition\} Solution(?:\s+(\d+))?\s*$(.*?)^:::\s*$", re.M | re.S)
#: words of a question that ask the reader to run something (matched as whole words, any case)
RUN_WORDS = ("train", "fine-tune", "reconstruct", "simulate", "compute", "recompute", "measure", "estimate",
             "evaluate", "sweep", "run", "rebuild", "plot")
_RUN = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in RUN_WORDS) + r")\b", re.I)
_ROLE = re.compile(r"\{(?:term|doc|cite|eval)\}`([^`<]*?)\s*(?:<[^>]*>)?`")


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: its number, its title, and ``"run"`` or ``"think"``."""

    number: int
    title: str
    kind: str


@dataclass(frozen=True)
class Lab:
    """One lab of :func:`lab_plan`: the chapters it runs, the exercises it keeps, its minutes."""

    chapters: tuple[str, ...]
    exercises: dict[str, tuple[int, ...]]
    minutes: float
    fits: bool


def _cells(notebook: Path | str) -> list[dict[str, Any]]:
    return json.loads(Path(notebook).read_text())["cells"]


def _markdown(notebook: Path | str) -> list[str]:
    return ["".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "markdown"]


def plain_text(markdown: str) -> str:
    """``markdown`` on one line, roles (``{term}`x <y>```) reduced to their text, emphasis marks gone."""
    text = _ROLE.sub(lambda m: m.group(1), markdown)
    text = re.sub(r"\*\*|(?<!\w)\*(?!\s)|(?<!\s)\*(?!\w)", "", text)
    return " ".join(text.split())


def chapter_notebooks(folder: Path | str | None = None, exclude: Sequence[str] = ()) -> list[Path]:
    """The chapters (``NN_name.ipynb``, sorted) in ``folder``; by default the working directory, or its
    ``notebooks/`` when it holds none (a run from the repository root). Stems in ``exclude`` are left out."""
    folders = [Path(folder)] if folder is not None else [Path.cwd(), Path.cwd() / "notebooks"]
    for f in folders:
        found = [p for p in sorted(f.glob("[0-9][0-9]_*.ipynb")) if p.stem not in exclude]
        if found:
            return found
    raise FileNotFoundError(f"no chapter notebooks (NN_name.ipynb) in {' or '.join(map(str, folders))}")


def chapter_title(notebook: Path | str) -> str:
    """The text of the notebook's first ``# `` heading."""
    for text in _markdown(notebook):
        m = re.search(r"^# (.+)$", text, re.M)
        if m:
            return m.group(1).strip()
    raise ValueError(f"{notebook}: no '# ' title in any text cell")


def learning_goals(notebook: Path | str) -> list[str]:
    """The items of the chapter's ``Learning goals`` admonition, each as one line of plain text."""
    for text in _markdown(notebook):
        m = _GOALS.search(text)
        if m:
            body = "\n".join(line for line in m.group(1).splitlines() if not line.startswith(":class:"))
            starts = [i.start() for i in _ITEM.finditer(body)]
            items = [body[a:b] for a, b in zip(starts, starts[1:] + [len(body)])]
            return [plain_text(_ITEM.sub("", item, count=1)) for item in items]
    raise ValueError(f"{notebook}: no ':::{{admonition}} Learning goals' block")


def short_goal(goal: str, words: int = 8) -> str:
    """The start of a goal, at most ``words`` words, never cut inside ``$...$`` or parentheses."""
    cut = goal.split()
    if len(cut) <= words:
        return goal
    head = " ".join(cut[:words])
    while head.count("$") % 2 or head.count("(") > head.count(")"):
        opener = max(head.rfind("$") if head.count("$") % 2 else -1, head.rfind("("))
        head = head[:opener].rstrip()
    return head.rstrip(",;:") + " ..."


def prerequisites(intro: str) -> dict[int | None, list[str]]:
    """The preface's table of what the chapters assume, by chapter number.

    Reads the markdown table whose header is ``| you should know | used in |``; a row's "used in"
    is ``every chapter`` (key ``None``), ``chapter N`` or ``chapters N-M``.
    """
    lines = intro.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*you should know\s*\|\s*used in\s*\|", line))
    except StopIteration:
        raise ValueError("no '| you should know | used in |' table in the preface") from None
    out: dict[int | None, list[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        what, where = [c.strip() for c in line.strip().strip("|").split("|")][:2]
        m = re.fullmatch(r"chapters? (\d+)(?:\s*-\s*(\d+))?", where)
        if where == "every chapter":
            out.setdefault(None, []).append(what)
        elif m:
            for n in range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1):
                out.setdefault(n, []).append(what)
        else:
            raise ValueError(f"the preface's prerequisite row {line!r}: 'used in' must be 'every chapter', "
                             "'chapter N' or 'chapters N-M'")
    return out


def _exercise_section(notebook: Path | str) -> str:
    texts = _markdown(notebook)
    for i, text in enumerate(texts):
        m = re.search(r"^## Exercises\s*$", text, re.M)
        if m:
            rest = "\n\n".join([text[m.end():]] + texts[i + 1:])
            end = re.search(r"^#{1,2} ", rest, re.M)
            return rest[: end.start()] if end else rest
    raise ValueError(f"{notebook}: no '## Exercises' section")


def exercises(notebook: Path | str) -> list[Exercise]:
    """The chapter's numbered exercises, in order, each judged ``"run"`` or ``"think"`` (module docstring)."""
    section = _exercise_section(notebook)
    titles = list(_TITLE_BOLD_NUMBER.finditer(section)) or list(_TITLE_NUMBER_BOLD.finditer(section))
    if not titles:
        raise ValueError(f"{notebook}: no numbered exercise ('**1. Title.**' or '1. **Title.**')")
    solutions = list(_SOLUTION.finditer(section))
    numbered = {int(s.group(1)): s.group(2) for s in solutions if s.group(1)}
    out = []
    for k, title in enumerate(titles):
        number = int(title.group(1))
        end = titles[k + 1].start() if k + 1 < len(titles) else len(section)
        block = section[title.start():end]
        first_solution = _SOLUTION.search(block)
        question = block[: first_solution.start()] if first_solution else block
        solution = numbered.get(number, first_solution.group(2) if first_solution else "")
        question = _ROLE.sub("", question)
        runs = "```" in solution or "`" in question or bool(_RUN.search(question))
        out.append(Exercise(number, plain_text(title.group(2)).rstrip("."), "run" if runs else "think"))
    return out


def run_minutes(records: dict[str, dict], chapters: Sequence[str], profile: str) -> dict[str, float | None]:
    """``{chapter: minutes its kernel ran in this build}`` from the records' ``elapsed_seconds``;
    ``None`` for a chapter with no record, one written with another profile, or one without the timing."""
    out: dict[str, float | None] = {}
    for chapter in chapters:
        rec = records.get(chapter) or {}
        seconds = rec.get("elapsed_seconds") if rec.get("profile") == profile else None
        out[chapter] = None if seconds is None else float(seconds) / 60.0
    return out


def lab_plan(minutes: dict[str, float | None], chapter_exercises: dict[str, Sequence[Exercise]],
             allowance: dict[str, float], lab_minutes: float = 90.0) -> list[Lab]:
    """Pack the timed chapters, in order, into labs of ``lab_minutes``.

    A chapter costs its run time plus ``allowance[kind]`` minutes for each exercise kept. Each lab
    starts a chapter if its run time fits in what is left, then keeps that chapter's exercises in
    order while they fit (one that does not is skipped, a cheaper later one may still fit); the next
    chapter goes into the same lab if it fits whole with all its exercises, else it opens a new lab.
    A chapter whose run time alone exceeds ``lab_minutes`` gets a lab of its own with ``fits=False``
    and no exercises. Chapters without a time (``None``) are left out.
    """
    labs: list[Lab] = []
    chapters: list[str] = []
    kept: dict[str, tuple[int, ...]] = {}
    used = 0.0

    def close() -> None:
        nonlocal chapters, kept, used
        if chapters:
            labs.append(Lab(tuple(chapters), dict(kept), round(used, 1), used <= lab_minutes))
        chapters, kept, used = [], {}, 0.0

    for chapter, run in minutes.items():
        if run is None:
            continue
        exs = list(chapter_exercises.get(chapter, ()))
        whole = run + sum(allowance[e.kind] for e in exs)
        if chapters and used + whole > lab_minutes:
            close()
        if run > lab_minutes:
            chapters, used = [chapter], run
            close()
            continue
        chapters.append(chapter)
        used += run
        chosen = []
        for e in exs:
            if used + allowance[e.kind] <= lab_minutes:
                used += allowance[e.kind]
                chosen.append(e.number)
        kept[chapter] = tuple(chosen)
    close()
    return labs
