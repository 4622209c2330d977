"""The setup chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from mmcourse import check
from mmcourse.check.basics import trim_silence_reference


def test_trim_silence_reference_passes_and_keeps_quiet_dips_inside():
    assert check.trim_silence(trim_silence_reference).startswith("✓")
    x = torch.tensor([0.0, 0.001, 1.0, 0.0, 0.0, -0.5, 0.002, 0.0])
    assert trim_silence_reference(x, 0.1).tolist() == [1.0, 0.0, 0.0, -0.5]


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, th: x[x.abs() >= th * x.abs().max()], "also inside the clip"),
    (lambda x, th: trim_silence_reference(x, th)[:-1], "one past its index"),
])
def test_trim_silence_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.trim_silence(wrong)


def test_minmax_over_the_whole_batch_is_caught():
    with pytest.raises(check.CheckFailure, match="entries differ"):
        check.minmax_scale(lambda x: (x - x.min()) / (x.max() - x.min()))
