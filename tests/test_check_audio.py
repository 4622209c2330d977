"""The audio chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch

from mmcourse import check
from mmcourse.check.audio import _overlap_add, fir_response_db_reference, istft_reference


def test_references_pass():
    assert check.istft(istft_reference).startswith("✓")
    assert check.istft(_overlap_add).startswith("✓")  # the overlap-add formula = torch.istft
    assert check.fir_response_db(fir_response_db_reference).startswith("✓")


@pytest.mark.parametrize("kwargs, hint", [
    ({"envelope_power": None}, "not divided by the window envelope"),
    ({"envelope_power": 1}, "windowed twice"),
    ({"trim": False}, "centre padding is still there"),
])
def test_istft_mistakes_are_named(kwargs, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.istft(lambda *a: _overlap_add(*a, **kwargs))


def test_fir_response_in_power_decibels_is_named():
    def power_db(b, n_fft):
        return 10 * torch.log10(torch.fft.rfft(b, n=n_fft).abs())

    with pytest.raises(check.CheckFailure, match="20 log10"):
        check.fir_response_db(power_db)


def test_fir_response_of_the_full_spectrum_fails_on_the_shape():
    def full(b, n_fft):
        return 20 * torch.log10(torch.fft.fft(b, n=n_fft).abs())

    with pytest.raises(check.CheckFailure, match="shape"):
        check.fir_response_db(full)


def test_pre_emphasis_gains_are_the_closed_form():
    alpha = 0.97
    gains = fir_response_db_reference(torch.tensor([1.0, -alpha], dtype=torch.float64), 256)
    assert abs(gains[0].item() - 20 * math.log10(1 - alpha)) < 1e-9  # 0 Hz
    assert abs(gains[-1].item() - 20 * math.log10(1 + alpha)) < 1e-9  # Nyquist
