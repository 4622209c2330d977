"""Checkers for the fast-path exercises: an atomic save, a loss-scaled step, a calibration tally.

The last two must not read a tensor on the host: no ``.item()``, ``bool(t)`` (an ``if`` on a
tensor), ``.tolist()``, ``.cpu()``, and no operation whose output size depends on the values
(``bincount``, ``nonzero``, boolean indexing), since on a GPU each of these waits for the device.
Their checkers run the learner's function under :class:`HostReadGuard`, which turns any such
call into a failure that names it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mmcourse.check.comparison import CheckFailure, Passed, _call, random_cases
from mmcourse.check.hints import compare_with_hints


class _Unpicklable:
    """Saving this fails halfway through the write, like a crash or a full disk."""

    def __reduce__(self) -> Any:
        raise RuntimeError("simulated failure in the middle of writing the file")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def atomic_save(fn: Callable[[Any, str | os.PathLike], Any]) -> str:
    """``fn(obj, path)`` saves with torch.save so that ``path`` is never half-written."""
    old = {"w": torch.arange(6.0).reshape(2, 3)}
    new = {"w": torch.ones(4), "step": torch.tensor(7)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.pt"
        renames: list[tuple[str, str]] = []
        real_replace, real_rename = os.replace, os.rename

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            renames.append((os.fspath(src), os.fspath(dst)))
            real_replace(src, dst, *args, **kwargs)

        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            renames.append((os.fspath(src), os.fspath(dst)))
            real_rename(src, dst, *args, **kwargs)

        with mock.patch("os.replace", replace), mock.patch("os.rename", rename):
            _call(fn, [old, path], "atomic_save", 1)
            if not path.is_file() or not _same(torch.load(path), old):
                raise CheckFailure("case 1 (a new file): torch.load(path) does not give back the "
                                   "object that was saved")
            if not renames:
                raise CheckFailure("case 1: the file was written in place; write a temporary file "
                                   "first, then move it onto path with os.replace")
            src, dst = renames[-1]
            if Path(src).parent.resolve() != path.parent.resolve() or Path(dst) != path:
                raise CheckFailure(
                    f"case 1: the temporary file {src} must lie in the folder of {path} (a "
                    "rename across file systems is a copy, and not atomic)")
            _call(fn, [new, path], "atomic_save", 2)
            if not _same(torch.load(path), new):
                raise CheckFailure("case 2 (overwrite): path still holds the old object")
            try:
                fn({"w": torch.zeros(3), "bad": _Unpicklable()}, path)
            except Exception:
                pass
            else:
                raise CheckFailure("case 3 (the write fails): the error was swallowed; let it "
                                   "reach the caller, who must know the save failed")
        try:
            kept = torch.load(path)
        except Exception as err:
            raise CheckFailure(f"case 3 (the write fails): path is now unreadable ({err}); the "
                               "old file must survive a failed save") from None
        if not _same(kept, new):
            raise CheckFailure("case 3 (the write fails): path no longer holds the last good save")
        left = sorted(p.name for p in Path(tmp).iterdir() if p != path)
        if left:
            raise CheckFailure(f"case 3 (the write fails): temporary files left behind: {left}; "
                               "delete the temporary file when the save fails")
    return Passed("✓ atomic_save: new file, overwrite, and a failed write that leaves the old "
                  "file intact")


# --- no host reads --------------------------------------------------------------------------

# Tensor methods that hand a value to Python: on a GPU, each waits until the device has computed it.
HOST_READS = frozenset({"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__",
                        "__index__", "__complex__", "__array__", "__format__", "__repr__"})
# Operations whose output size depends on the values: the host must read them to allocate it.
VALUE_SIZED = frozenset({"bincount", "nonzero", "argwhere", "unique", "unique_consecutive",
                         "masked_select"})


def _bool_index(args: tuple) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in parts)


class HostReadGuard(TorchFunctionMode):
    """Within this mode, reading a tensor's value on the host raises a ``CheckFailure``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        op = getattr(func, "__name__", "")
        if op in HOST_READS:
            what = {"__bool__": "bool(tensor), e.g. an `if` or `and` on a tensor",
                    "__format__": "formatting a tensor", "__repr__": "printing a tensor"}
            raise CheckFailure(
                f"{self.name} reads a tensor's value on the host ({what.get(op, f'Tensor.{op}()')}): "
                "on a GPU that waits for the device at every call. Decide with torch.where (or "
                "masks and arithmetic) instead of `if`, and keep results as tensors")
        if op in VALUE_SIZED or (op == "__getitem__" and _bool_index(args)):
            used = "indexing with a boolean mask" if op == "__getitem__" else f"torch.{op}"
            raise CheckFailure(
                f"{self.name} uses {used}, whose output size depends on the values: the host must "
                "read them first (on a GPU, a wait for the device). Add into a tensor of fixed "
                "size instead (scatter_add_, index_add_) or multiply by a mask")
        return func(*args, **(kwargs or {}))


