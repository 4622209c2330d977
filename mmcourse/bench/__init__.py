"""Scratch vs optimized, timed on the device at hand.

::

    from mmcourse.bench import measure, run_suite, format_table
    rows = run_suite(device="cpu", repeats=10)   # attention, conv, LSTM, MFCC; fwd, fwd+bwd
    print(format_table(rows))

The scratch versions live in :mod:`mmcourse.bench.reference`; the command is
``mmcourse bench [--device cuda] [--repeats N] [--json]``.
"""

from mmcourse.bench.suite import CASES, format_table, run_suite
from mmcourse.bench.timing import Timing, measure, synchronize

__all__ = ["CASES", "Timing", "format_table", "measure", "run_suite", "synchronize"]
