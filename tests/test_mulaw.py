"""mu-law companding: equal to torchaudio, exact inverses, class edges, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio.functional as AF
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import (
    mu_law_bin_edges,
    mu_law_compand,
    mu_law_decode,
    mu_law_encode,
    mu_law_expand,
    quantize_linear,
)

samples = st.lists(
    st.floats(-1.0, 1.0, allow_nan=False, width=32), min_size=1, max_size=64
)
channels = st.sampled_from([2, 3, 16, 255, 256, 1024])


@settings(max_examples=60, deadline=None)
@given(xs=samples, q=channels, double=st.booleans())
def test_encode_equals_torchaudio(xs: list[float], q: int, double: bool) -> None:
    x = torch.tensor(xs, dtype=torch.float64 if double else torch.float32)
    assert torch.equal(mu_law_encode(x, q), AF.mu_law_encoding(x, q))


@settings(max_examples=40, deadline=None)
@given(q=channels, seed=st.integers(0, 2**16))
def test_decode_equals_torchaudio(q: int, seed: int) -> None:
    k = torch.randint(0, q, (50,), generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(mu_law_decode(k, q), AF.mu_law_decoding(k, q))


@settings(max_examples=60, deadline=None)
@given(xs=samples, q=channels)
def test_expand_inverts_compand(xs: list[float], q: int) -> None:
    x = torch.tensor(xs, dtype=torch.float64)
    y = mu_law_compand(x, q)
    assert bool((y.abs() <= 1).all())
    torch.testing.assert_close(mu_law_expand(y, q), x, atol=1e-12, rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(xs=samples, q=channels)
def test_each_class_holds_the_samples_between_its_edges(xs: list[float], q: int) -> None:
    x = torch.tensor(xs, dtype=torch.float64)
    edges = mu_law_bin_edges(q)  # (q + 1,)
    k = mu_law_encode(x, q)
    near_an_edge = (x[:, None] - edges[None, :]).abs().min(1).values < 1e-9
    inside = (edges[k] <= x) & ((x < edges[k + 1]) | (k == q - 1))
    assert bool((inside | near_an_edge).all())
    # and the decoded value lies in its own class
    centre = mu_law_decode(k, q).double()
    assert bool(((edges[k] <= centre + 1e-6) & (centre <= edges[k + 1] + 1e-6)).all())


def test_edges_are_increasing_and_span_the_range() -> None:
    edges = mu_law_bin_edges(256)
    assert edges.shape == (257,)
    assert edges[0] == -1 and edges[-1] == 1
    assert bool((edges.diff() > 0).all())
    # steps are fine near zero and coarse near full scale: the point of companding
    widths = edges.diff()
    assert widths[128] < widths[-1] / 100


def test_mu_law_keeps_quiet_signals_that_linear_8_bit_loses() -> None:
    t = torch.arange(8000, dtype=torch.float64) / 8000
    for level_db in (0.0, -20.0, -40.0):
        x = 10 ** (level_db / 20) * torch.sin(2 * math.pi * 440 * t)
        snr_mu = 10 * torch.log10(x.square().mean() / (mu_law_decode(mu_law_encode(x)).double() - x).square().mean())
        snr_lin = 10 * torch.log10(x.square().mean() / (quantize_linear(x, 8) - x).square().mean())
        assert snr_mu > 30, (level_db, snr_mu)
        if level_db <= -20:  # linear loses 6 dB per 6 dB of level; mu-law holds its SNR
            assert snr_mu > snr_lin + (5 if level_db == -20 else 15), (level_db, snr_mu, snr_lin)


def test_quantize_linear_follows_the_6_db_per_bit_rule() -> None:
    t = torch.arange(8000, dtype=torch.float64) / 8000
    x = 0.5 * torch.sin(2 * math.pi * 997 * t)  # half scale: 6.02 dB below the rule's full scale
    for bits in (6, 8, 10):
        e = quantize_linear(x, bits) - x
        snr = 10 * torch.log10(x.square().mean() / e.square().mean()).item()
        assert abs(snr - (6.02 * bits + 1.76 - 6.02)) < 0.5
        steps = quantize_linear(x, bits) * 2**bits / 2
        torch.testing.assert_close(steps, steps.round())


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        mu_law_encode(torch.tensor([0.5, 1.5]))
    with pytest.raises(TypeError, match="floating-point"):
        mu_law_encode(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="quantization_channels"):
        mu_law_encode(torch.tensor([0.5]), 1)
    with pytest.raises(ValueError, match="quantization_channels"):
        mu_law_decode(torch.tensor([3]), 256.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"classes in \[0, 255\]"):
        mu_law_decode(torch.tensor([0, 256]))
    with pytest.raises(ValueError, match="bits"):
        quantize_linear(torch.tensor([0.5]), 0)
