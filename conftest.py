"""Test-wide settings: quiet progress bars, a headless plot backend, deterministic seeds."""

import os

os.environ.setdefault("MMCOURSE_QUIET", "1")  # progress bars off under pytest/nbval
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")
# One thread per process: the suite runs two workers (pytest -n 2) on two cores, and each
# notebook kernel inherits this; oversubscribed threads slow torch down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
