"""The sound-generation checkers pass correct answers and name typical mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmcourse import check
from mmcourse.check import CheckFailure


def test_a_law_passes_a_correct_answer_and_catches_a_missing_one_plus_log() -> None:
    def right(x: torch.Tensor, A: float = 87.6) -> torch.Tensor:
        ax = A * x.abs()
        big = (1 + torch.log(ax.clamp_min(1.0))) / (1 + math.log(A))
        return torch.sign(x) * torch.where(ax < 1, ax / (1 + math.log(A)), big)

    def no_one(x: torch.Tensor, A: float = 87.6) -> torch.Tensor:  # ln A instead of 1 + ln A
        ax = A * x.abs()
        big = (1 + torch.log(ax.clamp_min(1.0))) / math.log(A)
        return torch.sign(x) * torch.where(ax < 1, ax / math.log(A), big)

    def no_sign(x: torch.Tensor, A: float = 87.6) -> torch.Tensor:
        return right(x, A).abs()

    assert str(check.a_law_compand(right)).startswith("✓")
    with pytest.raises(CheckFailure, match="entries differ"):
        check.a_law_compand(no_one)
    with pytest.raises(CheckFailure, match="entries differ"):
        check.a_law_compand(no_sign)


def _step(history, x_t, weight, bias, dilation, flip=False, keep_oldest=False):
    window = torch.cat([history, x_t[:, :, None]], dim=2)
    k = weight.shape[2]
    taps = window[:, :, ::dilation]  # (B, C_in, k)
    w = weight.flip(2) if flip else weight
    y = torch.einsum("bck,ock->bo", taps, w) + bias
    assert taps.shape[2] == k
    return y, (window if keep_oldest else window[:, :, 1:])


def test_causal_conv_step_catches_a_flipped_kernel_and_a_growing_history() -> None:
    assert str(check.causal_conv_step(_step)).startswith("✓")
    with pytest.raises(CheckFailure, match="item 0.*entries differ"):
        check.causal_conv_step(lambda *a: _step(*a, flip=True))  # convolution, not correlation
    with pytest.raises(CheckFailure, match="item 1.*shape"):
        check.causal_conv_step(lambda *a: _step(*a, keep_oldest=True))


def test_causal_footprint_catches_a_field_without_holes() -> None:
    def by_gradient(kernel_sizes: list[int], dilations: list[int]) -> torch.Tensor:
        span = 1 + sum((k - 1) * d for k, d in zip(kernel_sizes, dilations, strict=True))
        x = torch.zeros(1, 1, span, dtype=torch.float64, requires_grad=True)
        y = x
        for k, d in zip(kernel_sizes, dilations, strict=True):
            y = F.conv1d(F.pad(y, ((k - 1) * d, 0)), torch.ones(1, 1, k, dtype=torch.float64), dilation=d)
        (g,) = torch.autograd.grad(y[0, 0, -1], x)
        return (g[0, 0] != 0).flip(0)

    def no_holes(kernel_sizes: list[int], dilations: list[int]) -> torch.Tensor:
        span = 1 + sum((k - 1) * d for k, d in zip(kernel_sizes, dilations, strict=True))
        return torch.ones(span, dtype=torch.bool)

    assert str(check.causal_footprint(by_gradient)).startswith("✓")
    with pytest.raises(CheckFailure, match=r"case 2 .*entries differ"):
        check.causal_footprint(no_holes)  # dilations (1, 4) reach offsets 0, 1, 4, 5 only
