"""Checkers for the warm-up exercise of the setup chapter."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcourse.check.comparison import compare, random_cases


def _minmax_reference(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def minmax_scale(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Scale each image of a batch (..., H, W) to [0, 1] by its own minimum and maximum."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor]:
        b, h, w = (int(v) for v in torch.randint(1, 6, (3,), generator=gen))
        x = torch.randn(b, h + 1, w + 1, generator=gen, dtype=torch.float64) * 5 + 3
        return (x,)

    return compare(fn, _minmax_reference, random_cases(make), name="minmax_scale")
