"""The repository's scripts: the main job's benchmark and the GPU report (run on the CPU)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "scripts" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _rows(fused: float) -> list[dict]:
    return [{"model": "image", "test_accuracy": 0.77}, {"model": "fused (late)", "test_accuracy": fused}]


def test_bench_train_summary_takes_the_median_and_judges_it():
    bt = _bench_train()
    runs = [bt.Run(0, 11.0, 9.0, _rows(0.985)), bt.Run(0, 30.0, 9.5, _rows(0.985)),
            bt.Run(0, 10.0, 8.5, _rows(0.985))]
    text, ok = bt.summary(runs, 12.0, ("0.10, 0.20, 0.30", "0.40, 0.50, 0.60"))
    assert ok and "median wall 11.0 s (cpu 9.0 s) over 3 run(s); target 12 s: met" in text
    assert "98.5%, 98.5%, 98.5%" in text and "before: 0.10, 0.20, 0.30" in text
    assert "fused (late) test" in text.splitlines()[0]
    text, ok = bt.summary(runs, 10.5, ("", ""))
    assert not ok and "target 10.5 s: MISSED" in text


def test_bench_train_main_runs_each_seed_and_fails_on_a_miss(monkeypatch, capsys):
    bt = _bench_train()
    calls = []

    def fake(seed, extra, out):
        calls.append((seed, extra))
        return bt.Run(seed, 5.0 + seed, 4.0, _rows(0.98))

    monkeypatch.setattr(bt, "run_once", fake)
    assert bt.main(["--seeds", "0", "1", "--repeats", "2", "--", "--fusion", "gated"]) == 0
    assert calls == [(0, ["--fusion", "gated"])] * 2 + [(1, ["--fusion", "gated"])] * 2
    assert "mmcourse train --fusion gated, one CPU thread" in capsys.readouterr().out
    assert bt.main(["--target", "5.2", "--seeds", "1"]) == 1

    def broken(seed, extra, out):
        raise RuntimeError("mmcourse train failed with status 1")

    monkeypatch.setattr(bt, "run_once", broken)
    assert bt.main([]) == 1
    assert "error: mmcourse train failed" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_report_runs_on_the_cpu(tmp_path):
    """The whole script, quick sizes: what needs CUDA says skipped, the rest runs."""
    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine the script runs the full report")
    env = {**os.environ, "GPU_REPORT_DIR": str(tmp_path), "PYTHON": sys.executable,
           "GPU_TESTS": "tests/test_audio.py::test_front_end_and_encoder_on_cuda_match_cpu"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_report.sh"), "--quick"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("\n\n")[-1]
    assert table.startswith("no CUDA device: CPU only")
    assert "GPU tests              pytest -m gpu" in table and "1 skipped" in table
    for impl in ("scratch", "mmcourse", "sdpa"):
        assert f"{impl}, float32" in table
    assert "LSTM forward+backward" in table and "peak unknown" in table
    assert "skipped: no CUDA device" in table and "train fp32" in table
    assert "fused (late)" in table and "s/epoch" in table
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_report.sh"), "--fast"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
