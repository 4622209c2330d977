"""Checkers for the convolution chapter: receptive fields, padded max pooling, 1-D conv by unfold."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import compare, random_cases


def _randint(lo: int, hi: int, gen: torch.Generator) -> int:
    """A random int in [lo, hi], both ends included."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def receptive_field_reference(layers: Sequence[tuple[int, int, int]]) -> int:
    """Input pixels (along one axis) that one output pixel of a stack of convolutions sees.

    Each layer is ``(kernel, stride, dilation)``. A layer widens the field by ``d (k - 1)``
    of its own input pixels, and one such pixel spans ``jump`` = the product of the strides
    of the layers below it: r = 1 + Σ_l d_l (k_l - 1) Π_{m<l} s_m.
    """
    r, jump = 1, 1
    for k, s, d in layers:
        r += d * (k - 1) * jump
        jump *= s
    return r


def receptive_field(fn: Callable[[list[tuple[int, int, int]]], int]) -> str:
    """``fn(layers)`` for a list of (kernel, stride, dilation) layers, input side first."""

    def make(gen: torch.Generator) -> tuple[list[tuple[int, int, int]]]:
        n = _randint(1, 4, gen)
        layers = [(_randint(1, 5, gen), _randint(1, 3, gen), _randint(1, 3, gen)) for _ in range(n)]
        return (layers,)

    cases: list[Sequence] = [([(3, 1, 1)],), ([(3, 1, 1), (3, 1, 1)],), ([(2, 2, 1), (3, 1, 1)],)]
    cases += random_cases(make, n=30)
    return compare(fn, receptive_field_reference, cases, name="receptive_field")


def max_pool2d_padded(fn: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> str:
    """``fn(x, k, stride, padding)`` equals ``F.max_pool2d``, values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, int, int, int]:
        k = _randint(1, 4, gen)
        s, p = _randint(1, 3, gen), _randint(0, k // 2, gen)
        b, c = _randint(1, 3, gen), _randint(1, 3, gen)
        h, w = k + _randint(0, 6, gen), k + _randint(0, 6, gen)
        # negative values: padding with zeros instead of -inf shows up at the borders
        x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64) - 1.0
        return (x.requires_grad_(), k, s, p)

    # first a small all-negative case where every window at the border touches the padding
    gen = torch.Generator().manual_seed(7)
    negative = -0.5 - torch.rand(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    cases: list[Sequence] = [(negative.requires_grad_(), 2, 2, 1)]
    cases += random_cases(make, n=30)
    return compare(fn, F.max_pool2d, cases, name="max_pool2d_padded", grad=True)


def _conv1d_reference(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    return F.conv1d(x, w, b, stride=stride, padding=padding)


def conv1d_unfold(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, int], torch.Tensor],
) -> str:
    """``fn(x, w, b, stride, padding)`` equals ``F.conv1d``, values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        b, c, o = _randint(1, 3, gen), _randint(1, 3, gen), _randint(1, 4, gen)
        k, s, p = _randint(1, 5, gen), _randint(1, 3, gen), _randint(0, 2, gen)
        length = k + _randint(0, 9, gen)
        x = torch.randn(b, c, length, generator=gen, dtype=torch.float64)
        w = torch.randn(o, c, k, generator=gen, dtype=torch.float64)
        bias = torch.randn(o, generator=gen, dtype=torch.float64)
        return (x.requires_grad_(), w.requires_grad_(), bias.requires_grad_(), s, p)

    return compare(fn, _conv1d_reference, random_cases(make, n=30), name="conv1d_unfold", grad=True)
