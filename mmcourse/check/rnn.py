"""Checkers for the recurrent chapter: an LSTM step with projection, padded reversal, masked mean.

The LSTM reference is PyTorch's own ``nn.LSTM`` (with ``proj_size``) called with the learner's
weights through ``torch.func.functional_call``, so values and gradients are compared with the
library itself. When an answer fails, the checker also tries the usual mistakes (the swapped
cell update, a wrong gate order, a flip over the padding, a mean over the padding) and names
the one that matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from mmcourse.check.comparison import Passed, random_cases
from mmcourse.check.hints import compare_with_hints

Fn = Callable[..., Any]


def _check_with_hints(
    fn: Fn, reference: Callable, cases: list, variants: dict[str, Callable], name: str
) -> Passed:
    return compare_with_hints(fn, reference, cases, variants, name, atol=1e-8, rtol=1e-6,
                              grad=True)


# --- one LSTM step with a projection (nn.LSTM with proj_size) ---------------------------


def _lstm_proj_reference(x, h, c, W_ih, W_hh, b_ih, b_hh, W_hr):
    F_in, H, P = x.shape[-1], c.shape[-1], h.shape[-1]
    lstm = nn.LSTM(F_in, H, proj_size=P, batch_first=True, dtype=x.dtype)
    params = {
        "weight_ih_l0": W_ih,
        "weight_hh_l0": W_hh,
        "bias_ih_l0": b_ih,
        "bias_hh_l0": b_hh,
        "weight_hr_l0": W_hr,
    }
    _, (h_n, c_n) = functional_call(lstm, params, (x[:, None, :], (h[None], c[None])))
    return h_n[0], c_n[0]  # (B, P), (B, H)


def _lstm_proj_with(x, h, c, W_ih, W_hh, b_ih, b_hh, W_hr, *, order="ifgo", swapped=False):
    """The same step with gates stored in ``order``, optionally with the swapped cell update."""
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh  # (B, 4H)
    gate = dict(zip(order, z.chunk(4, dim=-1), strict=True))
    i, f, o = (torch.sigmoid(gate[k]) for k in "ifo")
    g = torch.tanh(gate["g"])
    c_new = f * g + i * c if swapped else f * c + i * g
    return (o * torch.tanh(c_new)) @ W_hr.T, c_new


def lstm_proj_step(fn: Fn) -> Passed:
    """``(x, h, c, W_ih, W_hh, b_ih, b_hh, W_hr) -> (h_new, c_new)``, as ``nn.LSTM(proj_size=P)``."""

    def make(gen: torch.Generator) -> list[torch.Tensor]:
        b, f, hid = (int(v) for v in torch.randint(1, 6, (3,), generator=gen))
        p = int(torch.randint(1, hid + 1, (1,), generator=gen)) if hid > 1 else 1
        if p == hid:  # PyTorch requires proj_size < hidden_size
            hid += 1
        shapes = [(b, f), (b, p), (b, hid), (4 * hid, f), (4 * hid, p), (4 * hid,), (4 * hid,)]
        shapes.append((p, hid))
        return [
            (torch.randn(s, generator=gen, dtype=torch.float64) * 0.7).requires_grad_()
            for s in shapes
        ]

    variants = {
        "the cell update is swapped (f_t multiplies the candidate, i_t the old cell; reading "
        "the i and f blocks in the wrong order gives the same); it must be "
        "c_t = f_t * c_{t-1} + i_t * g_t, with the blocks in PyTorch's order i, f, g, o": (
            lambda *a: _lstm_proj_with(*a, swapped=True)
        ),
        "the gates are read in the order i, f, o, g; PyTorch stores them as i, f, g, o": (
            lambda *a: _lstm_proj_with(*a, order="ifog")
        ),
    }
    cases = random_cases(make)
    return _check_with_hints(fn, _lstm_proj_reference, cases, variants, "lstm_proj_step")


# --- padding: reverse each sequence within its length, average over valid steps ----------


def _padded_case(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b, t, h = (int(v) for v in torch.randint(1, 7, (3,), generator=gen))
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    lengths[0] = max(1, t - 1) if t > 1 else 1  # at least one padded row when T > 1
    y = torch.randn(b, t, h, generator=gen, dtype=torch.float64) * 3
    return y.requires_grad_(), lengths


def _reverse_reference(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    rows = []
    for b, n in enumerate(lengths.tolist()):
        rows.append(torch.cat([x[b, :n].flip(0), x[b, n:]]))
    return torch.stack(rows)


def reverse_padded(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Passed:
    """Reverse the valid steps of each sequence of ``x`` (B, T, F); padding stays at the end."""
    variants = {
        "the whole time axis is flipped, so the padding moved to the front; reverse only the "
        "first lengths[b] steps of each row": lambda x, lengths: x.flip(1),
    }
    cases = random_cases(_padded_case)
    return _check_with_hints(fn, _reverse_reference, cases, variants, "reverse_padded")


def _mean_valid_reference(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.stack([y[b, :n].mean(dim=0) for b, n in enumerate(lengths.tolist())])


def _zeroed_sum_over_T(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    valid = torch.arange(y.shape[1]) < lengths[:, None]  # (B, T)
    return (y * valid[..., None]).sum(dim=1) / y.shape[1]


def mean_valid_steps(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Passed:
    """Mean of ``y`` (B, T, H) over the valid steps t < lengths[b]: (B, H)."""
    variants = {
        "the mean runs over all T steps, padding included; divide the sum over valid steps "
        "by each sequence's length": lambda y, lengths: y.mean(dim=1),
        "the padded steps are zeroed but the sum is divided by T instead of the length": (
            _zeroed_sum_over_T
        ),
    }
    cases = random_cases(_padded_case)
    return _check_with_hints(fn, _mean_valid_reference, cases, variants, "mean_valid_steps")
