"""Sinusoidal positional encoding: the formula, its relative-position property, the module."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import PositionalEncoding, sinusoidal_encoding


@settings(max_examples=30, deadline=None)
@given(T=st.integers(0, 40), d=st.integers(1, 17))
def test_matches_the_formula_entry_by_entry(T: int, d: int) -> None:
    pe = sinusoidal_encoding(T, d, dtype=torch.float64)
    assert pe.shape == (T, d)
    for pos in range(0, T, 7):
        for j in range(d):
            angle = pos / 10000 ** ((j - j % 2) / d)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert pe[pos, j].item() == pytest.approx(expected, abs=1e-12)


def test_dot_product_depends_only_on_the_offset() -> None:
    pe = sinusoidal_encoding(64, 32, dtype=torch.float64)
    sim = pe @ pe.T  # (64, 64)
    for k in range(5):
        diag = torch.diagonal(sim, offset=k)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag))


def test_shift_is_a_rotation() -> None:
    d, k = 16, 3
    pe = sinusoidal_encoding(40, d, dtype=torch.float64)
    w = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    c, s = torch.cos(k * w), torch.sin(k * w)
    sin_, cos_ = pe[:, 0::2], pe[:, 1::2]
    # sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b - sin a sin b
    torch.testing.assert_close(pe[k:, 0::2], (sin_ * c + cos_ * s)[:-k])
    torch.testing.assert_close(pe[k:, 1::2], (cos_ * c - sin_ * s)[:-k])


def test_module_adds_the_table() -> None:
    pos = PositionalEncoding(8, max_len=10)
    x = torch.randn(2, 6, 8)
    torch.testing.assert_close(pos(x), x + sinusoidal_encoding(6, 8))
    longer = torch.zeros(1, 15, 8, dtype=torch.float64)  # beyond max_len: computed afresh
    torch.testing.assert_close(pos(longer)[0], sinusoidal_encoding(15, 8, dtype=torch.float64))
    assert pos(longer).dtype == torch.float64
    assert "pe" not in pos.state_dict()


def test_module_rejects_a_wrong_width() -> None:
    pos = PositionalEncoding(8)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 8\), got \(2, 5, 7\)"):
        pos(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, T, 8\), got \(5, 8\)"):
        pos(torch.randn(5, 8))
    with pytest.raises(ValueError, match="d > 0"):
        sinusoidal_encoding(4, 0)