def without_host_reads(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn``, run under :class:`HostReadGuard`."""

    def guarded(*args: Any) -> Any:
        with HostReadGuard(name):
            return fn(*args)

    guarded.__name__ = name
    return guarded


# --- exercise: the loss scaler's step -------------------------------------------------------


def _scaled_sgd_step_reference(params: list[torch.Tensor], grads: list[torch.Tensor],
                               scale: torch.Tensor, tracker: torch.Tensor, lr: float,
                               growth_interval: int) -> tuple:
    """PyTorch's own rule: ``torch.amp.GradScaler`` around ``torch.optim.SGD``."""
    ps = [p.detach().clone().requires_grad_() for p in params]
    for p, g in zip(ps, grads, strict=True):
        p.grad = g.detach().clone()
    scaler = torch.amp.GradScaler("cpu")
    scaler.load_state_dict({"scale": float(scale), "growth_factor": 2.0, "backoff_factor": 0.5,
                            "growth_interval": growth_interval,
                            "_growth_tracker": int(tracker)})
    scaler.scale(torch.zeros(()))  # creates the scale and the tracker as tensors
    scaler.step(torch.optim.SGD(ps, lr=lr))
    scaler.update()
    state = scaler.state_dict()
    return ([p.detach() for p in ps], torch.tensor(state["scale"], dtype=torch.float32),
            torch.tensor(state["_growth_tracker"], dtype=torch.int32))


def _scaled_step_variant(unscale: bool = True, per_tensor: bool = False, nan_ok: bool = False,
                         backoff: bool = True, reset_on_skip: bool = True,
                         grow_after: int = 1, reset_on_growth: bool = True) -> Callable:
    """The right rule, or one with a usual mistake (for the hints)."""

    def step(params, grads, scale, tracker, lr, growth_interval):
        def bad(g: torch.Tensor) -> torch.Tensor:
            return g.isinf().any() if nan_ok else ~g.isfinite().all()

        found = torch.stack([bad(g) for g in grads]).any()
        new = []
        for p, g in zip(params, grads, strict=True):
            skip = bad(g) if per_tensor else found
            step_ = lr * (g / scale if unscale else g)
            new.append(torch.where(skip, p, p - step_))
        count = tracker + grow_after
        grow = ~found & (count >= growth_interval)
        kept_tracker = torch.zeros_like(tracker) if reset_on_skip else tracker
        tracker_ok = torch.where(grow & torch.tensor(reset_on_growth), 0, tracker + 1)
        new_scale = torch.where(found, scale * (0.5 if backoff else 1.0),
                                torch.where(grow, scale * 2.0, scale))
        return new, new_scale, torch.where(found, kept_tracker, tracker_ok).to(torch.int32)

    return step


def scaled_sgd_step(fn: Callable[..., tuple]) -> str:
    """``fn(params, grads, scale, tracker, lr, growth_interval)`` -> (params, scale, tracker):
    SGD on gradients of ``scale * loss`` with GradScaler's skip-and-update rule, no host read."""

    def case(gen: torch.Generator, bad: str | None, tracker: int, interval: int,
             k: int | None = None) -> tuple:
        shapes = [(int(torch.randint(1, 5, (1,), generator=gen)),
                   int(torch.randint(1, 5, (1,), generator=gen))) for _ in range(3)]
        k = int(torch.randint(0, 17, (1,), generator=gen)) if k is None else k
        scale = torch.tensor(2.0**k)
        params = [torch.randn(s, generator=gen) for s in shapes]
        grads = [torch.randn(s, generator=gen) * scale for s in shapes]  # gradients of scale * loss
        if bad is not None:
            i = int(torch.randint(0, len(grads), (1,), generator=gen))
            grads[i].view(-1)[-1] = float(bad)  # one overflowed entry of one tensor
        return params, grads, scale, torch.tensor(tracker, dtype=torch.int32), 0.1, interval

    gen = torch.Generator().manual_seed(0)
    fixed = [case(gen, None, 0, 3, 10), case(gen, "inf", 1, 3, 10), case(gen, "nan", 2, 3, 10),
             case(gen, None, 2, 3, 10), case(gen, "-inf", 0, 1, 12), case(gen, None, 0, 1, 12)]

    def make(g: torch.Generator) -> tuple:
        interval = int(torch.randint(1, 6, (1,), generator=g))
        bad = [None, None, "inf", "nan", "-inf"][int(torch.randint(0, 5, (1,), generator=g))]
        return case(g, bad, int(torch.randint(0, interval, (1,), generator=g)), interval)

    variants = {
        "the gradients hold d(scale * loss)/dw: divide them by the scale before the step":
            _scaled_step_variant(unscale=False),
        "one inf or nan anywhere skips the whole step: no parameter tensor may change":
            _scaled_step_variant(per_tensor=True),
        "nan is an overflow too: test with torch.isfinite, not torch.isinf":
            _scaled_step_variant(nan_ok=True),
        "a skipped step halves the scale": _scaled_step_variant(backoff=False),
        "a skipped step restarts the count of good steps at 0":
            _scaled_step_variant(reset_on_skip=False),
        "the scale doubles on the growth_interval-th good step in a row (when tracker + 1 "
        "reaches growth_interval), not one step later": _scaled_step_variant(grow_after=0),
        "after the scale grows, the count of good steps restarts at 0":
            _scaled_step_variant(reset_on_growth=False),
    }
    guarded = without_host_reads(fn, "scaled_sgd_step")
    return compare_with_hints(guarded, _scaled_sgd_step_reference, fixed + random_cases(make, 20),
                              variants, "scaled_sgd_step")


# --- exercise: a calibration tally ----------------------------------------------------------


def _tally_reference(probs: torch.Tensor, y: torch.Tensor, n_bins: int) -> tuple:
    """Python loops over the examples: an independent way to the same three tallies."""
    counts = torch.zeros(n_bins, dtype=torch.long)
    confidence = torch.zeros(n_bins, dtype=probs.dtype)
    correct = torch.zeros(n_bins, dtype=torch.long)
    for p, label in zip(probs, y.tolist(), strict=True):
        c, pred = p.max(dim=0)
        b = min(int(c * n_bins), n_bins - 1)  # [b/n, (b+1)/n); 1.0 in the last bin
        counts[b] += 1
        confidence[b] += c
        correct[b] += int(pred) == label
    return counts, confidence, correct


def _tally_variant(true_class: bool = False, rounded: bool = False) -> Callable:
    def tally(probs, y, n_bins):
        conf, pred = probs.max(dim=1)
        if true_class:
            conf = probs.gather(1, y[:, None])[:, 0]
        scaled = conf * n_bins
        b = (scaled.round() if rounded else scaled.floor()).long().clamp(0, n_bins - 1)
        counts = torch.zeros(n_bins, dtype=torch.long).scatter_add_(0, b, torch.ones_like(b))
        total = torch.zeros(n_bins, dtype=probs.dtype).scatter_add_(0, b, conf)
        right = torch.zeros(n_bins, dtype=torch.long).scatter_add_(0, b, (pred == y).long())
        return counts, total, right

    return tally


def calibration_tally(fn: Callable[[torch.Tensor, torch.Tensor, int], tuple]) -> str:
    """``fn(probs, y, n_bins)`` -> per confidence bin (count, sum of confidences, correct),
    computed on the device without reading a value on the host."""

    def make(gen: torch.Generator, one_hot: bool = False) -> tuple:
        n = int(torch.randint(1, 80, (1,), generator=gen))
        c = int(torch.randint(2, 12, (1,), generator=gen))
        n_bins = int(torch.randint(1, 16, (1,), generator=gen))
        dtype = (torch.float32, torch.float64)[int(torch.randint(0, 2, (1,), generator=gen))]
        sharp = float(torch.rand(1, generator=gen)) * 6
        probs = (torch.randn(n, c, generator=gen, dtype=dtype) * sharp).softmax(1)
        if one_hot:  # a certain model: confidence exactly 1
            probs[: n // 2 + 1] = F.one_hot(torch.randint(0, c, (n // 2 + 1,), generator=gen),
                                             c).to(dtype)
        scaled = probs.amax(1) * n_bins
        edge = ((scaled - scaled.round()).abs() < 1e-4) & (scaled.round() % n_bins != 0)  # a
        # confidence within rounding of a bin's edge: replaced by a certain row (confidence 1)
        probs[edge] = F.one_hot(torch.zeros(int(edge.sum()), dtype=torch.long), c).to(dtype)
        return probs, torch.randint(0, c, (n,), generator=gen), n_bins

    fixed = [make(torch.Generator().manual_seed(s), one_hot=True) for s in range(3)]
    variants = {
        "the confidence is the largest probability (the predicted class's), not the true "
        "label's": _tally_variant(true_class=True),
        "bin b holds confidences in [b/n_bins, (b+1)/n_bins): floor the scaled confidence, "
        "do not round it": _tally_variant(rounded=True),
    }
    guarded = without_host_reads(fn, "calibration_tally")
    try:
        return compare_with_hints(guarded, _tally_reference, fixed + random_cases(make, 25),
                                  variants, "calibration_tally")
    except CheckFailure as failure:
        if "out of bounds" in str(failure):  # the learner's function raised an index error
            raise CheckFailure(f"{failure}\nHint: a confidence of exactly 1 gives bin n_bins, "
                               "one past the last: clamp the bin index to n_bins - 1") from None
        raise
