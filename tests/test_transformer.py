"""Encoder layer and stack against nn.TransformerEncoderLayer / nn.TransformerEncoder."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.nn import TransformerEncoder, TransformerEncoderLayer, key_padding_mask, masked_mean

F64 = torch.float64


def layer_pair(norm_first: bool, activation: str = "relu", seed: int = 0):
    torch.manual_seed(seed)
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).double()
    ours = TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                   norm_first=norm_first).double()
    return ref, ours.load_from_torch(ref)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
def test_layer_equals_torch_values_and_grads(norm_first: bool, activation: str, masking: str) -> None:
    ref, ours = layer_pair(norm_first, activation)
    x = torch.randn(3, 6, 16, dtype=F64, requires_grad=True)
    kpm = key_padding_mask(torch.tensor([6, 2, 4]), 6)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
    ref_kw = {"none": {}, "padding": {"src_key_padding_mask": kpm},
              "causal": {"src_mask": causal, "is_causal": True}}[masking]
    our_kw = {"none": {}, "padding": {"key_padding_mask": kpm}, "causal": {"is_causal": True}}[masking]
    # with grad enabled, nn.TransformerEncoderLayer takes its plain (not the fused) path
    y_ref, y = ref(x, **ref_kw), ours(x, **our_kw)
    torch.testing.assert_close(y, y_ref)
    dy = torch.randn_like(y)
    (gx_ref,) = torch.autograd.grad(y_ref, x, dy, retain_graph=True)
    (gx,) = torch.autograd.grad(y, x, dy, retain_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    (y_ref * dy).sum().backward()
    (y * dy).sum().backward()
    for name in ("linear1.weight", "linear2.bias", "norm1.weight", "norm2.bias",
                 "self_attn.out_proj.weight"):
        torch.testing.assert_close(ours.get_parameter(name).grad, ref.get_parameter(name).grad)
    w_q_grad = ref.self_attn.in_proj_weight.grad[:16]
    torch.testing.assert_close(ours.self_attn.q_proj.weight.grad, w_q_grad)


def test_ffn_formula() -> None:
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 with W_1 = linear1.weight.T, W_2 = linear2.weight.T."""
    _, ours = layer_pair(False)
    x = torch.randn(2, 3, 16, dtype=F64)
    W_1, b_1 = ours.linear1.weight.T, ours.linear1.bias  # (16, 32), (32,)
    W_2, b_2 = ours.linear2.weight.T, ours.linear2.bias  # (32, 16), (16,)
    expected = torch.clamp_min(x @ W_1 + b_1, 0) @ W_2 + b_2
    torch.testing.assert_close(ours.ffn(x), expected)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_torch_encoder(norm_first: bool) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True,
                                       norm_first=norm_first)
    final = nn.LayerNorm(16) if norm_first else None
    ref = nn.TransformerEncoder(layer, 2, norm=final, enable_nested_tensor=False).double()
    ours = TransformerEncoder(16, 2, 2, 24, dropout=0.0, norm_first=norm_first).double()
    ours.load_from_torch(ref)
    x = torch.randn(2, 5, 16, dtype=F64, requires_grad=True)
    kpm = key_padding_mask(torch.tensor([5, 3]), 5)
    y_ref = ref(x, src_key_padding_mask=kpm)
    y = ours(x, key_padding_mask=kpm)
    torch.testing.assert_close(y, y_ref)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_gradcheck_layer() -> None:
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(4, 2, 6, dropout=0.0).double()
    x = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    kpm = torch.tensor([[False, False, False], [False, True, True]])
    assert torch.autograd.gradcheck(lambda x: layer(x, key_padding_mask=kpm), (x,))


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=4), seed=st.integers(0, 999),
       pool=st.sampled_from(["none", "mean"]))
def test_padding_never_leaks(lengths: list[int], seed: int, pool: str) -> None:
    """What the padded positions hold changes nothing at the valid positions or in the pool."""
    torch.manual_seed(seed)
    enc = TransformerEncoder(8, 2, 2, 16, dropout=0.0, pool=pool).double()
    T = max(lengths)
    kpm = key_padding_mask(torch.tensor(lengths), T)
    x = torch.randn(len(lengths), T, 8, dtype=F64)
    junk = x.masked_fill(kpm[..., None], 0.0) + 100.0 * kpm[..., None] * torch.randn_like(x)
    a, b = enc(x, key_padding_mask=kpm), enc(junk, key_padding_mask=kpm)
    if pool == "none":
        valid = ~kpm
        torch.testing.assert_close(a[valid], b[valid])
    else:
        torch.testing.assert_close(a, b)
    for i, n in enumerate(lengths):  # and each sequence alone, unpadded, gives the same
        alone = enc(x[i : i + 1, :n])
        torch.testing.assert_close(alone[0], a[i, :n] if pool == "none" else a[i])


def test_pools() -> None:
    torch.manual_seed(0)
    enc = TransformerEncoder(8, 2, 1, dropout=0.0)
    x = torch.randn(3, 4, 8)
    kpm = key_padding_mask(torch.tensor([4, 1, 2]), 4)
    full = enc(x, key_padding_mask=kpm)  # (3, 4, 8)
    enc.pool = "mean"
    pooled = enc(x, key_padding_mask=kpm)
    torch.testing.assert_close(pooled[1], full[1, 0])
    torch.testing.assert_close(pooled[2], full[2, :2].mean(0))
    enc.pool = "first"
    torch.testing.assert_close(enc(x, key_padding_mask=kpm), full[:, 0])


def test_masked_mean() -> None:
    x = torch.arange(12.0).view(2, 3, 2)
    kpm = torch.tensor([[False, True, True], [True, True, True]])
    out = masked_mean(x, kpm)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # all padding -> 0
    torch.testing.assert_close(masked_mean(x), x.mean(1))
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(B, T\) = \(2, 3\)"):
        masked_mean(x, torch.zeros(2, 2, dtype=torch.bool))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pool"):
        TransformerEncoder(8, 2, 1, pool="max")
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="norm_first"):
        TransformerEncoderLayer(8, 2).load_from_torch(
            nn.TransformerEncoderLayer(8, 2, batch_first=True, norm_first=True))
    with pytest.raises(ValueError, match="activation 'relu'"):
        TransformerEncoderLayer(8, 2).load_from_torch(
            nn.TransformerEncoderLayer(8, 2, batch_first=True, activation="gelu"))
    with pytest.raises(ValueError, match=r"expected query of shape \(B, T, 8\)"):
        TransformerEncoderLayer(8, 2)(torch.randn(2, 3, 4))
