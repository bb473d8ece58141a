"""The course kit's reading of the real chapters (mrtl_core.course): goals, exercises, prerequisites, the lab plan."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mrtl_core import course

ROOT = Path(__file__).resolve().parents[1]
KIT = "09_course_kit"
CHAPTERS = course.chapter_notebooks(ROOT / "notebooks", exclude=(KIT,))
ALLOWANCE = {"run": 10.0, "think": 5.0}


def _markdown(nb: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown")


def test_the_kit_is_not_a_chapter_and_every_chapter_is_read():
    assert [p.stem[:2] for p in CHAPTERS] == [f"{i:02d}" for i in range(1, len(CHAPTERS) + 1)]
    assert (ROOT / "notebooks" / f"{KIT}.ipynb").exists() and KIT not in [p.stem for p in CHAPTERS]


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_has_learning_goals(nb):
    goals = course.learning_goals(nb)
    block = re.search(r":::\{admonition\} Learning goals(.*?)\n:::", _markdown(nb), re.S).group(1)
    items = re.findall(r"^(?:-|\d+\.) ", block, re.M)
    assert len(goals) == len(items) >= 3
    assert all(g and "{term}" not in g and "\n" not in g for g in goals)
    assert all(len(course.short_goal(g).split()) <= 9 for g in goals)


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_exercise_counts_match_the_chapter(nb):
    text = _markdown(nb)
    section = text[text.index("## Exercises"):]
    section = section[: re.search(r"^## (?!Exercises)", section, re.M).start()] if re.search(r"^## (?!Exercises)", section, re.M) else section
    titles = re.findall(r"^(?:\*\*\d+\.|\d+\. \*\*)", section, re.M)
    found = course.exercises(nb)
    assert len(found) == len(titles) >= 1
    assert [e.number for e in found] == list(range(1, len(found) + 1))
    assert {e.kind for e in found} <= {"run", "think"}
    # an exercise whose solution holds a code block is always a run exercise
    with_code = {int(n) for n, body in re.findall(r"^:::\{admonition\} Solution (\d+)\s*$(.*?)^:::", section, re.M | re.S)
                 if "```" in body}
    assert all(e.kind == "run" for e in found if e.number in with_code)


def test_exercise_kinds_on_known_cases():
    kinds = {(nb.stem, e.number): e.kind for nb in CHAPTERS for e in course.exercises(nb)}
    assert kinds[("01_kspace", 1)] == "think"   # where the ghosts sit: read off the page
    assert kinds[("01_kspace", 2)] == "run"     # its solution is a loop over centre fractions
    assert kinds[("06_fine_tuning", 3)] == "think"   # read from the records the page shows
    assert kinds[("04_pretrained_unet", 2)] == "run"  # "Train a copy of the network"


def test_prerequisites_come_from_the_preface():
    needs = course.prerequisites((ROOT / "book" / "intro.md").read_text())
    assert needs[None] and all(needs.get(int(nb.stem[:2])) for nb in CHAPTERS[:-1])
    assert any("conjugate gradients" in n for n in needs[2])
    with pytest.raises(ValueError, match="you should know"):
        course.prerequisites("# no table here")


def _fake_records(minutes: dict[str, float], profile: str = "ci") -> dict[str, dict]:
    return {c: {"chapter": c, "profile": profile, "elapsed_seconds": 60.0 * m, "numbers": {}} for c, m in minutes.items()}


def test_run_minutes_reads_elapsed_seconds_of_this_profile_only():
    records = _fake_records({"01_kspace": 2.0, "02_cg_sense": 3.0})
    records["02_cg_sense"]["profile"] = "standard"
    records["03_scanners"] = {"chapter": "03_scanners", "profile": "ci", "numbers": {}}   # an old record
    got = course.run_minutes(records, ["01_kspace", "02_cg_sense", "03_scanners", "04_pretrained_unet"], "ci")
    assert got == {"01_kspace": 2.0, "02_cg_sense": None, "03_scanners": None, "04_pretrained_unet": None}


@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0, 50.0, 200.0])
def test_the_lab_plan_respects_the_lab_length(scale):
    exercises = {nb.stem: course.exercises(nb) for nb in CHAPTERS}
    minutes = {nb.stem: scale * (i + 1) for i, nb in enumerate(CHAPTERS)}
    minutes[CHAPTERS[2].stem] = None   # an untimed chapter is left out
    plan = course.lab_plan(minutes, exercises, ALLOWANCE, 90.0)
    planned = [c for lab in plan for c in lab.chapters]
    assert planned == [c for c, m in minutes.items() if m is not None]   # every timed chapter once, in order
    for lab in plan:
        cost = sum(minutes[c] for c in lab.chapters) + sum(
            ALLOWANCE[e.kind] for c, kept in lab.exercises.items() for e in exercises[c] if e.number in kept)
        assert lab.minutes == pytest.approx(cost, abs=0.06)
        if lab.fits:
            assert cost <= 90.0
        else:   # only a chapter that alone runs longer than a lab, with no exercise
            assert len(lab.chapters) == 1 and minutes[lab.chapters[0]] > 90.0 and not any(lab.exercises.values())


def test_the_kit_notebook_reads_the_records_it_is_given():
    """The kit's code cells use only the helpers tested here, and it records the plan under its own name."""
    source = "\n".join("".join(c["source"]) for c in json.loads((ROOT / "notebooks" / f"{KIT}.ipynb").read_text())["cells"]
                       if c["cell_type"] == "code")
    assert "course.run_minutes(" in source and "course.lab_plan(" in source and f'KIT = "{KIT}"' in source
    assert "save_record(KIT" in source
