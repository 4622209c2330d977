"""The decoder (mmcourse.nn.decoder): equal to nn.TransformerDecoderLayer, cached = uncached, and
a padded batch computed as each sequence alone."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.nn import KVCache, TextDecoder, TransformerDecoderLayer
from mmcourse.nn.decoder import causal_mask

F64 = torch.float64


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_equals_torch_values_and_gradients(norm_first, activation):
    torch.manual_seed(0)
    E, H, B, T, S = 16, 4, 3, 5, 7
    ref = nn.TransformerDecoderLayer(E, H, 24, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).double()
    for p in ref.parameters():  # LayerNorm weights away from 1 and biases away from 0
        nn.init.normal_(p, std=0.5)
    mine = TransformerDecoderLayer(E, H, 24, dropout=0.0, activation=activation,
                                   norm_first=norm_first).double().load_from_torch(ref)
    x = torch.randn(B, T, E, dtype=F64, requires_grad=True)
    m = torch.randn(B, S, E, dtype=F64, requires_grad=True)
    mpad = torch.zeros(B, S, dtype=torch.bool)
    mpad[1, 4:] = True
    out = mine(x, m, memory_key_padding_mask=mpad)
    expected = ref(x, m, tgt_mask=causal_mask(T, T), memory_key_padding_mask=mpad)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, m), g)
    grads_ref = torch.autograd.grad(expected, (x, m), g)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_causal_mask_aligns_the_queries_with_the_last_keys():
    assert torch.equal(causal_mask(4, 4), ~torch.ones(4, 4, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(2, 5), torch.tensor([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]).bool())
    with pytest.raises(ValueError, match="at most as many queries as keys"):
        causal_mask(3, 2)


def _model(seed, V, E, H, L, cross, norm_first, max_len=24):
    torch.manual_seed(seed)
    m = TextDecoder(V, E, H, L, ffn_dim=2 * E, max_len=max_len, cross_attention=cross,
                    norm_first=norm_first).double().eval()
    for p in m.parameters():
        nn.init.normal_(p, std=0.3)
    return m


@st.composite
def _case(draw):
    B, H = draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 4]))
    E = H * draw(st.integers(1, 4))
    T = draw(st.integers(1, 9))
    cross, norm_first = draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    padding = torch.rand(B, T, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.6]))
    S = draw(st.integers(1, 5))
    mpad = torch.rand(B, S, generator=g) < 0.3 if draw(st.booleans()) else None
    chunks = []
    while sum(chunks) < T:
        chunks.append(min(draw(st.integers(1, 3)), T - sum(chunks)))
    return dict(B=B, H=H, E=E, T=T, S=S, cross=cross, norm_first=norm_first, seed=seed,
                padding=padding, mpad=mpad, chunks=chunks, L=draw(st.integers(1, 2)))


@settings(max_examples=60, deadline=None)
@given(_case())
def test_cached_decoding_equals_full_recomputation(c):
    V = 7
    m = _model(c["seed"], V, c["E"], c["H"], c["L"], c["cross"], c["norm_first"])
    g = torch.Generator().manual_seed(c["seed"])
    tokens = torch.randint(0, V, (c["B"], c["T"]), generator=g)
    memory = torch.randn(c["B"], c["S"], c["E"], generator=g, dtype=F64) if c["cross"] else None
    mpad = c["mpad"] if c["cross"] else None
    pad = c["padding"]
    full = m(tokens, memory, key_padding_mask=pad, memory_key_padding_mask=mpad)
    cache, parts, i = m.new_cache(), [], 0
    for n in c["chunks"]:  # the same tokens fed a few at a time
        parts.append(m(tokens[:, i : i + n], memory, key_padding_mask=pad[:, i : i + n],
                       memory_key_padding_mask=mpad, cache=cache))
        i += n
    torch.testing.assert_close(torch.cat(parts, dim=1), full)
    assert cache.length == c["T"]
    assert all(layer.k.shape[2] == c["T"] for layer in cache.layers)


@settings(max_examples=40, deadline=None)
@given(_case())
def test_a_padded_batch_is_computed_as_each_sequence_alone(c):
    V = 7
    m = _model(c["seed"], V, c["E"], c["H"], c["L"], c["cross"], c["norm_first"])
    g = torch.Generator().manual_seed(c["seed"] + 1)
    tokens = torch.randint(0, V, (c["B"], c["T"]), generator=g)
    memory = torch.randn(c["B"], c["S"], c["E"], generator=g, dtype=F64) if c["cross"] else None
    mpad = c["mpad"] if c["cross"] else None
    pad = c["padding"]
    out = m(tokens, memory, key_padding_mask=pad, memory_key_padding_mask=mpad)
    for b in range(c["B"]):
        keep = ~pad[b]
        if not keep.any():
            continue
        mem_b = None
        if memory is not None:  # the memory without its padding
            mem_b = memory[b : b + 1] if mpad is None else memory[b : b + 1, ~mpad[b]]
            if mem_b.shape[1] == 0:
                continue
        alone = m(tokens[b : b + 1, keep], mem_b)
        torch.testing.assert_close(out[b, keep], alone[0])


def test_reorder_selects_rows():
    m = _model(0, 5, 8, 2, 1, False, True)
    tokens = torch.randint(0, 5, (3, 4))
    cache = m.new_cache()
    m(tokens, cache=cache)
    k = cache.layers[0].k.clone()
    cache.reorder(torch.tensor([2, 2, 0]))
    torch.testing.assert_close(cache.layers[0].k, k[[2, 2, 0]])
    assert cache.padding.shape == (3, 4) and isinstance(cache, KVCache)


def test_positions_skip_padding():
    m = _model(0, 5, 8, 2, 1, False, True)
    pad = torch.tensor([[True, True, False, False], [False, False, False, False]])
    assert m.positions(pad).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_clear_errors():
    m = _model(0, 5, 8, 2, 1, False, True, max_len=4)
    with pytest.raises(ValueError, match="expected no memory"):
        m(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, 8, dtype=F64))
    with pytest.raises(ValueError, match="max_len = 4"):
        m(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tokens of shape"):
        m(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="key_padding_mask of shape"):
        m(torch.zeros(1, 2, dtype=torch.long), key_padding_mask=torch.zeros(1, 3, dtype=torch.bool))
    c = _model(0, 5, 8, 2, 1, True, True)
    with pytest.raises(ValueError, match=r"expected a memory \(B, S, d_model\)"):
        c(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="memory of shape"):
        c(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, 6, dtype=F64))
    with pytest.raises(ValueError, match="positive int"):
        TextDecoder(0)
    with pytest.raises(ValueError, match="has none"):
        TransformerDecoderLayer(8, 2, cross_attention=False).load_from_torch(
            nn.TransformerDecoderLayer(8, 2, batch_first=True))
