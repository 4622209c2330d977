"""The text-generation chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch

from mmcourse import check


def min_p_filter(logits, p_base):
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < p_base * probs.amax(-1, keepdim=True), float("-inf"))


def window_attention_step(q, k, v, K, V, window, scale=None):
    K = torch.cat([K, k[:, None]], 1)[:, -window:]
    V = torch.cat([V, v[:, None]], 1)[:, -window:]
    s = torch.einsum("bd,btd->bt", q, K) / (scale or math.sqrt(q.shape[-1]))
    return torch.einsum("bt,btd->bd", s.softmax(-1), V), K, V


def gnmt_score(logp, lengths, alpha):
    real = torch.arange(logp.shape[1]) < lengths[:, None]
    n = lengths.to(logp.dtype)
    return (logp * real).sum(1) / ((5 + n) / 6) ** alpha


def test_right_answers_pass():
    assert check.min_p_filter(min_p_filter).startswith("✓")
    assert check.window_attention_step(window_attention_step).startswith("✓")
    assert check.gnmt_score(gnmt_score).startswith("✓")


def test_min_p_mistakes_are_named():
    on_logits = lambda z, p: z.masked_fill(z < p * z.amax(-1, keepdim=True), float("-inf"))  # noqa: E731
    with pytest.raises(check.CheckFailure, match="compares probabilities"):
        check.min_p_filter(on_logits)
    with pytest.raises(check.CheckFailure, match="renormalized probabilities"):
        check.min_p_filter(lambda z, p: min_p_filter(z, p).softmax(-1))
    strict = lambda z, p: z.masked_fill(z.softmax(-1) <= p * z.softmax(-1).amax(-1, keepdim=True),  # noqa: E731
                                        float("-inf"))
    with pytest.raises(check.CheckFailure, match="entries differ"):  # drops the maximum itself
        check.min_p_filter(strict)


def test_window_step_mistakes_are_named():
    def no_window(q, k, v, K, V, window):
        return window_attention_step(q, k, v, K, V, K.shape[1] + 1)

    def attend_first(q, k, v, K, V, window):
        s = torch.einsum("bd,btd->bt", q, K) / math.sqrt(q.shape[-1])
        out = torch.einsum("bt,btd->bd", s.softmax(-1), V)
        return out, torch.cat([K, k[:, None]], 1)[:, -window:], torch.cat([V, v[:, None]], 1)[:, -window:]

    with pytest.raises(check.CheckFailure, match="last `window` positions"):
        check.window_attention_step(no_window)
    with pytest.raises(check.CheckFailure, match="join the cache before attending"):
        check.window_attention_step(attend_first)
    with pytest.raises(check.CheckFailure, match="sqrt"):
        check.window_attention_step(lambda *a: window_attention_step(*a, scale=a[0].shape[-1]))


def test_gnmt_mistakes_are_named():
    with pytest.raises(check.CheckFailure, match="padding is part of the sum"):
        check.gnmt_score(lambda logp, n, a: logp.sum(1) / ((5 + n.to(logp.dtype)) / 6) ** a)
    with pytest.raises(check.CheckFailure, match=r"n\^alpha"):
        check.gnmt_score(lambda logp, n, a: gnmt_score(logp, n, 0.0) / n.to(logp.dtype) ** a)
    with pytest.raises(check.CheckFailure, match="not connected"):
        check.gnmt_score(lambda logp, n, a: gnmt_score(logp.detach(), n, a))
