"""MultiHeadAttention against nn.MultiheadAttention (copied weights) and a naive reference."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.nn import MultiHeadAttention, key_padding_mask
from mmcourse.nn.attention import merge_masks

matplotlib.use("Agg")
F64 = torch.float64


def pair(E: int = 16, H: int = 4, kdim: int | None = None, vdim: int | None = None,
         bias: bool = True, dtype: torch.dtype = F64, seed: int = 0):
    """A torch reference and our module with the same weights."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=vdim, bias=bias)
    ref = ref.to(dtype)
    ours = MultiHeadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias).to(dtype)
    return ref, ours.load_from_torch(ref)


def param_grads(ref: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """The reference's parameter gradients, named as in MultiHeadAttention."""
    E = ref.embed_dim
    if ref.in_proj_weight is not None:
        w = dict(zip("qkv", ref.in_proj_weight.grad.split(E), strict=True))
    else:
        w = {"q": ref.q_proj_weight.grad, "k": ref.k_proj_weight.grad, "v": ref.v_proj_weight.grad}
    grads = {f"{n}_proj.weight": g for n, g in w.items()}
    if ref.in_proj_bias is not None:
        for n, g in zip("qkv", ref.in_proj_bias.grad.split(E), strict=True):
            grads[f"{n}_proj.bias"] = g
        grads["out_proj.bias"] = ref.out_proj.bias.grad
    grads["out_proj.weight"] = ref.out_proj.weight.grad
    return grads


MASKS = ["none", "padding", "bool", "float", "causal", "padding+causal", "batch3d", "heads4d"]


def make_mask(kind: str, B: int, H: int, T_q: int, T_k: int, seed: int = 1):
    """(kwargs for ours, kwargs for nn.MultiheadAttention) for the same masking."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T_k + 1, (B,), generator=g)
    kpm = key_padding_mask(lengths, T_k)
    blocked = torch.rand(B, H, T_q, T_k, generator=g) < 0.3
    blocked[..., 0] = False  # keep one key per query, so the reference stays finite
    causal_block = torch.ones(T_q, T_k, dtype=torch.bool).triu(1)
    if kind == "none":
        return {}, {}
    if kind == "padding":
        return {"key_padding_mask": kpm}, {"key_padding_mask": kpm}
    if kind == "bool":
        return {"attn_mask": blocked[0, 0]}, {"attn_mask": blocked[0, 0]}
    if kind == "float":
        m = torch.randn(T_q, T_k, generator=g, dtype=F64)
        return {"attn_mask": m}, {"attn_mask": m}
    if kind == "causal":
        return {"is_causal": True}, {"attn_mask": causal_block}
    if kind == "padding+causal":
        kpm[:, 0] = False
        return ({"key_padding_mask": kpm, "is_causal": True},
                {"key_padding_mask": kpm, "attn_mask": causal_block})
    if kind == "batch3d":  # ours: (B, T_q, T_k); torch: (B*H, T_q, T_k)
        m = blocked[:, 0]
        return {"attn_mask": m}, {"attn_mask": m.repeat_interleave(H, dim=0)}
    if kind == "heads4d":
        return {"attn_mask": blocked}, {"attn_mask": blocked.reshape(B * H, T_q, T_k)}
    raise ValueError(kind)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_equals_torch_mha_values_and_grads(mask: str, need_weights: bool, cross: bool) -> None:
    B, H, E, T_q = 3, 4, 16, 5
    T_k = 7 if cross else T_q
    kdim, vdim = (12, 10) if cross else (None, None)
    ref, ours = pair(E, H, kdim, vdim)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, T_q, E, generator=g, dtype=F64, requires_grad=True)
    k = torch.randn(B, T_k, kdim or E, generator=g, dtype=F64, requires_grad=True) if cross else x
    v = torch.randn(B, T_k, vdim or E, generator=g, dtype=F64, requires_grad=True) if cross else x
    ours_kw, ref_kw = make_mask(mask, B, H, T_q, T_k)

    out_ref, w_ref = ref(x, k, v, need_weights=True, average_attn_weights=False, **ref_kw)
    out, w = ours(x, k, v, need_weights=need_weights, **ours_kw)
    torch.testing.assert_close(out, out_ref)
    if need_weights:
        torch.testing.assert_close(w, w_ref)
    else:
        assert w is None

    dy = torch.randn(out.shape, generator=g, dtype=F64)
    inputs = [x, k, v] if cross else [x]
    grads_ref = torch.autograd.grad(out_ref, inputs, dy, retain_graph=True)
    grads = torch.autograd.grad(out, inputs, dy, retain_graph=True)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)
    (out_ref * dy).sum().backward()
    (out * dy).sum().backward()
    expected = param_grads(ref)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=f"gradient of {name}")


def reference_attention(q, k, v, allowed):
    """Naive attention with the documented rule: a query with no allowed key gives zero."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T_q, T_k)
    scores = scores.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows: NaN -> 0
    return w @ v, w


@st.composite
def attention_cases(draw):
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 3))
    d_k = draw(st.integers(1, 4))
    T_q = draw(st.integers(1, 6))
    T_k = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    use_padding = draw(st.booleans())
    use_mask = draw(st.booleans())
    causal = draw(st.booleans())
    need_weights = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return B, H, d_k, T_q, T_k, dtype, use_padding, use_mask, causal, need_weights, seed


