"""The machinery behind every checker: run a learner's function and a reference on many cases,
and name the first difference (shape, dtype, which entries, or gradients).

A failed check shows the learner its message, not the checker's insides: in IPython and Jupyter
:class:`CheckFailure` renders as one line (plus the learner's own frames when their function
raised), and pytest hides these frames (``__tracebackhide__``).
"""

from __future__ import annotations

import traceback
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

PACKAGE = Path(__file__).resolve().parents[1]  # the mmcourse folder: frames here are ours


def _in_package(filename: str) -> bool:
    try:
        return PACKAGE in Path(filename).resolve().parents
    except (OSError, ValueError):  # "<ipython-input-...>" and other pseudo files
        return False


def learner_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without the frames of the mmcourse package (the learner's code is what remains)."""
    kept = []
    while tb is not None:
        if not _in_package(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for t in reversed(kept):
        chain = types.TracebackType(chain, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return chain


class CheckFailure(AssertionError):
    """A learner's answer differs from the reference; the message says where."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for a failed check: the message alone, after the learner's own
        frames when their function raised; never the frames of the checker."""
        lines: list[str] = []
        cause = self.__cause__
        if cause is not None:
            tb = learner_frames(cause.__traceback__)
            lines += traceback.format_exception(type(cause), cause, tb)
            lines.append("\nThe check stopped at this error in your function:\n")
        lines.append(f"CheckFailure: {self}")
        return [line.rstrip("\n") for line in "".join(lines).splitlines()] or [str(self)]


# Shown as `mmcourse.check.CheckFailure` in plain Python tracebacks: where learners import it.
CheckFailure.__module__ = "mmcourse.check"


class Passed(str):
    """The summary of a passed check; shows as plain text in a notebook."""

    def __repr__(self) -> str:
        return str(self)


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    return repr(x) if len(repr(x)) < 60 else type(x).__name__


def _clone(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        y = x.detach().clone()
        y.requires_grad_(x.requires_grad)
        return y
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def _compare_values(got: Any, expected: Any, where: str, atol: float, rtol: float) -> None:
    """Raise CheckFailure at the first difference between ``got`` and ``expected``."""
    __tracebackhide__ = True  # pytest: show the learner's frames, not ours
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            raise CheckFailure(f"{where}: expected a tensor, got {_describe(got)}")
        if got.shape != expected.shape:
            raise CheckFailure(
                f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
            )
        if got.dtype != expected.dtype:
            raise CheckFailure(f"{where}: dtype {got.dtype}, expected {expected.dtype}")
        g, e = got.detach(), expected.detach()
        if e.dtype == torch.bool or not e.is_floating_point():
            bad = g != e
        else:
            bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            n_bad = int(bad.sum())
            at = f"[{', '.join(map(str, idx))}]" if idx else ""
            raise CheckFailure(
                f"{where}: {n_bad} of {e.numel()} entries differ; first at index {at}: "
                f"got {g[idx].item()!r}, expected {e[idx].item()!r}"
            )
    elif isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            raise CheckFailure(
                f"{where}: expected a {type(expected).__name__} of {len(expected)} items, "
                f"got {_describe(got)}"
            )
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            _compare_values(g, e, f"{where}, item {i}", atol, rtol)
    elif isinstance(expected, float):
        if not isinstance(got, (int, float)) or abs(got - expected) > atol + rtol * abs(expected):
            raise CheckFailure(f"{where}: got {got!r}, expected {expected!r}")
    elif got != expected:
        raise CheckFailure(f"{where}: got {got!r}, expected {expected!r}")


def _grad_inputs(args: Sequence[Any]) -> list[tuple[int, torch.Tensor]]:
    return [
        (i, a)
        for i, a in enumerate(args)
        if isinstance(a, torch.Tensor) and a.is_floating_point() and a.requires_grad
    ]


def _call(fn: Callable[..., Any], args: Sequence[Any], name: str, case: int) -> Any:
    __tracebackhide__ = True  # pytest: show the learner's frames, not ours
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailure(
            f"{name} is not written yet: replace `raise NotImplementedError` with your code"
        ) from None
    except CheckFailure:
        raise
    except Exception as err:  # a learner's bug: say where it happened, keep the cause
        inputs = ", ".join(_describe(a) for a in args)
        raise CheckFailure(
            f"case {case}: {name}({inputs}) raised {type(err).__name__}: {err}"
        ) from err


def compare(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Iterable[Sequence[Any]],
    *,
    name: str | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    grad: bool = False,
) -> Passed:
    """Call ``fn`` and ``reference`` on every case; raise at the first difference.

    Each case is a sequence of positional arguments. With ``grad=True``, floating-point
    tensor arguments that require grad are also compared by their gradients, for the same
    random weighting of the outputs. Returns a one-line summary on success.
    """
    __tracebackhide__ = True  # pytest: show the learner's frames, not ours
    name = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        raise CheckFailure(f"expected a function to check, got {_describe(fn)}")
    n = 0
    for n, args in enumerate(cases, start=1):
        mine, theirs = _clone(list(args)), _clone(list(args))
        expected = reference(*theirs)
        got = _call(fn, mine, name, n)
        shapes = ", ".join(_describe(a) for a in args)
        _compare_values(got, expected, f"case {n} ({name}({shapes}))", atol, rtol)
        if grad:
            _compare_grads(got, expected, mine, theirs, name, n, atol, rtol)
    if n == 0:
        raise ValueError("compare() needs at least one case")
    return Passed(
        f"✓ {name}: {n} random cases match the reference"
        + (" (values and gradients)" if grad else "")
    )


def _compare_grads(
    got: Any, expected: Any, mine: list, theirs: list, name: str, case: int, atol: float, rtol: float
) -> None:
    __tracebackhide__ = True  # pytest: show the learner's frames, not ours
    outs_g = got if isinstance(got, (tuple, list)) else [got]
    outs_e = expected if isinstance(expected, (tuple, list)) else [expected]
    pairs = [
        (g, e)
        for g, e in zip(outs_g, outs_e, strict=True)
        if isinstance(e, torch.Tensor) and e.requires_grad
    ]
    if not pairs:
        return
    gen = torch.Generator().manual_seed(case)
    weights = [torch.randn(e.shape, generator=gen, dtype=e.dtype) for _, e in pairs]
    loss_e = sum((e * w).sum() for (_, e), w in zip(pairs, weights, strict=True))
    if not all(isinstance(g, torch.Tensor) and g.requires_grad for g, _ in pairs):
        raise CheckFailure(
            f"case {case}: the output of {name} is not connected to its inputs' gradients "
            "(did you call .detach(), .item(), .numpy() or use torch.no_grad()?)"
        )
    loss_g = sum((g * w).sum() for (g, _), w in zip(pairs, weights, strict=True))
    ins_e, ins_g = _grad_inputs(theirs), _grad_inputs(mine)
    grads_e = torch.autograd.grad(loss_e, [a for _, a in ins_e], allow_unused=True)
    grads_g = torch.autograd.grad(loss_g, [a for _, a in ins_g], allow_unused=True)
    for (i, a), ge, gg in zip(ins_e, grads_e, grads_g, strict=True):
        ge = torch.zeros_like(a) if ge is None else ge
        gg = torch.zeros_like(a) if gg is None else gg
        _compare_values(gg, ge, f"case {case}: gradient with respect to argument {i}", atol, rtol)


def random_cases(
    make: Callable[[torch.Generator], Sequence[Any]], n: int = 25, seed: int = 0
) -> list[Sequence[Any]]:
    """``n`` cases from ``make(generator)``, reproducible for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    return [make(gen) for _ in range(n)]


def random_int(gen: torch.Generator, lo: int, hi: int) -> int:
    """A random int in [lo, hi], both ends included, drawn from ``gen``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))
