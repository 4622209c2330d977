"""Checkers for the warm-up exercises of the setup chapter: min-max scaling, trimming silence."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcourse.check.comparison import Passed, compare, random_cases
from mmcourse.check.hints import compare_with_hints


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


def trim_silence_reference(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``x`` (L,) from its first to its last sample with |x| >= threshold * max |x|."""
    loud = (x.abs() >= threshold * x.abs().max()).nonzero()[:, 0]  # indices of loud samples
    return x[int(loud[0]) : int(loud[-1]) + 1]


def trim_silence(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Passed:
    """``fn(x, threshold)``: cut the quiet start and end of a clip (L,), keep the rest as is."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, float]:
        n_in, n_sound, n_out = (int(v) for v in torch.randint(0, 40, (3,), generator=gen))
        quiet = [torch.randn(n, generator=gen, dtype=torch.float64) * 1e-3 for n in (n_in, n_out)]
        sound = torch.randn(n_sound + 2, generator=gen, dtype=torch.float64)
        sound[0], sound[-1] = 0.8, -0.9  # loud first and last samples
        sound[1:-1] = sound[1:-1].clamp(-2, 2) * torch.rand(n_sound, generator=gen, dtype=torch.float64)
        threshold = float(torch.empty(()).uniform_(0.01, 0.2, generator=gen))
        return torch.cat([quiet[0], sound, quiet[1]]), threshold

    variants = {
        "every quiet sample was dropped, also inside the clip; keep everything between the "
        "first and the last loud sample": lambda x, th: x[x.abs() >= th * x.abs().max()],
        "the threshold was compared with the signed samples; a loud negative sample counts "
        "too, so compare |x|": lambda x, th: _signed(x, th),
        "the last loud sample was cut off: the slice must end one past its index":
            lambda x, th: trim_silence_reference(x, th)[:-1],
    }
    return compare_with_hints(fn, trim_silence_reference, random_cases(make), variants,
                              "trim_silence")


def _signed(x: torch.Tensor, threshold: float) -> torch.Tensor:
    loud = (x >= threshold * x.abs().max()).nonzero()[:, 0]
    return x[int(loud[0]) : int(loud[-1]) + 1] if len(loud) else x[:0]
