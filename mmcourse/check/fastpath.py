"""Checkers for the fast-path exercises: atomic saves, the mixed-precision policy, parameters."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from mmcourse.check.comparison import CheckFailure, Passed, _call, compare, random_cases


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


def _amp_policy_reference(device_type: str, bf16_supported: bool) -> tuple:
    if device_type != "cuda":
        return None, False
    dtype = torch.bfloat16 if bf16_supported else torch.float16
    return dtype, dtype == torch.float16


def amp_policy(fn: Callable[[str, bool], tuple]) -> str:
    """``fn(device_type, bf16_supported)`` -> (autocast dtype or None, needs a grad scaler)."""
    cases = [(d, b) for d in ("cuda", "cpu", "mps") for b in (True, False)]
    return compare(fn, _amp_policy_reference, cases, name="amp_policy")


class _Tied(nn.Module):
    """One linear layer used twice: its parameters must be counted once."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.layer = nn.Linear(d, d)
        self.again = self.layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.again(self.layer(x))


def _count_reference(model: nn.Module, trainable_only: bool) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters(fn: Callable[[nn.Module, bool], int]) -> str:
    """``fn(model, trainable_only)`` -> the number of (trainable) parameters of ``model``."""

    def make(gen: torch.Generator) -> tuple[nn.Module, bool]:
        d, c = (int(v) for v in torch.randint(2, 9, (2,), generator=gen))
        torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=gen)))
        model = nn.Sequential(
            nn.Conv2d(1, c, 3, bias=bool(torch.randint(0, 2, (1,), generator=gen))),
            nn.BatchNorm2d(c),  # buffers (running statistics) are not parameters
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, d), _Tied(d),
        )
        if bool(torch.randint(0, 2, (1,), generator=gen)):
            model[0].requires_grad_(False)  # a frozen layer
        return model, bool(torch.randint(0, 2, (1,), generator=gen))

    fixed = [(_Tied(3), True), (nn.Linear(4, 2).requires_grad_(False), True),
             (nn.Linear(4, 2).requires_grad_(False), False)]
    return compare(fn, _count_reference, fixed + random_cases(make, n=20),
                   name="count_parameters")
