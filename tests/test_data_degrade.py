"""Degradations (mmcourse.data.degrade) against direct per-item references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.data.degrade import add_noise_segments, erase_square, noise_scale, pixel_noise


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 8), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_erase_square_matches_a_loop(side, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, 8, 8)).astype(np.float32) + 0.1
    corners = rng.random((n, 2))
    out = erase_square(images, side, corners)
    ref = images.copy()
    for i in range(n):
        top, left = int(corners[i, 0] * (9 - side)), int(corners[i, 1] * (9 - side))
        ref[i, :, top : top + side, left : left + side] = 0
    np.testing.assert_array_equal(out, ref)
    assert (out == 0).reshape(n, -1).sum(1).tolist() == [side * side] * n  # inside the image
    assert not np.shares_memory(out, images)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 400), min_size=1, max_size=6),
    st.floats(-20, 30),
    st.integers(0, 2**32 - 1),
)
def test_add_noise_segments_matches_per_segment_formula(lengths, snr_db, seed):
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x = rng.standard_normal(lengths.sum()) * np.repeat(rng.random(len(lengths)) + 0.1, lengths)
    z = rng.standard_normal(lengths.sum())
    out = add_noise_segments(x, offsets, lengths, snr_db, z)
    for s, m in zip(offsets, lengths, strict=True):
        seg = x[s : s + m]
        sigma = math.sqrt(np.mean(seg**2) / 10 ** (snr_db / 10))
        np.testing.assert_allclose(out[s : s + m], seg + sigma * z[s : s + m], rtol=1e-10)


def test_snr_is_met_for_long_signals():
    rng = np.random.default_rng(0)
    x = np.sin(np.linspace(0, 2000, 200_000))
    z = rng.standard_normal(len(x))
    for snr in (-10.0, 0.0, 15.0):
        noise = add_noise_segments(x, np.array([0]), np.array([len(x)]), snr, z) - x
        assert abs(10 * math.log10(np.mean(x**2) / np.mean(noise**2)) - snr) < 0.05
    assert noise_scale(4.0, 0.0) == pytest.approx(2.0)


def test_no_noise_at_infinite_snr_or_none():
    x, z = np.ones(10), np.ones(10)
    for snr in (math.inf, None):
        np.testing.assert_array_equal(
            add_noise_segments(x, np.array([0]), np.array([10]), snr, z), x
        )


def test_pixel_noise_clips_to_unit_range():
    rng = np.random.default_rng(0)
    images = rng.random((4, 1, 8, 8))
    out = pixel_noise(images, 2.0, rng.standard_normal(images.shape))
    assert out.min() >= 0 and out.max() <= 1 and not np.array_equal(out, images)
    np.testing.assert_array_equal(pixel_noise(images, 0.0, np.ones_like(images)), images)


def test_bad_input():
    with pytest.raises(ValueError, match="occlusion side in 0..8"):
        erase_square(np.zeros((2, 1, 8, 8)), 9, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"corners of shape \(2, 2\)"):
        erase_square(np.zeros((2, 1, 8, 8)), 2, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        pixel_noise(np.zeros((1, 1, 8, 8)), -1.0, np.zeros((1, 1, 8, 8)))
    with pytest.raises(ValueError, match="noise of shape"):
        add_noise_segments(np.zeros(5), np.array([0]), np.array([5]), 0.0, np.zeros(4))
