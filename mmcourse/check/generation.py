"""Checkers for the text-generation chapter: min-p filtering, one step of sliding-window attention
with a KV cache, and the GNMT length-normalized beam score.

When an answer fails, the checker also tries the usual mistakes and names the one that matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from mmcourse.check.comparison import Passed, random_cases, random_int
from mmcourse.check.hints import compare_with_hints

Fn = Callable[..., Any]


def _check_with_hints(
    fn: Fn, reference: Callable, cases: list, variants: dict[str, Callable], name: str,
    grad: bool = True,
) -> Passed:
    return compare_with_hints(fn, reference, cases, variants, name, atol=1e-8, rtol=1e-6,
                              grad=grad)


# --- min-p filtering ---------------------------------------------------------------------


def _min_p(logits: torch.Tensor, p_base: float) -> torch.Tensor:
    probs = logits.softmax(dim=-1)
    floor = p_base * probs.amax(dim=-1, keepdim=True)  # (..., 1)
    return logits.masked_fill(probs < floor, float("-inf"))


def _min_p_on_logits(logits: torch.Tensor, p_base: float) -> torch.Tensor:
    floor = p_base * logits.amax(dim=-1, keepdim=True)
    return logits.masked_fill(logits < floor, float("-inf"))


def _min_p_renormalized(logits: torch.Tensor, p_base: float) -> torch.Tensor:
    probs = logits.softmax(dim=-1)
    kept = torch.where(probs >= p_base * probs.amax(dim=-1, keepdim=True), probs, 0.0)
    return kept / kept.sum(dim=-1, keepdim=True)


def min_p_filter(fn: Fn) -> Passed:
    """``(logits (B, V), p_base) -> logits`` with -inf where p_i < p_base * max_j p_j."""

    def make(gen: torch.Generator) -> list:
        B, V = random_int(gen, 1, 4), random_int(gen, 2, 12)
        logits = 3 * torch.randn(B, V, generator=gen, dtype=torch.float64) + 2.0
        p_base = float(torch.rand(1, generator=gen)) * 0.6 + 0.02
        return [logits, p_base]

    cases = random_cases(make) + [
        [torch.tensor([[1.0, 1.0, -2.0]], dtype=torch.float64), 1.0],  # ties with the maximum stay
        [torch.tensor([[-3.0, -4.0, -9.0, -3.5]], dtype=torch.float64), 0.3],  # negative logits
    ]
    variants = {
        "the threshold is applied to the logits; min-p compares probabilities, p_i >= p_base * p_max":
            _min_p_on_logits,
        "you returned renormalized probabilities; return the logits, with -inf at the removed tokens":
            _min_p_renormalized,
    }
    return _check_with_hints(fn, _min_p, cases, variants, "min_p_filter", grad=False)


# --- one step of sliding-window attention with a KV cache ---------------------------------


def _window_step(q, k, v, K, V, window, *, append=True, keep=True, scale=None):
    K_all = torch.cat([K, k[:, None]], dim=1) if append else K  # (B, T + 1, d)
    V_all = torch.cat([V, v[:, None]], dim=1) if append else V
    if keep:
        K_all, V_all = K_all[:, -window:], V_all[:, -window:]
    d = q.shape[-1]
    s = (K_all @ q[:, :, None])[..., 0] / (math.sqrt(d) if scale is None else scale(d))  # (B, T')
    out = (s.softmax(dim=-1)[:, None, :] @ V_all)[:, 0]  # (B, d)
    return out, K_all, V_all


def _attend_then_append(q, k, v, K, V, window):
    s = (K @ q[:, :, None])[..., 0] / math.sqrt(q.shape[-1])  # (B, T): the old cache only
    out = (s.softmax(dim=-1)[:, None, :] @ V)[:, 0]
    return out, torch.cat([K, k[:, None]], 1)[:, -window:], torch.cat([V, v[:, None]], 1)[:, -window:]


def window_attention_step(fn: Fn) -> Passed:
    """``(q, k, v (B, d), K, V (B, T, d), window) -> (out (B, d), K', V')``: append, keep the
    last ``window`` positions, attend."""

    def make(gen: torch.Generator) -> list:
        B, d = random_int(gen, 1, 3), random_int(gen, 1, 6)
        T, window = random_int(gen, 0, 6), random_int(gen, 1, 5)
        q, k, v = (torch.randn(B, d, generator=gen, dtype=torch.float64).requires_grad_()
                   for _ in range(3))
        K, Vc = (torch.randn(B, T, d, generator=gen, dtype=torch.float64).requires_grad_()
                 for _ in range(2))
        return [q, k, v, K, Vc, window]

    cases = random_cases(make)
    variants = {
        "the new key and value must join the cache before attending (the token sees itself)":
            _attend_then_append,
        "the cache must keep only the last `window` positions": lambda *a: _window_step(
            *a, keep=False),
        "scores are divided by sqrt(d), the width of q and k": lambda *a: _window_step(
            *a, scale=lambda d: d),
    }
    return _check_with_hints(fn, _window_step, cases, variants, "window_attention_step")


# --- GNMT length-normalized beam score ------------------------------------------------------


def _gnmt(logp: torch.Tensor, lengths: torch.Tensor, alpha: float, *, padded=False,
          plain=False) -> torch.Tensor:
    T = logp.shape[1]
    real = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    total = logp.sum(1) if padded else (logp * real).sum(1)  # (B,)
    n = lengths.to(logp.dtype)
    lp = n**alpha if plain else ((5 + n) / 6) ** alpha
    return total / lp


def gnmt_score(fn: Fn) -> Passed:
    """``(logp (B, T), lengths (B,), alpha) -> (B,)``: sum of the real log-probs / ((5 + n)/6)^alpha."""

    def make(gen: torch.Generator) -> list:
        B, T = random_int(gen, 1, 5), random_int(gen, 1, 8)
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        logp = -torch.rand(B, T, generator=gen, dtype=torch.float64) * 4
        logp = torch.where(torch.arange(T) < lengths[:, None], logp, 7.0)  # padding holds junk
        alpha = float(torch.rand(1, generator=gen)) * 1.5
        return [logp.requires_grad_(), lengths, alpha]

    cases = random_cases(make)
    variants = {
        "padding is part of the sum; add only the first lengths[b] log-probabilities":
            lambda *a: _gnmt(*a, padded=True),
        "that is n^alpha; GNMT divides by ((5 + n) / 6)^alpha": lambda *a: _gnmt(*a, plain=True),
    }
    return _check_with_hints(fn, _gnmt, cases, variants, "gnmt_score")
