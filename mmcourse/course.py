"""The course as a whole: where it lives online, its chapters, and where its notebooks are.

``REPOSITORY`` is the one place that names the course's repository. The notebooks' Colab badges
and install cells, the README's badges and the book follow it (``scripts/sync_notebooks.py``
rewrites them; ``tests/test_course.py`` checks that they agree, pyproject's ``[project.urls]``
included). The chapter list has one source too: the table under ``## Chapters`` in README.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = "https://github.com/mmcourse/mmcourse"
BRANCH = "main"
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

PACKAGE = Path(__file__).resolve().parent
# A checkout when this package runs from one (editable install, PYTHONPATH); None in a wheel.
CHECKOUT = PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None


def github_slug(repository: str = REPOSITORY) -> str:
    """``owner/name`` of a GitHub address such as ``https://github.com/owner/name``."""
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", repository)
    if match is None:
        raise ValueError(f"expected a GitHub address https://github.com/OWNER/NAME, got {repository!r}")
    return match[1]


def colab_url(path: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The address that opens the repository's notebook ``path`` in Google Colab."""
    return f"https://colab.research.google.com/github/{github_slug(repository)}/blob/{branch}/{path}"


def colab_badge(path: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """Markdown of an "Open In Colab" badge for the repository's notebook ``path``."""
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(path, repository, branch)})"


def install_source(repository: str = REPOSITORY) -> str:
    """What ``pip install`` is given to install the package straight from the repository."""
    return f"git+{repository}"


def notebooks_dir() -> Path:
    """The course notebooks: shipped inside the package (a wheel), else the checkout's folder."""
    for candidate in (PACKAGE / "notebooks", CHECKOUT / "notebooks" if CHECKOUT else None):
        if candidate is not None and any(candidate.glob("*.ipynb")):
            return candidate
    raise FileNotFoundError(
        f"the course notebooks are neither in the package ({PACKAGE / 'notebooks'}) nor in a "
        "checkout next to it; reinstall mmcourse or pass the folder explicitly"
    )


@dataclass(frozen=True)
class Chapter:
    """One row of the README's chapter table."""

    number: str  # "02"
    title: str  # "Attention"
    notebook: str  # "02_attention.ipynb"
    summary: str  # "what you build"
    minutes: float  # measured run time top to bottom on a laptop CPU


ROW = re.compile(
    r"^\|\s*(?P<number>\d+)\s*\|\s*\[(?P<title>[^\]]+)\]\(notebooks/(?P<notebook>[^)]+\.ipynb)\)"
    r"\s*\|\s*(?P<summary>[^|]*?)\s*\|\s*(?P<minutes>[\d.]+)\s*\|"
)


def chapters(readme: str | Path | None = None) -> list[Chapter]:
    """The chapters in the table under ``## Chapters`` of README.md, in order."""
    if readme is None:
        if CHECKOUT is None:
            raise FileNotFoundError("README.md is part of the repository checkout, not the wheel")
        readme = CHECKOUT / "README.md"
    text = readme.read_text(encoding="utf-8") if isinstance(readme, Path) else readme
    section = re.search(r"^## Chapters\n(.*?)(?=^## )", text, re.S | re.M)
    if section is None:
        raise ValueError("README.md has no '## Chapters' section")
    found = []
    for line in section[1].splitlines():
        match = ROW.match(line)
        if match:
            found.append(Chapter(match["number"], match["title"].strip(), match["notebook"],
                                 match["summary"], float(match["minutes"])))
    if not found:
        raise ValueError("the '## Chapters' table of README.md has no rows")
    return found
