"""The book's source: what the chapter pages keep and leave out, the landing page from the
README's table, the answers in the instructor guide, the API pages, and the message when the
`book` extra is missing. (The build itself and the pages in a browser: test_book_browser.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mmcourse import book, course
from mmcourse.book import source
from mmcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = "# EXERCISE: double\ndef double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"


def _chapter() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# 99 · Tiny\n\n" + course.colab_badge("notebooks/99_tiny.ipynb")),
        new_code_cell("# NBVAL_SKIP\nimport sys\nif \"google.colab\" in sys.modules:\n    pass"),
        new_markdown_cell("The loss is $L = a\n+ b$, and `$HOME\nx` stays."),
        new_code_cell(SOLUTION),
        new_markdown_cell("## Open questions\n\n1. Why?"),
        new_markdown_cell("<!-- instructor -->\n## Answers\n\n1. Because $x$."),
    ])


def test_chapter_page_drops_instructor_cells_and_folds_solutions():
    page = source.chapter_page(_chapter())
    sources = [c.source for c in page.cells]
    assert not any("Because" in s for s in sources)
    assert "## Open questions\n\n1. Why?" in sources
    assert f"[Open in Colab]({course.colab_url('notebooks/99_tiny.ipynb')})" in sources[0]
    assert "colab-badge.svg" not in sources[0]  # no image from outside the site
    assert "remove-cell" in page.cells[1].metadata.tags  # the install cell
    assert "hide-input" in page.cells[3].metadata.tags  # the solution, folded
    assert "$L = a + b$" in sources[2] and "`$HOME\nx`" in sources[2]


def test_answers_collect_solutions_and_instructor_cells(tmp_path):
    nbformat.write(_chapter(), tmp_path / "99_tiny.ipynb")
    chapters = [course.Chapter("99", "Tiny", "99_tiny.ipynb", "x", 1),
                course.Chapter("98", "Absent", "98_absent.ipynb", "y", 1)]
    text = source.answers(chapters, tmp_path)
    assert "### 99 · Tiny" in text and "Absent" not in text
    assert "return 2 * x" in text and "Because $x$." in text
    assert "**Answers**" in text and "\n## Answers\n\n1." not in text  # headings demoted
    assert "<!-- instructor -->" not in text


def test_landing_page_is_the_readmes_table():
    readme = (ROOT / "README.md").read_text()
    chapters = course.chapters(readme)
    present = {c.notebook for c in chapters[:2]}
    page = source.landing_page(readme, chapters, present)
    assert page.startswith(readme.splitlines()[0])
    for c in chapters:
        link = f"[{c.title}]({c.notebook})"
        assert (link in page) == (c.notebook in present)
        assert f"| {c.number} | " in page and c.summary in page
    toc = page.split("```{toctree}")[1]
    assert [line for line in toc.splitlines() if line.startswith(("0", "1"))] == [
        Path(n).stem for n in sorted(present)]


def test_guide_links_work_in_the_site():
    text = "[a](notebooks/02_attention.ipynb) [b](notebooks/09_x.ipynb) [c](README.md) [d](https://x.org)"
    fixed = source._site_links(text, {"02_attention.ipynb"})
    assert "[a](02_attention.ipynb)" in fixed
    assert f"[b]({course.REPOSITORY}/blob/{course.BRANCH}/notebooks/09_x.ipynb)" in fixed
    assert f"[c]({course.REPOSITORY}/blob/{course.BRANCH}/README.md)" in fixed
    assert "[d](https://x.org)" in fixed


def test_api_pages_cover_every_module(tmp_path):
    pytest.importorskip("sphinx")
    source.api_pages(tmp_path)
    pages = "\n".join(p.read_text() for p in tmp_path.glob("*.rst"))
    for path in (ROOT / "mmcourse").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if name in source.API_SKIP or path.name.startswith("_") and path.name != "__init__.py":
            continue
        assert f".. automodule:: {name}\n" in pages, name


def test_book_without_its_extra_names_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "myst_nb" else real(name, *a))
    assert book.missing_dependencies() == ["myst-nb"]
    assert main(["book", str(tmp_path / "site")]) == 2
    assert "pip install 'mmcourse[book]'" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match=r"mmcourse\[book\]"):
        book.build(tmp_path / "site")


def test_book_outside_a_checkout_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="built from a checkout"):
        source.find_root(tmp_path)
