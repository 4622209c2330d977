"""Checkers for the convolution chapter: receptive fields, padded max pooling, and a depthwise
separable convolution built from unfold."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import CheckFailure, Passed, compare, random_cases, random_int
from mmcourse.check.hints import compare_with_hints


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
        n = random_int(gen, 1, 4)
        layers = [(random_int(gen, 1, 5), random_int(gen, 1, 3), random_int(gen, 1, 3)) for _ in range(n)]
        return (layers,)

    cases: list[Sequence] = [([(3, 1, 1)],), ([(3, 1, 1), (3, 1, 1)],), ([(2, 2, 1), (3, 1, 1)],)]
    cases += random_cases(make, n=30)
    return compare(fn, receptive_field_reference, cases, name="receptive_field")


def max_pool2d_padded(fn: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> str:
    """``fn(x, k, stride, padding)`` equals ``F.max_pool2d``, values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, int, int, int]:
        k = random_int(gen, 1, 4)
        s, p = random_int(gen, 1, 3), random_int(gen, 0, k // 2)
        b, c = random_int(gen, 1, 3), random_int(gen, 1, 3)
        h, w = k + random_int(gen, 0, 6), k + random_int(gen, 0, 6)
        # negative values: padding with zeros instead of -inf shows up at the borders
        x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64) - 1.0
        return (x.requires_grad_(), k, s, p)

    # first a small all-negative case where every window at the border touches the padding
    gen = torch.Generator().manual_seed(7)
    negative = -0.5 - torch.rand(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    cases: list[Sequence] = [(negative.requires_grad_(), 2, 2, 1)]
    cases += random_cases(make, n=30)
    return compare(fn, F.max_pool2d, cases, name="max_pool2d_padded", grad=True)


@contextmanager
def _without_library_convolution() -> Iterator[None]:
    """Inside: F.conv2d, torch.conv2d and nn.Conv2d raise, so the answer must build its own."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise CheckFailure("this exercise builds the convolution itself (unfold, then a matrix "
                           "product or einsum): F.conv2d, torch.conv2d and nn.Conv2d are off")

    saved = F.conv2d, torch.conv2d
    F.conv2d = torch.conv2d = refuse
    try:
        yield
    finally:
        F.conv2d, torch.conv2d = saved


def depthwise_separable_reference(x: torch.Tensor, w_depth: torch.Tensor, w_point: torch.Tensor,
                                  padding: int) -> torch.Tensor:
    """A k x k filter per channel (groups = C), then a 1 x 1 convolution that mixes channels.

    x (B, C, H, W), w_depth (C, 1, k, k), w_point (O, C, 1, 1) -> (B, O, H_out, W_out).
    """
    depth = F.conv2d(x, w_depth, padding=padding, groups=x.shape[1])  # (B, C, H_out, W_out)
    return F.conv2d(depth, w_point)  # (B, O, H_out, W_out)


def _depthwise_summed_over_channels(x, w_depth, w_point, padding):
    C = x.shape[1]
    full = w_depth.expand(C, C, *w_depth.shape[-2:])  # every filter reads every channel
    return F.conv2d(F.conv2d(x, full, padding=padding), w_point)


def _pointwise_first(x, w_depth, w_point, padding):
    if w_point.shape[0] != x.shape[1]:
        return torch.zeros(0)
    mixed = F.conv2d(x, w_point)
    return F.conv2d(mixed, w_depth, padding=padding, groups=mixed.shape[1])


def depthwise_separable_conv2d(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor],
) -> Passed:
    """``fn(x, w_depth, w_point, padding)`` equals depthwise then pointwise ``F.conv2d``,
    values and gradients, without calling ``F.conv2d`` itself."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        b, c, o = random_int(gen, 1, 3), random_int(gen, 2, 4), random_int(gen, 1, 4)
        k, p = random_int(gen, 1, 4), random_int(gen, 0, 2)
        h, w = k + random_int(gen, 0, 5), k + random_int(gen, 0, 5)
        x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
        w_depth = torch.randn(c, 1, k, k, generator=gen, dtype=torch.float64)
        w_point = torch.randn(o, c, 1, 1, generator=gen, dtype=torch.float64)
        return (x.requires_grad_(), w_depth.requires_grad_(), w_point.requires_grad_(), p)

    def guarded(*args: object) -> torch.Tensor:
        with _without_library_convolution():
            return fn(*args)

    guarded.__name__ = "depthwise_separable_conv2d"
    variants = {
        "the depthwise step sums over the input channels like an ordinary convolution; each "
        "channel c must be filtered by its own kernel w_depth[c] alone (no sum over c)":
            _depthwise_summed_over_channels,
        "the 1 x 1 (pointwise) mixing comes first; filter each channel, then mix":
            _pointwise_first,
    }
    return compare_with_hints(guarded, depthwise_separable_reference, random_cases(make, n=30),
                              variants, "depthwise_separable_conv2d", grad=True)
