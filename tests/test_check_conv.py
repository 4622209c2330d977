"""The convolution chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcourse import check
from mmcourse.check.conv import depthwise_separable_reference


def _unfold_version(x, w_depth, w_point, padding):
    B, C, H, W = x.shape
    k = w_depth.shape[-1]
    cols = F.unfold(x, k, padding=padding).view(B, C, k * k, -1)  # (B, C, k², L)
    depth = torch.einsum("bcql,cq->bcl", cols, w_depth.reshape(C, k * k))
    out = w_point.reshape(-1, C) @ depth
    return out.view(B, -1, H + 2 * padding - k + 1, W + 2 * padding - k + 1)


def test_an_unfold_answer_passes():
    assert check.depthwise_separable_conv2d(_unfold_version).startswith("✓")


def test_the_library_convolution_is_refused_and_restored():
    with pytest.raises(check.CheckFailure, match="F.conv2d, torch.conv2d and nn.Conv2d are off"):
        check.depthwise_separable_conv2d(depthwise_separable_reference)
    x = torch.randn(1, 2, 5, 5)
    assert F.conv2d(x, torch.randn(3, 2, 3, 3)).shape == (1, 3, 3, 3)  # restored afterwards


def test_summing_over_channels_is_named():
    def ordinary_conv(x, w_depth, w_point, padding):
        B, C, H, W = x.shape
        k = w_depth.shape[-1]
        cols = F.unfold(x, k, padding=padding).view(B, C, k * k, -1)
        depth = torch.einsum("bcql,dq->bdl", cols, w_depth.reshape(C, k * k))  # sums over c
        out = w_point.reshape(-1, C) @ depth
        return out.view(B, -1, H + 2 * padding - k + 1, W + 2 * padding - k + 1)

    with pytest.raises(check.CheckFailure, match="its own kernel"):
        check.depthwise_separable_conv2d(ordinary_conv)


def test_receptive_field_and_padded_pooling_catch_their_classic_slips():
    with pytest.raises(check.CheckFailure, match="expected 6"):
        check.receptive_field(lambda layers: 1 + sum(d * (k - 1) for k, s, d in layers))

    def zero_padded(x, k, stride, padding):
        x = F.pad(x, (padding,) * 4)  # zeros instead of -inf
        return x.unfold(2, k, stride).unfold(3, k, stride).amax(dim=(-2, -1))

    with pytest.raises(check.CheckFailure, match="entries differ"):
        check.max_pool2d_padded(zero_padded)
