"""One repository address and one chapter list, followed everywhere: badges, install cells,
the README, pyproject and the committed learner copies agree with mmcourse.course."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from mmcourse import colab, course
from mmcourse.exercises import LEARNER_FOLDER, write_learner_copies

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
README = (ROOT / "README.md").read_text()


def test_pyproject_urls_are_the_repository():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert set(urls.values()) == {course.REPOSITORY}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_badge_and_install_cell_follow_the_repository(path):
    nb = nbformat.read(path, as_version=4)
    assert course.colab_badge(f"notebooks/{path.name}") in nb.cells[0].source
    installs = [c.source for c in nb.cells if c.cell_type == "code" and colab.is_install_cell(c.source)]
    assert len(installs) == 1, f"{path.name}: one Colab install cell expected"
    assert f'"--no-deps", "{course.install_source()}"' in installs[0]
    for name in ("torch", "torchvision", "torchaudio", "hypothesis"):
        assert f'"{name}' not in installs[0].split("needs = {", 1)[1], f"{path.name} installs {name}"


def test_every_mention_of_the_repository_agrees():
    """Colab links and install commands in the docs name REPOSITORY, nothing else."""
    slug = course.github_slug()
    files = [ROOT / n for n in ("README.md", "CONTRIBUTING.md", "INSTRUCTORS.md", "docs/conf.py")]
    files += NOTEBOOKS + sorted((ROOT / LEARNER_FOLDER).glob("*.ipynb"))
    for path in files:
        text = path.read_text()
        for other in re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/", text):
            assert other == slug, f"{path.name}: a Colab link to {other}"
        for other in re.findall(r"git\+https://github\.com/([\w.-]+/[\w-]+)", text):
            assert other == slug, f"{path.name}: installs from {other}"


def test_readme_rows_open_the_chapter_and_its_exercises_in_colab():
    rows = {c.notebook: c for c in course.chapters(README)}
    assert set(rows) >= {p.name for p in NOTEBOOKS}
    for line in README.splitlines():
        match = course.ROW.match(line)
        if match:
            name = match["notebook"]
            assert course.colab_badge(f"notebooks/{name}") in line
            assert course.colab_badge(f"{LEARNER_FOLDER}/{name}") in line


def test_committed_learner_copies_are_what_mmcourse_exercises_writes(tmp_path):
    written = {p.name: p.read_text() for p in write_learner_copies(ROOT / "notebooks", tmp_path)}
    committed = {p.name: p.read_text() for p in (ROOT / LEARNER_FOLDER).glob("*.ipynb")}
    assert set(committed) == set(written), "run: python scripts/sync_notebooks.py"
    for name, text in written.items():
        assert committed[name] == text, f"{LEARNER_FOLDER}/{name} is stale: python scripts/sync_notebooks.py"


def test_sync_script_finds_nothing_to_change():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_sync_script_rewrites_a_foreign_address(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_notebooks
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    text = ('pip install "mmcourse @ git+https://github.com/someone/fork"\n'
            "[x](https://colab.research.google.com/github/someone/fork/blob/dev/notebooks/a.ipynb)\n"
            "see https://github.com/pytorch/pytorch\n")
    fixed = sync_notebooks.sync_mentions(text)
    assert f"@ {course.install_source()}\"" in fixed
    assert course.colab_url("notebooks/a.ipynb") in fixed
    assert "https://github.com/pytorch/pytorch" in fixed  # other projects' links stay
    assert sync_notebooks.sync_mentions(fixed) == fixed


def test_chapters_come_from_the_readme_table():
    chapters = course.chapters(README)
    assert [c.number for c in chapters] == sorted(c.number for c in chapters)
    first = chapters[0]
    assert (first.number, first.notebook) == ("00", "00_setup_and_data.ipynb")
    assert all(c.minutes > 0 and c.title and c.summary for c in chapters)
    with pytest.raises(ValueError, match="no '## Chapters' section"):
        course.chapters("# nothing here\n")


def test_github_slug_names_what_it_expected():
    assert course.github_slug("https://github.com/a-b/c.d") == "a-b/c.d"
    with pytest.raises(ValueError, match="expected a GitHub address"):
        course.github_slug("https://gitlab.com/a/b")


def test_notebooks_dir_is_the_checkout_here():
    assert course.notebooks_dir() == ROOT / "notebooks"
