"""The workshop plans: built from the README's minutes and the notebooks' exercises, and the
tables in INSTRUCTORS.md are the current ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcourse import course, workshop
from mmcourse.course import Chapter

ROOT = Path(__file__).resolve().parents[1]


def test_instructors_md_holds_the_current_plans():
    text = (ROOT / "INSTRUCTORS.md").read_text()
    current = workshop.plans(course.chapters(ROOT / "README.md"), ROOT / "notebooks")
    assert workshop.replace_plans(text, current) == text, "run: python scripts/sync_notebooks.py"


def test_every_plan_fits_its_days_and_the_three_days_cover_the_course():
    chapters = course.chapters(ROOT / "README.md")
    counts = workshop.exercise_counts(ROOT / "notebooks")
    for plan in workshop.PLANS.values():
        for day in workshop.schedule(plan, chapters, counts):
            assert sum(s.minutes for s in day) <= workshop.DAY_MINUTES
    three = next(p for title, p in workshop.PLANS.items() if title.startswith("Three days"))
    assert [s.chapter for day in three for s in day] == [c.number for c in chapters]


def _chapters(minutes: float) -> list[Chapter]:
    return [Chapter("00", "Setup", "00_setup.ipynb", "tour", 1),
            Chapter("02", "Attention", "02_attention.ipynb", "attention", minutes)]


def test_a_session_is_explain_plus_measured_run_plus_exercises():
    plan = [[workshop.Session("00", 20), workshop.Session("02", 60, exercises=False)]]
    counts = {"00_setup.ipynb": 2, "02_attention.ipynb": 3}
    (day,) = workshop.schedule(plan, _chapters(minutes=2.5), counts)
    assert [s.minutes for s in day] == [20 + 1 + 2 * workshop.EXERCISE_MINUTES, 60 + 3]
    assert (day[1].exercises, day[1].homework) == (0, 3)
    text = workshop.render("A day", [day])
    assert "| [02 · Attention](notebooks/02_attention.ipynb) | 60 | 3 | 0 | 63 | 3 |" in text
    assert f"104 of {workshop.DAY_MINUTES} minutes" in text


def test_a_day_too_long_or_an_unknown_chapter_is_an_error():
    with pytest.raises(ValueError, match="day 1 needs 4"):
        workshop.schedule([[workshop.Session("02", 400)]], _chapters(minutes=1), {})
    with pytest.raises(ValueError, match="chapter 07, which the README lacks"):
        workshop.schedule([[workshop.Session("07", 10)]], _chapters(minutes=1), {})


def test_replace_plans_needs_the_markers():
    text = f"a\n{workshop.BEGIN}\nold\n{workshop.END}\nb"
    assert workshop.replace_plans(text, "new") == f"a\n{workshop.BEGIN}\nnew\n{workshop.END}\nb"
    with pytest.raises(ValueError, match="no <!-- plans:begin -->"):
        workshop.replace_plans("no markers", "new")
