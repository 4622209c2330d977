"""The attention chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmcourse import check
from mmcourse.check.attention import (
    alibi_attention_reference,
    alibi_bias,
    cross_attention_reference,
    multi_query_attention_reference,
)


def test_references_pass_their_own_checkers():
    assert check.cross_attention(cross_attention_reference).startswith("✓")
    assert check.alibi_attention(alibi_attention_reference).startswith("✓")
    assert check.multi_query_attention(multi_query_attention_reference).startswith("✓")


def test_cross_attention_gives_an_empty_clip_zero_output_and_finite_gradients():
    x_q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = [torch.randn(4, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64),
         torch.randn(6, 3, dtype=torch.float64)]
    out = cross_attention_reference(x_q, y, torch.tensor([5, 0]), *w)
    assert (out[1] == 0).all() and out[0].abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(x_q.grad).all() and torch.isfinite(y.grad).all()


def test_alibi_bias_penalizes_distance_and_hides_the_future():
    bias = alibi_bias(4, torch.tensor([0.5, 0.25], dtype=torch.float64))  # (H, T, T)
    assert bias[0, 3, 0] == -1.5 and bias[1, 3, 1] == -0.5 and bias[0, 2, 2] == 0
    assert torch.isinf(bias[:, 0, 1:]).all()


def _cross_without_mask(x_q, y, y_lengths, w_q, w_k, w_v):
    q, k, v = x_q @ w_q, y @ w_k, y @ w_v
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def _alibi_plus(q, k, v, slopes):
    return alibi_attention_reference(q, k, v, -slopes)


def _mqa_single_view(x, w_q, w_k, w_v, w_o, H):
    B, T, E = x.shape
    d_k = E // H
    q = (x @ w_q).view(B, H, T, d_k)
    k, v = (x @ w_k)[:, None], (x @ w_v)[:, None]
    return F.scaled_dot_product_attention(q, k.expand_as(q), v.expand_as(q)).transpose(1, 2).reshape(B, T, E) @ w_o


def _mqa_sqrt_of_E(x, w_q, w_k, w_v, w_o, H):
    B, T, E = x.shape
    d_k = E // H
    q = (x @ w_q).view(B, T, H, d_k).transpose(1, 2)
    k, v = (x @ w_k)[:, None], (x @ w_v)[:, None]
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(E), dim=-1)  # wrong width
    return (w @ v).transpose(1, 2).reshape(B, T, E) @ w_o


@pytest.mark.parametrize("checker, wrong, hint", [
    (check.cross_attention, _cross_without_mask, "padded steps of y take part"),
    (check.alibi_attention, _alibi_plus, "wrong sign"),
    (check.multi_query_attention, _mqa_single_view, "single .view"),
])
def test_typical_mistakes_are_named(checker, wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        checker(wrong)


def test_a_mistake_without_a_known_hint_still_names_the_entries():
    with pytest.raises(check.CheckFailure, match="entries differ") as failure:
        check.multi_query_attention(_mqa_sqrt_of_E)
    assert "Hint" not in str(failure.value)