@settings(max_examples=40, deadline=None)
@given(attention_cases())
def test_property_matches_naive_reference(case) -> None:
    B, H, d_k, T_q, T_k, dtype, use_padding, use_mask, causal, need_weights, seed = case
    E = H * d_k
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mha = MultiHeadAttention(E, H).to(dtype)
    x = torch.randn(B, T_q, E, generator=g).to(dtype)
    y = torch.randn(B, T_k, E, generator=g).to(dtype)
    kpm = torch.rand(B, T_k, generator=g) < 0.4 if use_padding else None  # may block all keys
    am = torch.rand(T_q, T_k, generator=g) < 0.4 if use_mask else None
    out, w = mha(x, y, key_padding_mask=kpm, attn_mask=am, is_causal=causal,
                 need_weights=need_weights)

    allowed = torch.ones(B, 1, T_q, T_k, dtype=torch.bool)
    if kpm is not None:
        allowed &= ~kpm[:, None, None, :]
    if am is not None:
        allowed &= ~am
    if causal:
        allowed &= torch.ones(T_q, T_k, dtype=torch.bool).tril()
    with torch.no_grad():
        q = mha.q_proj(x).view(B, T_q, H, d_k).transpose(1, 2).double()
        k = mha.k_proj(y).view(B, T_k, H, d_k).transpose(1, 2).double()
        v = mha.v_proj(y).view(B, T_k, H, d_k).transpose(1, 2).double()
        o_ref, w_ref = reference_attention(q, k, v, allowed)
        o_ref = mha.out_proj(o_ref.transpose(1, 2).reshape(B, T_q, E).to(dtype))
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {}
    assert out.dtype == dtype and out.shape == (B, T_q, E)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, o_ref, **tol)
    if need_weights:
        assert w.shape == (B, H, T_q, T_k)
        torch.testing.assert_close(w, w_ref.to(dtype), **tol)
        rows = w.sum(-1)  # each row sums to 1, or to 0 where every key is blocked
        expected_rows = allowed.any(-1).expand(B, H, T_q).to(dtype)
        torch.testing.assert_close(rows, expected_rows, **tol)


def test_fully_masked_query_gives_zero_attention_and_finite_grads() -> None:
    ref, ours = pair(E=8, H=2)
    x = torch.randn(2, 4, 8, dtype=F64, requires_grad=True)
    kpm = torch.tensor([[True] * 4, [False, False, True, True]])  # sample 0: every key is padding
    for need_weights in (False, True):
        out, w = ours(x, key_padding_mask=kpm, need_weights=need_weights)
        # a query with nothing to attend to: attention output 0, so the layer gives b^O
        torch.testing.assert_close(out[0], ours.out_proj.bias.expand(4, 8))
        if need_weights:
            assert (w[0] == 0).all()
        out_ref, _ = ref(x, x, x, key_padding_mask=kpm)
        assert torch.isnan(out_ref[0]).all()  # what plain softmax gives
        torch.testing.assert_close(out[1], out_ref[1])
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(grad).all()
        assert (grad[0] == 0).all()  # the blocked sample gets no gradient through attention


