#!/usr/bin/env python
"""Time the main job, ``mmcourse train``, on one CPU thread: the median of several runs.

    python scripts/bench_train.py                  # 3 runs of the default job, target 12 s
    python scripts/bench_train.py --seeds 0 1 2    # one run per seed: the accuracies over seeds
    python scripts/bench_train.py -- --fusion gated  # anything after -- goes to mmcourse train

Each run is the whole command in a fresh process (start-up, imports and data loading
included) with ``OMP_NUM_THREADS=1``. The script prints every run's wall time, CPU time
(user + system) and accuracies, the median wall time against the target, and the load
average before and after: on a shared machine the wall time grows with the load while the CPU
time barely moves, so judge a loaded measurement by its CPU time. Exit status 1 when the
median wall time is over the target or a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_S = 12.0  # the main job's promise: at most this many seconds on one CPU thread
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Run:
    """One ``mmcourse train``: its seed, wall and CPU seconds, and the rows of its report."""

    seed: int
    wall_s: float
    cpu_s: float
    rows: list[dict]

    @property
    def fused_test(self) -> float:
        return self.rows[-1]["test_accuracy"]


def run_once(seed: int, extra: list[str], out: Path) -> Run:
    """Run ``mmcourse train --seed SEED`` once; its report is read from ``out``."""
    cmd = [sys.executable, "-m", "mmcourse", "train", "--seed", str(seed), "--out", str(out),
           "--device", "cpu", *extra]
    env = {**os.environ, **ONE_THREAD, "MMCOURSE_QUIET": "1", "TQDM_DISABLE": "1"}
    out.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # from ``out``, so that ``python -m`` imports the installed package (or PYTHONPATH's),
    # not whatever checkout the current folder is
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {done.returncode}:\n"
                           f"{done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads((out / "report.json").read_text())
    return Run(seed, wall, cpu, report["rows"])


def summary(runs: list[Run], target_s: float, load: tuple[str, str]) -> tuple[str, bool]:
    """The table of runs and the verdict; True when the median wall time meets the target."""
    models = [r["model"] for r in runs[0].rows]
    head = ["run", "seed", "wall s", "cpu s", *(f"{m} test" for m in models)]
    body = [[str(i + 1), str(r.seed), f"{r.wall_s:.1f}", f"{r.cpu_s:.1f}",
             *(f"{100 * row['test_accuracy']:.1f}%" for row in r.rows)]
            for i, r in enumerate(runs)]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
             for line in [head, *body]]
    median = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    ok = median <= target_s
    lines += [
        f"median wall {median:.1f} s (cpu {cpu:.1f} s) over {len(runs)} run(s); "
        f"target {target_s:g} s: {'met' if ok else 'MISSED'}",
        f"fused test accuracy: {', '.join(f'{100 * r.fused_test:.1f}%' for r in runs)}",
        f"load average (1, 5, 15 min) before: {load[0]}; after: {load[1]}",
    ]
    return "\n".join(lines), ok


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per seed (default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds of mmcourse train (default: 0)")
    parser.add_argument("--target", type=float, default=TARGET_S,
                        help=f"seconds the median wall time must not exceed (default {TARGET_S:g})")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    args = parser.parse_args(own)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive int, got {args.repeats}")
    load_before = _load()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for i in range(args.repeats):
                try:
                    runs.append(run_once(seed, extra, Path(tmp) / f"seed{seed}-{i}"))
                except RuntimeError as err:
                    print(f"error: {err}", file=sys.stderr)
                    return 1
                print(f"run {len(runs)}: seed {seed}, {runs[-1].wall_s:.1f} s", file=sys.stderr)
    text, ok = summary(runs, args.target, (load_before, _load()))
    print(f"mmcourse train {' '.join(extra)}".rstrip() + ", one CPU thread")
    print(text)
    if args.json:
        print(json.dumps([vars(r) for r in runs], indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
