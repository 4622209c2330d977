"""``mmcourse doctor``: passes on a working stack, names the problem and its fix otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mmcourse import doctor


def _run_doctor(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "mmcourse", "doctor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_doctor_passes_on_this_environment():
    rows = doctor.run_checks()
    failed = [r for r in rows if not r.ok]
    assert not failed, doctor.render(rows)
    checks = {r.check for r in rows}
    assert {"python", "torch", "torchvision", "torchaudio", "torch trio", "device cpu"} <= checks


def test_doctor_json_exits_zero_when_all_is_well():
    result = _run_doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert any(c["check"] == "torchaudio" and c["ok"] for c in report["checks"])


def test_doctor_fails_and_says_how_to_fix_a_broken_torchaudio(tmp_path):
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        'raise ImportError("libtorchaudio.so: undefined symbol (simulated mismatch)")\n'
    )
    result = _run_doctor(env_extra={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "torchaudio" in out and "simulated mismatch" in out
    assert "fix: pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0" in out
    assert "All is well" not in out


def test_mismatched_trio_is_a_problem(monkeypatch):
    versions = {"torch": "2.11.0", "torchvision": "0.25.0", "torchaudio": "2.11.0"}
    monkeypatch.setattr(doctor, "_version", versions.__getitem__)
    row = doctor._trio()
    assert not row.ok and "do not match" in row.detail and "torchvision==0.26.0" in row.fix


def test_a_check_that_raises_becomes_a_failed_row(monkeypatch):
    def broken():
        raise OSError("disk on fire")

    monkeypatch.setattr(doctor, "CHECKS", [("torch", broken, "reinstall")])
    (row,) = doctor.run_checks()
    assert (row.check, row.ok, row.fix) == ("torch", False, "reinstall")
    assert "OSError: disk on fire" in row.detail
    assert doctor.main() == 1


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_doctor_lists_each_cuda_device():
    import torch

    rows = doctor.run_checks()
    cuda_rows = [r for r in rows if r.check.startswith("device cuda:")]
    assert len(cuda_rows) == torch.cuda.device_count()


def test_doctor_names_a_corrupted_data_file(tmp_path, monkeypatch):
    import shutil

    import mmcourse.data.integrity as integrity

    copy = tmp_path / "files"
    shutil.copytree(integrity.FILES, copy)
    (copy / "digit_images.npz").write_bytes(b"not the shipped file")
    monkeypatch.setattr(integrity, "FILES", copy)
    row = doctor._data()
    assert not row.ok and "digit_images.npz" in row.detail and "corrupted" in row.detail
    assert integrity.REINSTALL in row.fix
