"""The book's Sphinx source, assembled from the checkout: ``docs/`` (configuration, styles),
the chapter notebooks prepared for reading, the landing page, the instructor guide and the API
reference pages."""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import shutil
from pathlib import Path

import nbformat

import mmcourse
from mmcourse import course
from mmcourse.colab import is_install_cell
from mmcourse.exercises import INSTRUCTOR_MARK, find_exercises, is_instructor_cell

BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\((?P<url>[^)]*)\)")
# The part of MathJax the pages use: TeX and MathML in, HTML out, its fonts, menu, a11y.
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "output/chtml.js", "ui", "a11y",
                 "adaptors")
API_SKIP = {"mmcourse.__main__"}  # runs the command line when imported


def find_root(root: str | Path | None = None) -> Path:
    """The repository checkout to build from: ``root``, else the package's own checkout."""
    candidate = Path(root) if root is not None else course.CHECKOUT
    needed = ("README.md", "INSTRUCTORS.md", "notebooks", "docs/conf.py")
    if candidate is None or not all((candidate / n).exists() for n in needed):
        where = candidate or "the installed package"
        raise FileNotFoundError(
            f"the book is built from a checkout of {course.REPOSITORY} (README.md, "
            f"INSTRUCTORS.md, notebooks/, docs/); {where} is not one"
        )
    return candidate.resolve()


def math_on_one_line(markdown: str) -> str:
    """Inline ``$...$`` math joined onto one line. Jupyter takes the math out before it reads
    the markdown, so a formula may wrap onto a line that starts with ``+``; the book's parser
    reads the markdown first and would see a list item there."""
    out = []
    for k, part in enumerate(re.split(r"(```.*?```|`[^`\n]*`)", markdown, flags=re.S)):
        if k % 2 == 0:  # outside code
            part = re.sub(r"(?<![$\\])\$(?!\$)[^$]+?(?<!\\)\$(?!\$)",
                          lambda m: re.sub(r"\s*\n\s*", " ", m[0]), part)
        out.append(part)
    return "".join(out)


def chapter_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A notebook prepared for the book: no instructor cells, the Colab badge as a plain link
    (no image from outside the site), the install cell removed, solutions folded."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if not is_instructor_cell(c)]
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type == "markdown":
            cell.source = math_on_one_line(
                BADGE.sub(lambda m: f"[Open in Colab]({m['url']})", cell.source))
        elif is_install_cell(cell.source):
            tags.append("remove-cell")
        elif "### BEGIN SOLUTION" in cell.source:
            tags.append("hide-input")
    return nb


def _chapter_link(c: course.Chapter, present: set[str]) -> str:
    return f"[{c.title}]({c.notebook})" if c.notebook in present else c.title


def landing_page(readme: str, chapters: list[course.Chapter], present: set[str]) -> str:
    """index.md: the README's opening, its chapter table linking to the chapter pages."""
    title, _, rest = readme.partition("\n")
    intro = rest.split("\n## ", 1)[0].strip()
    note = re.search(r"^## Chapters\n.*?\n\n(?P<note>[^|].*?)(?=\n\n|\n## )", readme, re.S | re.M)
    rows = [f"| {c.number} | {_chapter_link(c, present)} | {c.summary} | {c.minutes:g} |"
            for c in chapters]
    toc = [Path(c.notebook).stem for c in chapters if c.notebook in present]
    return "\n".join([
        title, "", intro, "",
        "## Chapters", "",
        "| # | chapter | what you build | minutes (CPU) |",
        "| --- | --- | --- | --- |",
        *rows, "",
        note["note"].strip() if note else "", "",
        "Each chapter opens in Google Colab from the link at its top; the exercise versions are "
        f"in the repository's `exercises/` folder ({course.REPOSITORY}).", "",
        "```{toctree}", ":hidden:", ":caption: Chapters", "", *toc, "```", "",
        "```{toctree}", ":hidden:", ":caption: Teaching and reference", "",
        "instructors", "api/index", "```", "",
    ])


def _site_links(markdown: str, present: set[str]) -> str:
    """Relative links of a repository file made to work in the book: chapters in the book
    become its pages, other files their address in the repository."""
    def fix(match: re.Match) -> str:
        target = match["target"]
        if re.match(r"[a-z]+:|#", target):
            return match[0]
        if target.startswith("notebooks/") and target.removeprefix("notebooks/") in present:
            return f"]({target.removeprefix('notebooks/')})"
        return f"]({course.REPOSITORY}/blob/{course.BRANCH}/{target})"

    return re.sub(r"\]\((?P<target>[^)\s]+)\)", fix, markdown)


