"""Dilated causal convolution: equal to F.conv1d, causal, its receptive field, its queue."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import CausalConv1d, ConvQueue, receptive_field


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 4),
    d=st.integers(1, 5),
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 3),
    T=st.integers(1, 20),
    seed=st.integers(0, 1000),
)
def test_equals_conv1d_on_left_padded_input(k, d, c_in, c_out, T, seed) -> None:
    torch.manual_seed(seed)
    conv = CausalConv1d(c_in, c_out, k, d).double()
    x = torch.randn(2, c_in, T, dtype=torch.float64)
    expected = F.conv1d(F.pad(x, ((k - 1) * d, 0)), conv.weight, conv.bias, dilation=d)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape == (2, c_out, T)


def _stack(kernels: list[int], dilations: list[int]) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers = []
    for k, d in zip(kernels, dilations, strict=True):
        layers += [CausalConv1d(2, 2, k, d).double(), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)


@settings(max_examples=30, deadline=None)
@given(layers=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 8)), min_size=1, max_size=4))
def test_gradient_footprint_is_causal_and_as_wide_as_the_formula(layers) -> None:
    kernels, dilations = [k for k, _ in layers], [d for _, d in layers]
    net = _stack(kernels, dilations)
    rf = receptive_field(kernels, dilations)
    T = rf + 10
    t = T - 3
    x = torch.randn(1, 2, T, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net(x)[0, :, t].sum(), x)
    touched = (g[0] != 0).any(0)  # (T,) inputs that move output t
    assert not bool(touched[t + 1 :].any()), "an output depends on a later input"
    assert bool(touched[t]) and bool(touched[t - rf + 1])
    assert not bool(touched[: t - rf + 1].any())


def test_doubling_dilations_reach_every_past_sample_exactly_once() -> None:
    # all weights 1, no bias, no nonlinearity: y[t] = sum over paths; one path per offset
    L = 5
    convs = [CausalConv1d(1, 1, 2, 2**i, bias=False).double() for i in range(L)]
    for conv in convs:
        torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 2**L + 4, dtype=torch.float64)
    x[0, 0, 2] = 1.0  # an impulse
    y = x
    for conv in convs:
        y = conv(y)
    expected = torch.zeros_like(x)
    expected[0, 0, 2 : 2 + 2**L] = 1.0
    torch.testing.assert_close(y, expected)
    assert receptive_field(2, [2**i for i in range(L)]) == 2**L


def test_step_with_a_queue_equals_the_full_convolution() -> None:
    torch.manual_seed(1)
    conv = CausalConv1d(3, 4, kernel_size=3, dilation=2).double()
    x = torch.randn(2, 3, 15, dtype=torch.float64)
    q = conv.new_queue(2)
    assert q.buffer.dtype == torch.float64 and q.size == 5
    steps = []
    for t in range(15):
        q.push(x[:, :, t])
        steps.append(conv.step(q.taps()))
        torch.testing.assert_close(q.window(), F.pad(x, (4, 0))[:, :, t : t + 5])
    torch.testing.assert_close(torch.stack(steps, dim=2), conv(x))


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="dilation"):
        CausalConv1d(1, 1, 2, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        CausalConv1d(1, 1, 0)
    with pytest.raises(ValueError, match=r"\(B, 3, T\)"):
        CausalConv1d(3, 1)(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"taps of shape \(B, 3, 2\)"):
        CausalConv1d(3, 1).step(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="one kernel size per dilation"):
        receptive_field([2, 2], [1, 2, 4])
    with pytest.raises(ValueError, match="every dilation"):
        receptive_field(2, [1, -2])
    q = ConvQueue(2, 3, 2, 4)
    with pytest.raises(ValueError, match=r"one step of shape \(2, 3\)"):
        q.push(torch.zeros(2, 3, 1))
