"""Bring everything that repeats across the notebooks in line with its one source.

    python scripts/sync_notebooks.py          # rewrite what differs, list the files changed
    python scripts/sync_notebooks.py --check  # change nothing; exit 1 if something would change

From ``mmcourse.course.REPOSITORY`` and the README's chapter table it rewrites:
- each notebook's Colab badge (header cell) and its Colab install cell (``mmcourse.colab``),
  with the libraries that notebook needs (the package's requirements and the notebook's own
  imports, never torch);
- the README's chapter table: a Colab badge for each chapter and one for its exercise version;
- ``exercises/``: the learner copies (``mmcourse exercises``), which the README's second badge opens;
- the workshop plans in INSTRUCTORS.md (``mmcourse.workshop``), from the README's minutes.
Running it twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tempfile
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmcourse import colab, course, workshop  # noqa: E402
from mmcourse.exercises import LEARNER_FOLDER, write_learner_copies  # noqa: E402

BADGE = re.compile(
    r"\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/[^)]*\)"
)


def _requirements() -> tuple[list[str], dict[str, str]]:
    """The package's runtime requirements, and every requirement of pyproject by distribution."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = list(project["dependencies"])
    every = runtime + [r for extra in project.get("optional-dependencies", {}).values() for r in extra]
    return runtime, {colab._requirement_name(r): r for r in every}


def _distribution_of() -> dict[str, str]:
    return {module: dists[0] for module, dists in importlib.metadata.packages_distributions().items()}


def sync_notebook(path: Path, runtime: list[str], requirement_of: dict[str, str],
                  distribution_of: dict[str, str]) -> bool:
    """Rewrite the badge and install cell of one notebook; True when the file changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    header = nb.cells[0]
    badge = course.colab_badge(f"notebooks/{path.name}")
    if header.cell_type != "markdown":
        raise ValueError(f"{path.name}: the first cell must be the markdown header")
    if BADGE.search(header.source):
        header.source = BADGE.sub(lambda _: badge, header.source, count=1)
    else:  # right under the title line
        title, _, rest = header.source.partition("\n")
        header.source = f"{title}\n\n{badge}\n{rest}"
    code = [c.source for c in nb.cells if c.cell_type == "code" and not colab.is_install_cell(c.source)]
    cell_source = colab.install_cell(colab.needs(code, runtime, distribution_of, requirement_of))
    install = next((c for c in nb.cells if c.cell_type == "code" and colab.is_install_cell(c.source)), None)
    if install is None:
        first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first_code, nbformat.v4.new_code_cell(cell_source))
    else:
        install.source = cell_source
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + "\n", encoding="utf-8")
        return True
    return False


def sync_readme(text: str) -> str:
    """The README with each chapter row's Colab badges generated, and the table header to match."""
    out = []
    for line in text.splitlines():
        if line.startswith("| # | chapter |"):
            line = "| # | chapter | what you build | minutes (CPU) | Colab | exercises on Colab |"
        elif line.startswith("| --- | --- | --- | --- | --- |") and out and out[-1].startswith("| # | chapter |"):
            line = "| --- | --- | --- | --- | --- | --- |"
        else:
            match = course.ROW.match(line)
            if match:
                name = match["notebook"]
                cells = [c.strip() for c in line.strip().strip("|").split("|")][:4]
                line = "| " + " | ".join(cells + [
                    course.colab_badge(f"notebooks/{name}"),
                    course.colab_badge(f"{LEARNER_FOLDER}/{name}"),
                ]) + " |"
        out.append(line)
    return sync_mentions("\n".join(out) + ("\n" if text.endswith("\n") else ""))


def sync_mentions(text: str) -> str:
    """``text`` with every install command and Colab link of the course's repository
    pointing at ``course.REPOSITORY`` (links to other projects are left alone)."""
    text = re.sub(r"git\+https://github\.com/[\w.-]+/[\w-]+(?:\.[\w-]+)*", course.install_source(), text)
    slug, branch = course.github_slug(), course.BRANCH
    return re.sub(r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/",
                  f"colab.research.google.com/github/{slug}/blob/{branch}/", text)


def sync_learner_copies(notebooks: Path, target: Path) -> list[Path]:
    """Write ``exercises/`` anew; return the files whose content changed (or went away)."""
    changed = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text(encoding="utf-8") for p in write_learner_copies(notebooks, tmp)}
        target.mkdir(exist_ok=True)
        for old in target.glob("*.ipynb"):
            if old.name not in fresh:
                old.unlink()
                changed.append(old)
        for name, text in fresh.items():
            path = target / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    if args.check:  # work on a copy, report what would change
        with tempfile.TemporaryDirectory() as tmp:
            return _check(Path(tmp))

    runtime, requirement_of = _requirements()
    distribution_of = _distribution_of()
    changed: list[Path] = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if sync_notebook(path, runtime, requirement_of, distribution_of):
            changed.append(path)
    for name in ("README.md", "CONTRIBUTING.md", "INSTRUCTORS.md"):
        path = ROOT / name
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        new = sync_readme(text) if name == "README.md" else sync_mentions(text)
        if name == "INSTRUCTORS.md":
            new = workshop.replace_plans(new, workshop.plans(
                course.chapters(ROOT / "README.md"), ROOT / "notebooks"))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    changed += sync_learner_copies(ROOT / "notebooks", ROOT / LEARNER_FOLDER)
    for path in changed:
        print(f"updated {path.relative_to(ROOT)}")
    print(f"{len(changed)} file(s) updated" if changed else "everything already in sync")
    return 0


def _check(tmp: Path) -> int:
    import shutil
    import subprocess

    for name in ("notebooks", LEARNER_FOLDER, "mmcourse", "scripts"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("README.md", "CONTRIBUTING.md", "INSTRUCTORS.md", "pyproject.toml"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, tmp / name)
    done = subprocess.run([sys.executable, str(tmp / "scripts" / "sync_notebooks.py")],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        return done.returncode
    stale = [line.removeprefix("updated ") for line in done.stdout.splitlines()
             if line.startswith("updated ")]
    for name in stale:
        print(f"out of date: {name}")
    if stale:
        print("run: python scripts/sync_notebooks.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
