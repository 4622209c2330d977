"""Exercise cells in the notebooks, and the learner copies with the solutions taken out.

An exercise is a code cell whose first line is ``# EXERCISE: <name>`` (``<name>`` is the
function it defines and the checker in :mod:`mmcourse.check` that grades it). Inside it,
the solution stands between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the learner
copy replaces those lines with ``raise NotImplementedError(...)`` at the same indentation.
Marker comments survive tools that strip cell metadata; the cell is also tagged
``exercise`` for editors that show tags.

A learner copy keeps no stored output anywhere (a stored "✓" under a checker would make an
unwritten exercise look passed) and drops the instructor's cells: those whose source starts
with ``<!-- instructor -->`` or that carry the tag ``instructor`` (the answers to the open
questions). Its Colab badge points at the learner copies committed in ``exercises/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from mmcourse import course

EXERCISE = re.compile(r"^#\s*EXERCISE:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$")
BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")


@dataclass(frozen=True)
class Exercise:
    """One exercise cell: its name, the full solution, and the learner's stub."""

    notebook: str
    cell: int
    name: str
    solution: str
    stub: str


def strip_solution(source: str, where: str = "cell") -> str:
    """``source`` with every BEGIN/END SOLUTION block replaced by a stub that raises."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"{where}: '### BEGIN SOLUTION' inside another solution block")
            inside = True
            indent = begin.group("indent")
            out.append(f"{indent}# your code here")
            out.append(f'{indent}raise NotImplementedError("write your solution here")')
        elif END.match(line):
            if not inside:
                raise ValueError(f"{where}: '### END SOLUTION' without a BEGIN before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '### BEGIN SOLUTION' is never closed by '### END SOLUTION'")
    return "\n".join(out)


def find_exercises(path: str | Path) -> list[Exercise]:
    """Every exercise cell of the notebook at ``path``, in order."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        first = cell.source.splitlines()[0]
        match = EXERCISE.match(first)
        if match is None:
            continue
        where = f"{path.name}, cell {i}"
        if "### BEGIN SOLUTION" not in cell.source:
            raise ValueError(f"{where}: exercise {match['name']!r} has no '### BEGIN SOLUTION'")
        found.append(
            Exercise(path.name, i, match["name"], cell.source, strip_solution(cell.source, where))
        )
    return found


INSTRUCTOR_MARK = "<!-- instructor -->"
LEARNER_FOLDER = "exercises"  # where the repository keeps the learner copies (Colab badges)


def is_instructor_cell(cell: nbformat.NotebookNode) -> bool:
    """A cell for the instructor only: source starts with ``<!-- instructor -->`` or tag."""
    return (cell.source.lstrip().startswith(INSTRUCTOR_MARK)
            or "instructor" in cell.metadata.get("tags", []))


def learner_copy(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` for learners: solutions replaced by stubs, every output and execution
    count cleared, instructor cells dropped, the Colab badge pointing at the learner copy."""
    nb = nbformat.from_dict(nb)  # deep copy
    nb.cells = [cell for cell in nb.cells if not is_instructor_cell(cell)]
    badge_from = course.colab_url(f"notebooks/{name}")
    badge_to = course.colab_url(f"{LEARNER_FOLDER}/{name}")
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)  # timings of the instructor's run
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(badge_from, badge_to)
            continue
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        if "### BEGIN SOLUTION" not in cell.source:
            continue
        cell.source = strip_solution(cell.source, f"{name}, cell {i}")
        tags = cell.metadata.setdefault("tags", [])
        if "exercise" not in tags:
            tags.append("exercise")
    return nb


def _is_chapter(path: Path, key: str) -> bool:
    return key in (path.name, path.stem) or path.name.startswith(f"{key}_")


def write_learner_copies(
    src_dir: str | Path | None, out_dir: str | Path, only: list[str] | None = None
) -> list[Path]:
    """Write a learner copy of every notebook in ``src_dir`` (default: the course's own
    notebooks, shipped in the package) into ``out_dir``; ``only`` picks chapters by file
    name or number prefix (``"02"``, ``"02_attention"``)."""
    src_dir = course.notebooks_dir() if src_dir is None else Path(src_dir)
    out_dir = Path(out_dir)
    notebooks = sorted(src_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) found in {src_dir}")
    if only:
        unknown = [key for key in only if not any(_is_chapter(p, key) for p in notebooks)]
        if unknown:
            names = ", ".join(p.stem for p in notebooks)
            raise ValueError(f"no chapter {', '.join(map(repr, unknown))}; the chapters are: {names}")
        notebooks = [p for p in notebooks if any(_is_chapter(p, key) for key in only)]
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError("the output folder must differ from the notebooks' folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        target = out_dir / path.name
        nbformat.write(learner_copy(nb, path.name), target)
        written.append(target)
    return written
