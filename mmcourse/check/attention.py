"""Checkers for the attention chapter, each applying attention somewhere new: cross-attention
from one modality to another with a key padding mask, a relative-position (ALiBi) bias, and
multi-query attention (many query heads, one shared key/value head)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import Passed, random_cases
from mmcourse.check.hints import compare_with_hints

F64 = torch.float64


def _ints(gen: torch.Generator, lo: int, hi: int, n: int) -> list[int]:
    """``n`` random ints in [lo, hi], both ends included."""
    return [int(v) for v in torch.randint(lo, hi + 1, (n,), generator=gen)]


# --- cross-attention with a key padding mask from another modality -----------------------


def cross_attention_reference(x_q: torch.Tensor, y: torch.Tensor, y_lengths: torch.Tensor,
                              w_q: torch.Tensor, w_k: torch.Tensor,
                              w_v: torch.Tensor) -> torch.Tensor:
    """Queries from ``x_q`` (B, T_q, E_q), keys/values from the first ``y_lengths[b]`` steps of
    ``y`` (B, T_k, E_k); a sample with no valid key gets a zero output. Returns (B, T_q, d_v)."""
    q, k, v = x_q @ w_q, y @ w_k, y @ w_v  # (B, T_q, d), (B, T_k, d), (B, T_k, d_v)
    valid = torch.arange(y.shape[1]) < y_lengths[:, None]  # (B, T_k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T_q, T_k)
    any_key = valid.any(-1)[:, None, None]  # (B, 1, 1)
    allowed = valid[:, None, :] | ~any_key  # empty samples: a finite softmax, zeroed below
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return (weights * any_key) @ v  # (B, T_q, d_v)


def _cross_padding_ignored(x_q, y, y_lengths, w_q, w_k, w_v):
    return cross_attention_reference(x_q, y, torch.full_like(y_lengths, y.shape[1]), w_q, w_k, w_v)


def _cross_mask_inverted(x_q, y, y_lengths, w_q, w_k, w_v):
    T_k = y.shape[1]
    flipped = torch.arange(T_k) >= y_lengths[:, None]  # attends to the padding only
    q, k, v = x_q @ w_q, y @ w_k, y @ w_v
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~flipped[:, None], -1e9)
    return torch.softmax(scores, dim=-1) @ v


def cross_attention(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(x_q, y, y_lengths, w_q, w_k, w_v) -> (B, T_q, d_v)``: values and gradients."""

    def make(gen: torch.Generator) -> tuple:
        B, T_q, T_k, E_q, E_k, d, d_v = _ints(gen, 1, 5, 7)
        B, T_k = B + 1, T_k + 1  # at least two samples, at least two key positions
        x_q = torch.randn(B, T_q, E_q, generator=gen, dtype=F64)
        y = torch.randn(B, T_k, E_k, generator=gen, dtype=F64)
        lengths = torch.randint(1, T_k + 1, (B,), generator=gen)
        lengths[0] = T_k - 1  # at least one padded sample
        if torch.rand((), generator=gen) < 0.3:
            lengths[-1] = 0  # a clip with no frames at all
        w_q = torch.randn(E_q, d, generator=gen, dtype=F64)
        w_k = torch.randn(E_k, d, generator=gen, dtype=F64)
        w_v = torch.randn(E_k, d_v, generator=gen, dtype=F64)
        return (x_q.requires_grad_(), y.requires_grad_(), lengths,
                w_q.requires_grad_(), w_k.requires_grad_(), w_v.requires_grad_())

    variants = {
        "the padded steps of y take part: build the mask from y_lengths (key j is valid when "
        "j < y_lengths[b]) and give padded keys the score -inf": _cross_padding_ignored,
        "the mask is inverted (True = padding in one convention, True = may attend in the "
        "other): valid keys are those with j < y_lengths[b]": _cross_mask_inverted,
    }
    return compare_with_hints(fn, cross_attention_reference, random_cases(make), variants,
                              "cross_attention", grad=True, atol=1e-8, rtol=1e-6)


# --- ALiBi: a linear relative-position bias on causal self-attention ---------------------


