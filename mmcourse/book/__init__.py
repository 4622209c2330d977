"""The book: the whole course as a static web site, built from the notebooks as they are stored.

    mmcourse book OUT_DIR        # from a checkout of the repository; needs `pip install mmcourse[book]`

Nothing is executed: each chapter page shows the outputs stored in its notebook (plots, audio
players, tables), with the math typeset by a MathJax copied into the site, so the pages work
offline. Instructor cells are left out of the chapter pages; the exercises' solutions show
folded. The landing page's chapter table is the README's; the instructor guide is
INSTRUCTORS.md followed by the answers collected from the notebooks; the API reference comes
from the package's docstrings. Sphinx's warnings are errors.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

# import name -> the distribution that provides it (all in the `book` extra)
REQUIRED = {
    "sphinx": "sphinx",
    "myst_nb": "myst-nb",
    "myst_parser": "myst-parser",
    "sphinx_book_theme": "sphinx-book-theme",
    "mathjax": "django-static-mathjax",
}


def missing_dependencies() -> list[str]:
    """The distributions of the ``book`` extra that are not installed."""
    return [dist for module, dist in REQUIRED.items() if importlib.util.find_spec(module) is None]


def build(out_dir: str | Path, root: str | Path | None = None, quiet: bool = True) -> float:
    """Build the book into ``out_dir`` from the checkout at ``root``; return the seconds taken.

    Raises ``RuntimeError`` naming the extra when its packages are missing, and when Sphinx
    reports a warning (each is an error here) or fails.
    """
    missing = missing_dependencies()
    if missing:
        raise RuntimeError(
            f"the book needs {', '.join(missing)}: pip install 'mmcourse[book]' "
            "(or pip install -r requirements.lock in a checkout)"
        )
    from sphinx.cmd.build import build_main

    from mmcourse.book.source import assemble, find_root

    root = find_root(root)
    out_dir = Path(out_dir).resolve()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmcourse-book-") as tmp:
        src = Path(tmp) / "src"
        assemble(root, src)
        html = Path(tmp) / "html"  # myst-nb writes its images beside it, in jupyter_execute/
        args = ["-b", "html", "-W", "--keep-going", "-d", str(Path(tmp) / "doctrees"), str(src),
                str(html)]
        status = build_main((["-q"] if quiet else []) + args)
        if status == 0:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            shutil.move(html, out_dir)
    if status != 0:
        raise RuntimeError(f"the book did not build (Sphinx exit status {status}); see the "
                           "warnings above: each is an error")
    return time.perf_counter() - start
