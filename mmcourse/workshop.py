"""Workshop plans: which chapters fill a one-day or a three-day workshop, and for how long.

A session's length is computed, not guessed: the minutes the instructor explains (a choice of
the plan), plus the notebook's measured run time (the README's minutes column), plus
``EXERCISE_MINUTES`` per exercise the notebook holds, when the exercises are done in class.
``scripts/sync_notebooks.py`` writes the tables into INSTRUCTORS.md; a test keeps them current
and checks that each day fits in ``DAY_MINUTES``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from mmcourse.course import Chapter
from mmcourse.exercises import find_exercises

EXERCISE_MINUTES = 10  # one exercise in class: read, write, run the checker, discuss
DAY_MINUTES = 6 * 60  # teaching time of a 9:00-16:30 day with lunch and two short breaks
BEGIN, END = "<!-- plans:begin -->", "<!-- plans:end -->"


@dataclass(frozen=True)
class Session:
    """One chapter in a day of a plan."""

    chapter: str  # its number, "02"
    explain: int  # minutes of explanation and walking through the notebook together
    exercises: bool = True  # the exercises in class (False: as homework)


PLANS: dict[str, list[list[Session]]] = {
    "One day: multimodal foundations": [
        [Session("00", 20), Session("02", 55), Session("05", 30), Session("07", 50),
         Session("08", 45)],
    ],
    "Three days: the whole course": [
        [Session("00", 20), Session("01", 75), Session("02", 75), Session("03", 60)],
        [Session("04", 55), Session("05", 55), Session("06", 45), Session("07", 55)],
        [Session("08", 45), Session("09", 45), Session("10", 45), Session("11", 45),
         Session("12", 15, exercises=False), Session("13", 15, exercises=False)],
    ],
}


@dataclass(frozen=True)
class Slot:
    """A session with its minutes worked out."""

    chapter: Chapter
    explain: int
    run: int
    exercises: int  # how many, done in class
    homework: int  # how many, left for after the day

    @property
    def minutes(self) -> int:
        return self.explain + self.run + self.exercises * EXERCISE_MINUTES


def schedule(plan: list[list[Session]], chapters: list[Chapter],
             exercise_counts: dict[str, int]) -> list[list[Slot]]:
    """The plan's days as slots; a day longer than ``DAY_MINUTES`` is an error."""
    by_number = {c.number: c for c in chapters}
    days = []
    for d, day in enumerate(plan, start=1):
        slots = []
        for s in day:
            if s.chapter not in by_number:
                raise ValueError(f"the plan names chapter {s.chapter}, which the README lacks")
            chapter = by_number[s.chapter]
            n = exercise_counts.get(chapter.notebook, 0)
            slots.append(Slot(chapter, s.explain, math.ceil(chapter.minutes),
                              n if s.exercises else 0, 0 if s.exercises else n))
        total = sum(s.minutes for s in slots)
        if total > DAY_MINUTES:
            raise ValueError(f"day {d} needs {total} minutes, more than the {DAY_MINUTES} of a day")
        days.append(slots)
    return days


def exercise_counts(notebooks: Path) -> dict[str, int]:
    """How many exercises each notebook holds."""
    return {p.name: len(find_exercises(p)) for p in sorted(Path(notebooks).glob("*.ipynb"))}


def render(title: str, days: list[list[Slot]]) -> str:
    """One plan as markdown: a table per day."""
    out = [f"### {title}", ""]
    for d, slots in enumerate(days, start=1):
        if len(days) > 1:
            out += [f"**Day {d}**", ""]
        out += ["| chapter | explain | run | exercises in class | minutes | homework |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for s in slots:
            c = s.chapter
            out.append(f"| [{c.number} · {c.title}](notebooks/{c.notebook}) | {s.explain} | "
                       f"{s.run} | {s.exercises} | {s.minutes} | {s.homework or ''} |")
        total = sum(s.minutes for s in slots)
        out += ["", f"{total} of {DAY_MINUTES} minutes of teaching.", ""]
    return "\n".join(out)


def plans(chapters: list[Chapter], notebooks: Path) -> str:
    """Every plan of ``PLANS`` rendered, for INSTRUCTORS.md."""
    counts = exercise_counts(notebooks)
    return "\n".join(render(title, schedule(plan, chapters, counts)) for title, plan in PLANS.items())


def replace_plans(text: str, rendered: str) -> str:
    """``text`` with the part between the plan markers replaced by ``rendered``."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {BEGIN} ... {END} block to hold the plans")
    return pattern.sub(lambda _: f"{BEGIN}\n{rendered.strip()}\n{END}", text)