def alibi_bias(T: int, slopes: torch.Tensor) -> torch.Tensor:
    """(H, T, T): -m_h (i - j) where key j may be seen by query i (j <= i), -inf elsewhere."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    distance = (i - j).to(slopes.dtype)  # (T, T)
    bias = -slopes[:, None, None] * distance  # (H, T, T)
    return bias.masked_fill(j > i, float("-inf"))


def alibi_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              slopes: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) - m_h (i - j), causal) v for q, k, v (B, H, T, d)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=alibi_bias(q.shape[-2], slopes))


def _alibi_wrong_sign(q, k, v, slopes):
    return alibi_attention_reference(q, k, v, -slopes)


def _alibi_not_causal(q, k, v, slopes):
    T = q.shape[-2]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    bias = -slopes[:, None, None] * (i - j).abs().to(slopes.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _alibi_unscaled(q, k, v, slopes):
    scores = (q @ k.transpose(-2, -1) + alibi_bias(q.shape[-2], slopes)) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def alibi_attention(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(q, k, v, slopes) -> (B, H, T, d)``: causal attention with the ALiBi bias."""

    def make(gen: torch.Generator) -> tuple:
        B, H, T, d = _ints(gen, 1, 4, 4)
        T += 1
        q, k, v = (torch.randn(B, H, T, d, generator=gen, dtype=F64) for _ in range(3))
        slopes = 2.0 ** (-8.0 * torch.arange(1, H + 1, dtype=F64) / H)  # the paper's geometric slopes
        return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), slopes

    variants = {
        "the bias has the wrong sign: distant keys must be penalized, score - m_h (i - j)":
            _alibi_wrong_sign,
        "future keys are visible: the bias is added on top of the causal mask (j <= i), not "
        "instead of it": _alibi_not_causal,
        "the bias is divided by sqrt(d) too: only q k^T is scaled, the bias is added after":
            _alibi_unscaled,
    }
    return compare_with_hints(fn, alibi_attention_reference, random_cases(make), variants,
                              "alibi_attention", grad=True, atol=1e-8, rtol=1e-6)


# --- multi-query attention: H query heads, one key/value head -----------------------------


def multi_query_attention_reference(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor,
                                    w_v: torch.Tensor, w_o: torch.Tensor, H: int) -> torch.Tensor:
    """x (B, T, E); w_q (E, E) holds H query heads of width d_k = E / H side by side; w_k and
    w_v (E, d_k) are one key and one value head shared by all; w_o (E, E). Returns (B, T, E)."""
    B, T, E = x.shape
    d_k = E // H
    q = (x @ w_q).view(B, T, H, d_k).transpose(1, 2)  # (B, H, T, d_k)
    k = (x @ w_k)[:, None].expand(B, H, T, d_k)  # (B, H, T, d_k): the same for every head
    v = (x @ w_v)[:, None].expand(B, H, T, d_k)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d_k)
    return out.transpose(1, 2).reshape(B, T, E) @ w_o  # (B, T, E)


def _mqa_wrong_split(x, w_q, w_k, w_v, w_o, H):
    B, T, E = x.shape
    d_k = E // H
    q = (x @ w_q).view(B, H, T, d_k)  # the tempting single view
    k = (x @ w_k)[:, None].expand(B, H, T, d_k)
    v = (x @ w_v)[:, None].expand(B, H, T, d_k)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(B, T, E) @ w_o


def _mqa_wrong_merge(x, w_q, w_k, w_v, w_o, H):
    B, T, E = x.shape
    d_k = E // H
    q = (x @ w_q).view(B, T, H, d_k).transpose(1, 2)
    k = (x @ w_k)[:, None].expand(B, H, T, d_k)
    v = (x @ w_v)[:, None].expand(B, H, T, d_k)
    out = F.scaled_dot_product_attention(q, k, v)
    return out.reshape(B, T, E) @ w_o  # heads not moved back next to each other


def multi_query_attention(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(x, w_q, w_k, w_v, w_o, H) -> (B, T, E)``: values and gradients."""

    def make(gen: torch.Generator) -> tuple:
        B, T, H, d_k = _ints(gen, 1, 4, 4)
        H, d_k, T = H + 1, d_k, T + 1  # at least two heads and two positions
        E = H * d_k
        x = torch.randn(B, T, E, generator=gen, dtype=F64)
        w_q, w_o = (torch.randn(E, E, generator=gen, dtype=F64) / math.sqrt(E) for _ in range(2))
        w_k, w_v = (torch.randn(E, d_k, generator=gen, dtype=F64) / math.sqrt(E) for _ in range(2))
        return (x.requires_grad_(), w_q.requires_grad_(), w_k.requires_grad_(),
                w_v.requires_grad_(), w_o.requires_grad_(), H)

    variants = {
        "the heads were split with a single .view(B, H, T, d_k), which hands each head the "
        "wrong numbers; view as (B, T, H, d_k), then transpose(1, 2)": _mqa_wrong_split,
        "the heads were merged without transposing back: (B, H, T, d_k) must become "
        "(B, T, H, d_k) before the reshape to (B, T, E)": _mqa_wrong_merge,
    }
    return compare_with_hints(fn, multi_query_attention_reference, random_cases(make), variants,
                              "multi_query_attention", grad=True, atol=1e-8, rtol=1e-6)
