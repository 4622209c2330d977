"""Exercise cells in the notebooks, and the learner copies with the solutions taken out.

An exercise is a code cell whose first line is ``# EXERCISE: <name>`` (``<name>`` is the
function it defines and the checker in :mod:`mmcourse.check` that grades it). Inside it,
the solution stands between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the learner
copy replaces those lines with ``raise NotImplementedError(...)`` at the same indentation.
Marker comments survive tools that strip cell metadata; the cell is also tagged
``exercise`` for editors that show tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

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


def learner_copy(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` with solutions replaced by stubs and exercise outputs cleared."""
    nb = nbformat.from_dict(nb)  # deep copy
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
            continue
        cell.source = strip_solution(cell.source, f"{name}, cell {i}")
        cell.outputs = []
        cell.execution_count = None
        tags = cell.metadata.setdefault("tags", [])
        if "exercise" not in tags:
            tags.append("exercise")
    return nb


def write_learner_copies(src_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write a learner copy of every notebook in ``src_dir`` into ``out_dir``."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    notebooks = sorted(src_dir.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (*.ipynb) found in {src_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError("the output folder must differ from the notebooks' folder")
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        target = out_dir / path.name
        nbformat.write(learner_copy(nb, path.name), target)
        written.append(target)
    return written
