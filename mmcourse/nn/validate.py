"""Argument and input checks: a clear error for bad input, reading tensor values only where free.

Checking a shape or a dtype reads metadata the host already has. Checking *values* (token
ids inside the vocabulary, lengths inside [1, T]) reads the tensor itself: on a GPU the host
then waits until the device has computed it (a sync, which drains the queue of launched
kernels), and inside ``torch.compile`` it breaks the graph. So value checks run only where
:func:`value_checks_enabled` says so: in eager code, outside :func:`trusted_inputs`.

The trainer checks the values of each split once, before the first step (``check_input`` of
the model, if it has one), then runs every step inside ``trusted_inputs()``. A module called
directly checks everything on every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

_trusted = 0  # depth of nested trusted_inputs() blocks


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive int (not a bool), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected {name} to be a positive int, got {value!r}")
    return value


def value_checks_enabled() -> bool:
    """True where a check may read tensor values: eager code outside ``trusted_inputs()``."""
    return not torch.compiler.is_compiling() and _trusted == 0


@contextlib.contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip value checks inside this block: its inputs were checked before (once per split)."""
    global _trusted
    _trusted += 1
    try:
        yield
    finally:
        _trusted -= 1