def test_fully_masked_row_float_mask() -> None:
    _, ours = pair(E=8, H=2)
    x = torch.randn(1, 3, 8, dtype=F64)
    m = torch.zeros(3, 3, dtype=F64)
    m[1] = float("-inf")
    for need_weights in (False, True):
        out, _ = ours(x, attn_mask=m, need_weights=need_weights)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0, 1], ours.out_proj.bias)


def test_gradcheck_both_paths() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).double()
    x = torch.randn(2, 3, 4, dtype=F64, requires_grad=True)
    y = torch.randn(2, 5, 4, dtype=F64, requires_grad=True)
    kpm = torch.tensor([[False] * 5, [False, False, True, True, True]])
    for need_weights in (False, True):
        def f(x, y, nw=need_weights):
            return mha(x, y, key_padding_mask=kpm, need_weights=nw)[0]

        assert torch.autograd.gradcheck(f, (x, y))


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5).double()
    x = torch.randn(2, 6, 8, dtype=F64)
    mha.eval()
    a, _ = mha(x)
    b, _ = mha(x, need_weights=True)
    torch.testing.assert_close(a, b)
    mha.train()
    for need_weights in (False, True):
        c, _ = mha(x, need_weights=need_weights)
        assert not torch.allclose(a, c)


def test_causal_blocks_the_future() -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).double()
    x = torch.randn(1, 6, 8, dtype=F64)
    x2 = x.clone()
    x2[:, 4:] += 10.0  # change only the future of positions 0..3
    a, w = mha(x, is_causal=True, need_weights=True)
    b, _ = mha(x2, is_causal=True)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    assert (w.triu(1) == 0).all()


def test_key_padding_mask_helper() -> None:
    m = key_padding_mask(torch.tensor([3, 1, 4]), 5)
    expected = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    assert key_padding_mask(torch.tensor([2, 3])).shape == (2, 3)
    with pytest.raises(TypeError, match="integer lengths"):
        key_padding_mask(torch.tensor([2.0, 3.0]))


def test_merge_masks_none_when_nothing_masked() -> None:
    assert merge_masks(2, 2, 3, 3) is None


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m(torch.randn(2, 3)), ValueError, r"expected query of shape \(B, T, 16\), got \(2, 3\)"),
        (lambda m: m(torch.randn(2, 3, 8)), ValueError, r"expected query of shape \(B, T, 16\), got \(2, 3, 8\)"),
        (lambda m: m(torch.randn(2, 3, 16), torch.randn(3, 4, 16)), ValueError,
         r"expected key of shape \(2, T, 16\), got \(3, 4, 16\)"),
        (lambda m: m(torch.randn(2, 3, 16), torch.randn(2, 4, 16), torch.randn(2, 5, 16)),
         ValueError, r"T_k = 4"),
        (lambda m: m(torch.randn(2, 3, 16), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
         ValueError, r"key_padding_mask of shape \(B, T_k\) = \(2, 3\), got \(2, 4\)"),
        (lambda m: m(torch.randn(2, 3, 16), key_padding_mask=torch.zeros(2, 3)),
         TypeError, "boolean key_padding_mask"),
        (lambda m: m(torch.randn(2, 3, 16), attn_mask=torch.zeros(4, 4, dtype=torch.bool)),
         ValueError, r"attn_mask of shape \(T_q, T_k\) = \(3, 3\)"),
        (lambda m: m(torch.randn(2, 3, 16), attn_mask=torch.zeros(3, 3, dtype=torch.int64)),
         TypeError, "boolean or float attn_mask"),
        (lambda m: m(torch.zeros(2, 3, 16, dtype=torch.int64)), TypeError, "floating-point"),
        (lambda m: m([[1.0]]), TypeError, "expected query as a tensor"),
    ],
)
def test_bad_input_names_the_expected_shape(call, error, message) -> None:
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(error, match=message):
        call(mha)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadAttention(8, 2, dropout=1.0)
    with pytest.raises(ValueError, match="expected nn.MultiheadAttention"):
        MultiHeadAttention(8, 2).load_from_torch(nn.MultiheadAttention(8, 4))
    with pytest.raises(ValueError, match="bias"):
        MultiHeadAttention(8, 2).load_from_torch(nn.MultiheadAttention(8, 2, bias=False))


def test_no_bias_copies() -> None:
    ref, ours = pair(E=8, H=2, bias=False)
    x = torch.randn(2, 3, 8, dtype=F64)
    torch.testing.assert_close(ours(x)[0], ref(x, x, x)[0])


