"""One table from the pieces of the GPU report (``scripts/gpu_report.sh``).

The script runs each step into a folder, as ``<step>.out`` (its standard output: JSON for the
benchmarks and the training runs), ``<step>.err`` and ``<step>.status`` (the exit status, or
a line starting with ``skipped`` for a step the machine cannot run). This module reads them::

    python -m mmcourse.bench.report FOLDER

and prints one table: the GPU tests, attention throughput (scratch vs ``mmcourse`` vs raw SDPA,
TFLOP/s and share of the peak), the LSTM's Python loop vs the library's kernel (cuDNN on a
GPU), and ``mmcourse train`` with bf16 and with ``--compile`` (seconds per epoch after the
first, test accuracy). A step that failed or was skipped is a row that says so. The exit
status is 1 when a step failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

STEPS = ("gpu-tests", "attention", "lstm", "train-bf16", "train-compile", "train-fp32")


def step_status(folder: Path, step: str) -> str | None:
    """"ok", "failed (status N)", "skipped: why", or None when the step did not run at all."""
    path = folder / f"{step}.status"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if text.startswith("skipped"):
        return text
    return "ok" if text == "0" else f"failed (status {text})"


def _last_error(folder: Path, step: str) -> str:
    path = folder / f"{step}.err"
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return lines[-1][:120] if lines else "no message"


def _json(folder: Path, step: str) -> Any:
    return json.loads((folder / f"{step}.out").read_text())


def _tests(folder: Path, status: str) -> tuple[tuple[str, str, str], bool]:
    """pytest's summary line ("3 passed, 1 skipped"); exit status 5 means none was selected."""
    path = folder / "gpu-tests.out"
    out = path.read_text() if path.is_file() else ""
    found = re.findall(r"^=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s", out, re.M)
    summary = found[-1] if found else "no summary"
    if status == "failed (status 5)":
        return ("GPU tests", "pytest -m gpu", "no GPU tests selected"), True
    ok = status == "ok" or status.startswith("skipped")
    return ("GPU tests", "pytest -m gpu", summary if ok and found else f"{summary}; {status}"), ok


def _attention(rows: list[dict]) -> list[tuple[str, str, str]]:
    out = []
    for r in rows:
        what = f"attention S={r['seq_len']}"
        setting = f"{r['impl']}, {r['dtype']}"
        if r["ms"] is None:
            out.append((what, setting, r["note"]))
            continue
        share = "peak unknown" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}% of peak"
        out.append((what, setting, f"{r['ms']:.3f} ms, {r['tflops']:.3g} TFLOP/s, {share}"))
    return out


def _lstm(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(f"LSTM {r['pass']}", f"Python loop vs library, {r['shape']}",
             f"{r['scratch_ms']:.2f} ms vs {r['optimized_ms']:.2f} ms ({r['speedup']:.1f}x)")
            for r in rows if r["op"] == "lstm"]


def _train(report: dict, label: str) -> list[tuple[str, str, str]]:
    out = []
    for r in report["rows"]:
        per_epoch = "-" if r.get("epoch_seconds") is None else f"{r['epoch_seconds']:.2f} s/epoch"
        out.append((f"train {label}", r["model"],
                    f"{per_epoch}, {r['epochs']} epochs, test {100 * r['test_accuracy']:.1f}%"))
    return out


def collect(folder: str | Path) -> tuple[list[tuple[str, str, str]], bool]:
    """The table's rows (what, setting, result) and whether every step that ran passed."""
    folder = Path(folder)
    rows: list[tuple[str, str, str]] = []
    ok = True
    labels = {"train-bf16": "bf16", "train-compile": "compile, bf16", "train-fp32": "fp32"}
    readers = {"attention": lambda f: _attention(_json(f, "attention")["rows"]),
               "lstm": lambda f: _lstm(_json(f, "lstm")["rows"])}
    for step in STEPS:
        status = step_status(folder, step)
        if status is None:
            continue
        if step == "gpu-tests":
            row, passed = _tests(folder, status)
            rows.append(row)
            ok &= passed
            continue
        if status != "ok":
            ok &= status.startswith("skipped")
            detail = status if status.startswith("skipped") else f"{status}: {_last_error(folder, step)}"
            rows.append((step, "-", detail))
            continue
        try:
            rows += _train(_json(folder, step), labels[step]) if step in labels else readers[step](folder)
        except (OSError, ValueError, KeyError, TypeError) as err:
            ok = False
            rows.append((step, "-", f"unreadable output ({type(err).__name__}: {err})"))
    return rows, ok


def format_report(rows: list[tuple[str, str, str]], title: str = "") -> str:
    head = ("measurement", "setting", "result")
    widths = [max(len(line[i]) for line in [head, *rows]) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(([title] if title else []) + lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m mmcourse.bench.report FOLDER (the folder of gpu_report.sh's "
              "step outputs)", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    title_path = folder / "title.txt"
    title = title_path.read_text().strip() if title_path.is_file() else ""
    rows, ok = collect(folder)
    if not rows:
        print(f"error: no step outputs in {folder}", file=sys.stderr)
        return 1
    print(format_report(rows, title))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
