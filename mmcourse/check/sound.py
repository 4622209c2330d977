"""Checkers for the sound-generation chapter: A-law companding, one cached causal-convolution
step, and the footprint (with its holes) of a stack of dilated causal convolutions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import compare, random_cases, random_int


def a_law_reference(x: torch.Tensor, A: float = 87.6) -> torch.Tensor:
    """G.711 A-law companding: sign(x) A|x| / (1 + ln A) below |x| = 1/A, else
    sign(x) (1 + ln(A|x|)) / (1 + ln A)."""
    ax = A * x.abs()
    small = ax / (1 + math.log(A))
    large = (1 + torch.log(ax.clamp_min(1.0))) / (1 + math.log(A))
    return torch.sign(x) * torch.where(ax < 1, small, large)


def a_law_compand(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> str:
    """``fn(x, A)`` for samples x in [-1, 1] (any shape, float64) and A >= 1."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, float]:
        shape = tuple(random_int(gen, 1, 5) for _ in range(random_int(gen, 1, 2)))
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
        x = x * 10.0 ** (-3 * torch.rand(shape, generator=gen, dtype=torch.float64))  # quiet too
        A = (87.6, 50.0, 10.0)[random_int(gen, 0, 2)]
        return x, A

    A = 87.6
    edges = torch.tensor([0.0, 1e-4, 1 / A, -1 / A, 0.5, -0.5, 1.0, -1.0], dtype=torch.float64)
    cases = [(edges, A), *random_cases(make)]
    return compare(fn, a_law_reference, cases, name="a_law_compand", atol=1e-10, rtol=1e-9)


def causal_conv_step_reference(
    history: torch.Tensor, x_t: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dilation: int
) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.cat([history, x_t[:, :, None]], dim=2)  # (B, C_in, (k-1)d + 1)
    y_t = F.conv1d(window, weight, bias, dilation=dilation)[:, :, 0]  # (B, C_out)
    return y_t, window[:, :, 1:]


def causal_conv_step(
    fn: Callable[
        [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
        tuple[torch.Tensor, torch.Tensor],
    ],
) -> str:
    """``fn(history, x_t, weight, bias, dilation)`` -> (y_t, new history); values and gradients."""

    def make(gen: torch.Generator) -> tuple:
        B, c_in, c_out = random_int(gen, 1, 3), random_int(gen, 1, 3), random_int(gen, 1, 3)
        k, d = random_int(gen, 2, 4), random_int(gen, 1, 4)
        history = torch.randn(B, c_in, (k - 1) * d, generator=gen, dtype=torch.float64)
        x_t = torch.randn(B, c_in, generator=gen, dtype=torch.float64)
        weight = torch.randn(c_out, c_in, k, generator=gen, dtype=torch.float64)
        bias = torch.randn(c_out, generator=gen, dtype=torch.float64)
        return (
            history.requires_grad_(),
            x_t.requires_grad_(),
            weight.requires_grad_(),
            bias.requires_grad_(),
            d,
        )

    return compare(
        fn, causal_conv_step_reference, random_cases(make), name="causal_conv_step", grad=True
    )


def causal_footprint_reference(kernel_sizes: Sequence[int], dilations: Sequence[int]) -> torch.Tensor:
    offsets = {0}
    for k, d in zip(kernel_sizes, dilations, strict=True):
        offsets = {o + j * d for o in offsets for j in range(k)}
    span = 1 + sum((k - 1) * d for k, d in zip(kernel_sizes, dilations, strict=True))
    out = torch.zeros(span, dtype=torch.bool)
    out[sorted(offsets)] = True
    return out


def causal_footprint(fn: Callable[[list[int], list[int]], torch.Tensor]) -> str:
    """``fn(kernel_sizes, dilations)`` -> bool (span,): True at j if y[t] depends on x[t - j]."""

    def make(gen: torch.Generator) -> tuple[list[int], list[int]]:
        n = random_int(gen, 1, 4)
        return [random_int(gen, 1, 3) for _ in range(n)], [random_int(gen, 1, 6) for _ in range(n)]

    cases: list[Sequence] = [([2, 2, 2], [1, 2, 4]), ([2, 2], [1, 4]), ([3], [2]), ([1], [5])]
    cases += random_cases(make, n=30)
    return compare(fn, causal_footprint_reference, cases, name="causal_footprint")
