"""Test-wide settings: quiet progress bars, a headless plot backend, deterministic seeds."""

import os

os.environ.setdefault("MMCOURSE_QUIET", "1")  # progress bars off under pytest/nbval
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")
