"""`mmcourse doctor --summarize`: a room's doctor reports, summarized."""

from __future__ import annotations

import json

import pytest

from mmcourse import room
from mmcourse.cli import main


def _report(ok: bool, failing: dict[str, tuple[str, str]] | None = None) -> dict:
    checks = [{"check": "python", "ok": True, "detail": "3.11.7", "fix": ""}]
    for name, (detail, fix) in (failing or {}).items():
        checks.append({"check": name, "ok": False, "detail": detail, "fix": fix})
    return {"ok": ok, "checks": checks}


@pytest.fixture
def reports(tmp_path):
    broken_audio = ("ImportError: libtorchaudio.so: undefined symbol", "pip install torch==2.11.0 ...")
    files = {
        "ana": _report(True),
        "ben": _report(False, {"torchaudio": broken_audio}),
        "chloe": _report(False, {"torchaudio": broken_audio, "course data": ("missing file", "reinstall")}),
    }
    paths = []
    for name, report in files.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(report))
        paths.append(path)
    bad = tmp_path / "dan.json"
    bad.write_text("Traceback (most recent call last):")  # doctor crashed before printing JSON
    return [*paths, bad]


def test_summary_counts_laptops_and_groups_failures(reports):
    s = room.summarize(reports)
    assert (s.ready, sorted(s.not_ready), list(s.unreadable)) == (["ana"], ["ben", "chloe"], ["dan"])
    assert s.failures["torchaudio"] == ["ben", "chloe"] and not s.ok
    text = room.render(s)
    lines = text.splitlines()
    assert lines[0] == "4 laptop(s): 1 ready, 2 not ready, 1 report(s) unreadable"
    assert lines.index("torchaudio: fails on 2: ben, chloe") < lines.index("course data: fails on 1: chloe")
    assert "  fix: pip install torch==2.11.0 ..." in lines
    assert "dan: report unreadable" in text


def test_a_ready_room(tmp_path, capsys):
    path = tmp_path / "ana.json"
    path.write_text(json.dumps(_report(True)))
    assert main(["doctor", "--summarize", str(path)]) == 0
    assert "Every laptop is ready." in capsys.readouterr().out


def test_cli_exit_code_says_whether_the_room_is_ready(reports, capsys):
    assert main(["doctor", "--summarize", *map(str, reports)]) == 1
    assert "torchaudio: fails on 2" in capsys.readouterr().out


def test_real_doctor_report_is_readable(tmp_path, capsys):
    """The summary reads what `mmcourse doctor --json` really writes."""
    code = main(["doctor", "--json"])
    path = tmp_path / "this-laptop.json"
    path.write_text(capsys.readouterr().out)
    s = room.summarize([path])
    assert not s.unreadable and (s.ready == ["this-laptop"]) == (code == 0)


def test_no_reports_is_an_error():
    with pytest.raises(ValueError, match="no reports given"):
        room.summarize([])