def test_plot_attention_shows_the_weights() -> None:
    from mmcourse.viz.attention import plot_attention, plot_attention_heads

    w = torch.softmax(torch.randn(3, 4), dim=-1)
    fig = plot_attention(w, keys=list("abcd"), queries=list("xyz"), annotate=True)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (3, 4)
    torch.testing.assert_close(torch.as_tensor(shown.data), w.double())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("abcd")
    fig = plot_attention(w, cell_labels=[["p", "q"], [], ["r"]])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["p", "q", "r"]
    with pytest.raises(ValueError, match="3 rows of cell labels"):
        plot_attention(w, cell_labels=[["p"]])
    fig = plot_attention_heads(torch.rand(2, 4, 4), tokens=list("abcd"))
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match=r"\(T_q, T_k\)"):
        plot_attention(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="expected 4 tokens"):
        plot_attention_heads(torch.rand(2, 4, 4), tokens=list("abc"))
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(64, 4).eval()
    x = torch.randn(4, 33, 64)
    y = torch.randn(4, 17, 64)
    kpm = key_padding_mask(torch.tensor([17, 5, 1, 9]), 17)
    kpm[2] = True  # a sample with every key padded: defined as zero attention output
    expected = {
        (causal, nw): mha(x, y if not causal else x, key_padding_mask=None if causal else kpm,
                          is_causal=causal, need_weights=nw)[0]
        for causal in (False, True) for nw in (False, True)
    }
    gpu = mha.to("cuda", dtype)
    tol = {"atol": 2e-2, "rtol": 2e-2} if dtype == torch.bfloat16 else {"atol": 1e-4, "rtol": 1e-4}
    for (causal, nw), e in expected.items():
        xs, ys = x.to("cuda", dtype), (x if causal else y).to("cuda", dtype)
        out, _ = gpu(xs, ys, key_padding_mask=None if causal else kpm.cuda(), is_causal=causal,
                     need_weights=nw)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.float().cpu(), e, **tol)


def test_key_padding_mask_refuses_lengths_beyond_t() -> None:
    with pytest.raises(ValueError, match=r"expected lengths in \[0, T = 4\], got min 2, max 6"):
        key_padding_mask(torch.tensor([2, 6]), 4)
    with pytest.raises(ValueError, match=r"expected lengths in \[0, T = 4\], got min -1, max 2"):
        key_padding_mask(torch.tensor([-1, 2]), 4)
    assert key_padding_mask(torch.tensor([0, 4]), 4)[0].all()  # an empty sequence: all padding


@pytest.mark.parametrize("big", [-1e4, -1e9, torch.finfo(F64).min])
def test_large_negative_float_mask_blocks_a_whole_row_like_minus_inf(big: float) -> None:
    _, ours = pair(E=8, H=2)
    x = torch.randn(1, 3, 8, dtype=F64)
    inf_mask, big_mask = torch.zeros(3, 3, dtype=F64), torch.zeros(3, 3, dtype=F64)
    inf_mask[1], big_mask[1] = float("-inf"), big  # query 1 may attend to nothing
    inf_mask[2, 0], big_mask[2, 0] = float("-inf"), big  # query 2: key 0 blocked
    for need_weights in (False, True):
        out_inf, w_inf = ours(x, attn_mask=inf_mask, need_weights=need_weights)
        out_big, w_big = ours(x, attn_mask=big_mask, need_weights=need_weights)
        torch.testing.assert_close(out_big, out_inf)
        torch.testing.assert_close(out_big[0, 1], ours.out_proj.bias)  # zero attention output
        if need_weights:
            torch.testing.assert_close(w_big, w_inf)
            assert (w_big[0, :, 1] == 0).all()


def test_traces_without_graph_break_for_any_batch_size() -> None:
    """Under torch.compile the batch axis may be symbolic: checks must not turn it into text."""
    torch._dynamo.reset()
    mha = MultiHeadAttention(8, 2)
    x, y = torch.randn(3, 4, 8), torch.randn(3, 5, 8)
    torch._dynamo.mark_dynamic(x, 0)
    torch._dynamo.mark_dynamic(y, 0)
    explained = torch._dynamo.explain(mha)(x, y, need_weights=True)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