def _demote_headings(markdown: str) -> str:
    """Headings inside collected cells as bold lines, so they do not break the page's outline."""
    return re.sub(r"^#{1,6}\s+(.*)$", r"**\1**", markdown, flags=re.M)


def answers(chapters: list[course.Chapter], notebooks: Path) -> str:
    """The answers kept out of the learner copies: each exercise's solution and the
    instructor cells (answers to the open questions), chapter by chapter."""
    out = ["## Answers", "",
           "Collected from the notebooks: the solution of every exercise (the learner copies "
           "replace it by a stub) and the instructor cells that answer the open questions "
           "(left out of the learner copies and of the chapter pages).", ""]
    for c in chapters:
        path = notebooks / c.notebook
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        solutions = find_exercises(path)
        notes = [cell.source.replace(INSTRUCTOR_MARK, "", 1).strip()
                 for cell in nb.cells if is_instructor_cell(cell)]
        if not solutions and not notes:
            continue
        out += [f"### {c.number} · {c.title}", ""]
        for ex in solutions:
            out += [f"**Exercise `{ex.name}`**", "", "```python", ex.solution.strip(), "```", ""]
        for note in notes:
            out += ["**Open questions**", "", _demote_headings(note), ""]
    return "\n".join(out)


def api_pages(dest: Path) -> None:
    """api/index.md and one page per subpackage, each module documented from its docstrings."""
    groups: dict[str, list[str]] = {"mmcourse": ["mmcourse"]}
    for info in pkgutil.walk_packages(mmcourse.__path__, "mmcourse."):
        if info.name in API_SKIP or info.name.split(".")[-1].startswith("_"):
            continue
        parts = info.name.split(".")
        group = parts[0] if len(parts) == 2 and not info.ispkg else ".".join(parts[:2])
        groups.setdefault(group, []).append(info.name)
    dest.mkdir(parents=True, exist_ok=True)
    for group, modules in groups.items():
        lines = [group, "=" * len(group), ""]
        for name in sorted(modules, key=lambda n: (n != group, n)):
            if name != group:
                lines += [name, "-" * len(name), ""]
            lines += [f".. automodule:: {name}", "   :members:", ""]
        (dest / f"{group}.rst").write_text("\n".join(lines), encoding="utf-8")
    toc = "\n".join(sorted(groups))
    (dest / "index.md").write_text(
        "# The package `mmcourse`\n\nThe reference of every module, from its docstrings. "
        "Each chapter says which of these it builds by hand first.\n\n"
        f"```{{toctree}}\n:maxdepth: 2\n\n{toc}\n```\n", encoding="utf-8")


def copy_mathjax(dest: Path) -> None:
    """The part of MathJax 3 the pages load, from the django-static-mathjax distribution."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MathJax's files come from django-static-mathjax: "
                           "pip install 'mmcourse[book]'")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    for part in MATHJAX_PARTS:
        source, target = es5 / part, dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def assemble(root: Path, src: Path) -> list[course.Chapter]:
    """Write the whole Sphinx source of the book into ``src``; return the chapters in it."""
    shutil.copytree(root / "docs", src, ignore=shutil.ignore_patterns("__pycache__", "_build"))
    copy_mathjax(src / "_static" / "mathjax")
    readme = (root / "README.md").read_text(encoding="utf-8")
    chapters = course.chapters(readme)
    notebooks = root / "notebooks"
    present = {c.notebook for c in chapters if (notebooks / c.notebook).exists()}
    for c in chapters:
        if c.notebook in present:
            nb = nbformat.read(notebooks / c.notebook, as_version=4)
            nbformat.write(chapter_page(nb), src / c.notebook)
    (src / "index.md").write_text(landing_page(readme, chapters, present), encoding="utf-8")
    guide = (root / "INSTRUCTORS.md").read_text(encoding="utf-8")
    (src / "instructors.md").write_text(
        _site_links(guide, present).rstrip() + "\n\n" + answers(chapters, notebooks) + "\n", encoding="utf-8")
    api_pages(src / "api")
    return [c for c in chapters if c.notebook in present]
