"""How long loading the whole course data set takes, in fresh processes (median of several).

    python data/time_load.py            # 7 runs
    python data/time_load.py --runs 11

Each run is a new Python process, so nothing is cached: it imports torch (timed apart, it is
not ours), then ``mmcourse.data``, then builds all three splits with the default degradations
(reading and verifying the files, decoding the FLAC, adding noise, writing the sentences).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = """
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from mmcourse.data import load_split
t2 = time.perf_counter()
splits = [load_split(s) for s in ("train", "val", "test")]
t3 = time.perf_counter()
assert sum(len(s) for s in splits) == 1797
print(t1 - t0, t2 - t1, t3 - t2)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=7)
    runs = p.parse_args().runs
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True
        )
        times.append([float(x) for x in out.stdout.split()])
    torch_s, import_s, load_s = (statistics.median(col) for col in zip(*times, strict=True))
    print(f"median of {runs} fresh processes:")
    print(f"  import torch          {torch_s:.2f} s  (not part of the data)")
    print(f"  import mmcourse.data  {import_s:.2f} s")
    print(f"  load train, val, test {load_s:.2f} s  (min {min(t[2] for t in times):.2f} s)")


if __name__ == "__main__":
    main()
