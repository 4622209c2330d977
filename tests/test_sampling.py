"""Next-token filters and sampling (mmcourse.nn.sampling), against plain-loop references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import filter_logits, sample, top_k_filter, top_p_filter
from mmcourse.nn.sampling import greedy

logits_st = st.lists(st.floats(-8, 8, allow_nan=False, width=32), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(logits_st, st.integers(1, 14))
def test_top_k_keeps_the_tokens_with_fewer_than_k_larger_ones(z, k):
    z = torch.tensor(z, dtype=torch.float64)
    kept = top_k_filter(z, k).isfinite()
    for i in range(len(z)):  # tokens strictly above the k-th largest, plus its ties
        kth = sorted(z.tolist(), reverse=True)[min(k, len(z)) - 1]
        assert bool(kept[i]) == (z[i].item() >= kth)
    assert int(kept.sum()) >= min(k, len(z))


@settings(max_examples=300, deadline=None)
@given(logits_st, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_most_probable_set(z, p):
    z = torch.tensor(z, dtype=torch.float64)
    probs = z.softmax(0)
    kept = top_p_filter(z, p).isfinite()
    for i in range(len(z)):  # keep i iff the strictly more probable tokens hold less than p
        above = probs[probs > probs[i]].sum().item()
        tied = int(((probs - probs[i]).abs() < 1e-12).sum()) > 1  # which of equals: arbitrary
        if abs(above - p) > 1e-9 and not tied:
            assert bool(kept[i]) == (above < p), (i, above, p)
    assert probs[kept].max() == probs.max()  # a most probable token (which one, under ties: any)
    assert probs[kept].sum() >= p - 1e-9  # enough mass, and no token more than needed:
    assert probs[kept].sum() - probs[kept].min() < p + 1e-9


def test_filters_renormalize_and_compose_in_order():
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    f = filter_logits(z, temperature=0.5, top_k=3, top_p=0.9)
    expected = top_p_filter(top_k_filter(z / 0.5, 3), 0.9)
    torch.testing.assert_close(f, expected)
    assert torch.isclose(f.softmax(-1).sum(), torch.tensor(1.0))
    torch.testing.assert_close(filter_logits(z, temperature=2.0).softmax(-1), (z / 2).softmax(-1))
    assert torch.equal(top_p_filter(z, 1.0).isfinite(), torch.ones_like(z, dtype=torch.bool))
    assert torch.equal(greedy(z), torch.tensor([0]))


def test_sample_frequencies_follow_the_filtered_distribution():
    z = torch.log(torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04]))
    N = 40_000
    g = torch.Generator().manual_seed(0)
    for kwargs in ({}, {"temperature": 0.7}, {"top_k": 3}, {"top_p": 0.75}, {"top_p": 0.85}):
        target = filter_logits(z, **kwargs).softmax(-1)
        draws = sample(z.expand(N, -1), generator=g, **kwargs)
        freq = torch.bincount(draws, minlength=6).double() / N
        sigma = (target * (1 - target) / N).sqrt()
        assert ((freq - target).abs() <= 5 * sigma + 1e-12).all(), (kwargs, freq, target)
    # top-p 0.75 keeps three tokens (0.4 + 0.25 < 0.75); 0.85 keeps four (0.8 < 0.85)
    assert (filter_logits(z, top_p=0.75).isfinite()).sum() == 3
    assert (filter_logits(z, top_p=0.85).isfinite()).sum() == 4


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, math.nan, "0.5", True])
def test_top_p_outside_0_1_is_refused(bad):
    with pytest.raises(ValueError, match=r"top_p in \(0, 1\]"):
        top_p_filter(torch.zeros(3), bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_top_k_below_1_is_refused(bad):
    with pytest.raises(ValueError, match="top_k to be an int k >= 1"):
        top_k_filter(torch.zeros(3), bad)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "1"])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match="temperature > 0"):
        filter_logits(torch.zeros(3), temperature=bad)


def test_logits_must_be_float():
    with pytest.raises(ValueError, match="floating-point logits"):
        top_k_filter(torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"shape \(B, V\)"):
        sample(torch.zeros(3))
