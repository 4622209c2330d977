"""Name the usual mistake: when an answer fails, try the known wrong variants on it.

A checker passes ``variants``, a dict from a hint (what the mistake is and what is right) to a
function that makes that mistake. If the learner's function agrees with one of them on the
first few cases, the failure message ends with that hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmcourse.check.comparison import CheckFailure, Passed, compare


def explain(failure: CheckFailure, fn: Callable[..., Any], cases: Sequence[Sequence[Any]],
            variants: Mapping[str, Callable[..., Any]], name: str,
            **compare_kwargs: Any) -> CheckFailure:
    """``failure``, with a hint appended when ``fn`` matches one of the wrong ``variants``."""
    for hint, variant in variants.items():
        try:
            compare(fn, variant, list(cases)[:5], name=name, **compare_kwargs)
        except CheckFailure:
            continue
        return CheckFailure(f"{failure}\nHint: your {name} matches a known mistake: {hint}")
    return failure


def compare_with_hints(fn: Callable[..., Any], reference: Callable[..., Any],
                       cases: Sequence[Sequence[Any]], variants: Mapping[str, Callable[..., Any]],
                       name: str, *, grad: bool = False, **compare_kwargs: Any) -> Passed:
    """:func:`compare`, and on failure the hint of the known mistake that ``fn`` makes, if any."""
    try:
        return compare(fn, reference, cases, name=name, grad=grad, **compare_kwargs)
    except CheckFailure as failure:
        raise explain(failure, fn, cases, variants, name, **compare_kwargs) from None
