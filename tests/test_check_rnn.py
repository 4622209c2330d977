"""The recurrent chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from mmcourse import check


def lstm_proj_step(x, h, c, W_ih, W_hh, b_ih, b_hh, W_hr, swapped=False, order="ifgo"):
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    gate = dict(zip(order, z.chunk(4, dim=-1), strict=True))
    i, f, o = (torch.sigmoid(gate[k]) for k in "ifo")
    g = torch.tanh(gate["g"])
    c = f * g + i * c if swapped else f * c + i * g
    return (o * torch.tanh(c)) @ W_hr.T, c


def reverse_padded(x, lengths):
    t = torch.arange(x.shape[1])
    src = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, src[..., None].expand(-1, -1, x.shape[2]))


def mean_valid_steps(y, lengths):
    mask = torch.arange(y.shape[1]) < lengths[:, None]
    return (y * mask[..., None]).sum(dim=1) / lengths[:, None].to(y.dtype)


def test_right_answers_pass():
    assert check.lstm_proj_step(lstm_proj_step).startswith("✓")
    assert check.reverse_padded(reverse_padded).startswith("✓")
    assert check.mean_valid_steps(mean_valid_steps).startswith("✓")


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda *a: lstm_proj_step(*a, swapped=True), "cell update is swapped"),
        (lambda *a: lstm_proj_step(*a, order="ifog"), "order i, f, o, g"),
        (lambda *a: lstm_proj_step(*a, order="figo"), "cell update is swapped"),  # the same
    ],
)
def test_lstm_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.lstm_proj_step(wrong)


def test_lstm_without_projection_fails_without_a_false_hint():
    def no_projection(x, h, c, W_ih, W_hh, b_ih, b_hh, W_hr):
        return lstm_proj_step(x, h, c, W_ih, W_hh, b_ih, b_hh, torch.eye(c.shape[1]))

    with pytest.raises(check.CheckFailure) as failure:
        check.lstm_proj_step(no_projection)
    assert "shape" in str(failure.value) and "Hint" not in str(failure.value)


def test_padding_mistakes_are_named():
    with pytest.raises(check.CheckFailure, match="padding moved to the front"):
        check.reverse_padded(lambda x, lengths: x.flip(1))
    with pytest.raises(check.CheckFailure, match="padding included"):
        check.mean_valid_steps(lambda y, lengths: y.mean(dim=1))


def test_detached_output_is_caught():
    def detached(y, lengths):
        return mean_valid_steps(y, lengths).detach()

    with pytest.raises(check.CheckFailure, match="not connected"):
        check.mean_valid_steps(detached)
