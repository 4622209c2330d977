"""The README lists every notebook with its Colab badge, and gives the two quickstart commands."""

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_in_the_chapter_table_with_a_badge():
    for path in NOTEBOOKS:
        row = next((line for line in README.splitlines() if f"(notebooks/{path.name})" in line), None)
        assert row, f"README's chapter table has no row for {path.name}"
        assert f"colab.research.google.com/github/mmcourse/mmcourse/blob/main/notebooks/{path.name}" in row
        assert re.search(r"\|\s*\d+\s*\|", row), f"{path.name}: the row states no run time in minutes"


def test_each_notebook_header_has_badge_run_time_and_goals():
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "markdown", path.name
        assert f"notebooks/{path.name}" in first.source, f"{path.name}: Colab badge points elsewhere"
        assert "What you will learn" in first.source, path.name
        assert re.search(r"Expected run time", first.source), path.name


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README, re.S)
    assert block, "README has no Quickstart bash block"
    commands = [line for line in block[1].splitlines() if line.strip()]
    assert len(commands) == 2, commands
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text(), ".ci/run must run the README's test command"
