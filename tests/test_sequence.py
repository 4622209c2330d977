"""SequenceEncoder: padding never changes the result; shapes, directions, cells, errors, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import SequenceEncoder
from mmcourse.nn.sequence import check_lengths, length_mask

F_IN, H = 3, 4


def _encoder(
    cell: str, bidirectional: bool, pool: str, num_layers: int = 1, pack: bool | None = None
) -> SequenceEncoder:
    torch.manual_seed(0)
    enc = SequenceEncoder(
        F_IN, H, cell=cell, bidirectional=bidirectional, pool=pool, num_layers=num_layers, pack=pack
    )
    return enc.double().eval()


def _one_by_one(enc: SequenceEncoder, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """The reference: each sequence alone, cut to its length, no padding anywhere."""
    return torch.cat([enc(x[i : i + 1, :n], [n]) for i, n in enumerate(lengths)])


def _reference_pool(enc: SequenceEncoder, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """The same from ``nn.LSTM``/``nn.GRU`` called directly on each unpadded sequence."""
    rows = []
    for i, n in enumerate(lengths):
        out, _ = enc.rnn(x[i : i + 1, :n])  # (1, n, D*H)
        if enc.pool == "mean":
            rows.append(out.mean(dim=1))
        else:
            fwd = out[:, n - 1, :H]  # forward direction: its last step
            rows.append(fwd if not enc.bidirectional else torch.cat([fwd, out[:, 0, H:]], dim=-1))
    return torch.cat(rows)


@st.composite
def configs(draw) -> tuple[str, bool, str, bool | None]:
    cell = draw(st.sampled_from(["lstm", "gru"]))
    bidirectional = draw(st.booleans())
    pool = draw(st.sampled_from(["last", "mean"]))
    pack = True if bidirectional else draw(st.sampled_from([None, True]))  # None: the fast path
    return cell, bidirectional, pool, pack


@settings(max_examples=40, deadline=None)
@given(
    config=configs(),
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    extra=st.integers(0, 3),
    num_layers=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_padded_batch_equals_each_sequence_alone(config, lengths, extra, num_layers, seed):
    cell, bidirectional, pool, pack = config
    enc = _encoder(cell, bidirectional, pool, num_layers, pack)
    T = max(lengths) + extra
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), T, F_IN, generator=gen, dtype=torch.float64)
    for i, n in enumerate(lengths):  # garbage in the padding must not leak into the result
        x[i, n:] = 1e3 * torch.randn(T - n, F_IN, generator=gen, dtype=torch.float64)
    got = enc(x, torch.tensor(lengths))
    assert got.shape == (len(lengths), enc.out_dim)
    torch.testing.assert_close(got, _one_by_one(enc, x, lengths))
    if num_layers == 1:
        torch.testing.assert_close(got, _reference_pool(enc, x, lengths))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_shapes_and_out_dim(cell, bidirectional, pool):
    enc = SequenceEncoder(5, 6, cell=cell, bidirectional=bidirectional, pool=pool, num_layers=2)
    assert enc.out_dim == (12 if bidirectional else 6)
    x = torch.randn(3, 8, 5)
    assert enc(x, torch.tensor([8, 2, 5])).shape == (3, enc.out_dim)
    assert enc(x).shape == (3, enc.out_dim)  # no lengths: every sequence is full
    steps = enc.steps(x, [8, 2, 5])
    assert steps.shape == (3, 8, enc.out_dim)
    assert steps[1, 2:].abs().max() == 0 and steps[2, 5:].abs().max() == 0
    assert isinstance(enc.rnn, torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pool", ["last", "mean"])
def test_unpacked_fast_path_equals_packed(cell, pool):
    """One direction runs unpacked by default; forcing packing must give the same, grads too."""
    fast, packed = _encoder(cell, False, pool, 2), _encoder(cell, False, pool, 2, pack=True)
    assert not fast.pack and packed.pack
    x = torch.randn(4, 7, F_IN, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 1, 3, 5])
    got, expected = fast(x, lengths), packed(x, lengths)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(fast.steps(x, lengths), packed.steps(x, lengths))
    w = torch.randn_like(expected)
    (g_fast,) = torch.autograd.grad((got * w).sum(), x)
    (g_packed,) = torch.autograd.grad((expected * w).sum(), x)
    torch.testing.assert_close(g_fast, g_packed)


def test_last_pool_of_full_sequences_is_the_final_hidden_state():
    enc = _encoder("lstm", True, "last")
    x = torch.randn(2, 5, F_IN, dtype=torch.float64)
    out, (h_n, _) = enc.rnn(x)
    torch.testing.assert_close(enc(x), torch.cat([h_n[0], h_n[1]], dim=-1))
    torch.testing.assert_close(enc(x)[:, :H], out[:, -1, :H])


def test_padding_without_packing_would_differ():
    """The property tested above is not vacuous: an unpacked run over padding changes h_T."""
    enc = _encoder("gru", False, "last")
    x = torch.randn(2, 6, F_IN, dtype=torch.float64)
    _, h_unpacked = enc.rnn(x)  # runs over all 6 steps of both rows
    packed = enc(x, [6, 3])
    torch.testing.assert_close(packed[0], h_unpacked[-1, 0])
    assert not torch.allclose(packed[1], h_unpacked[-1, 1])


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([0, 3], r"every length in \[1, 5\]"),
        ([6, 3], r"every length in \[1, 5\]"),
        ([5, 3, 2], r"lengths of shape \(2,\)"),
        (torch.tensor([[5, 3]]), r"lengths of shape \(2,\)"),
    ],
)
def test_bad_lengths_name_what_was_expected(lengths, message):
    enc = SequenceEncoder(F_IN, H)
    with pytest.raises(ValueError, match=message):
        enc(torch.randn(2, 5, F_IN), lengths)


def test_bad_lengths_dtype_and_bad_x():
    enc = SequenceEncoder(F_IN, H)
    with pytest.raises(TypeError, match="integer lengths"):
        enc(torch.randn(2, 5, F_IN), torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match=r"x of shape \(B, T, 3\)"):
        enc(torch.randn(2, 5, 4), [5, 5])
    with pytest.raises(ValueError, match=r"x of shape \(B, T, 3\)"):
        enc(torch.randn(5, F_IN), [5])
    with pytest.raises(TypeError, match="expected x as a tensor"):
        enc([[1.0, 2.0, 3.0]], [1])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="expected cell in"):
        SequenceEncoder(3, 4, cell="rnn")
    with pytest.raises(ValueError, match="expected pool in"):
        SequenceEncoder(3, 4, pool="max")
    with pytest.raises(ValueError, match="hidden_dim to be a positive int"):
        SequenceEncoder(3, 0)
    with pytest.raises(ValueError, match="bidirectional encoder must pack"):
        SequenceEncoder(3, 4, bidirectional=True, pack=False)


def test_check_lengths_and_mask():
    assert check_lengths(None, 3, 7).tolist() == [7, 7, 7]
    lengths = check_lengths([1, 4], 2, 4)
    assert lengths.dtype == torch.int64
    assert length_mask(lengths, 4).tolist() == [[True, False, False, False], [True] * 4]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pool", ["last", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_flow_to_valid_steps_only(cell, pool, bidirectional):
    enc = _encoder(cell, bidirectional, pool, num_layers=2)
    x = torch.randn(3, 6, F_IN, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    enc(x, lengths).square().sum().backward()
    valid = length_mask(lengths, 6)  # (B, T)
    assert (x.grad.abs().sum(-1)[valid] > 0).all(), "every valid step must get a gradient"
    assert (x.grad[~valid] == 0).all(), "padded steps must get no gradient"
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradcheck(bidirectional):
    enc = _encoder("lstm", bidirectional, "mean")
    x = torch.randn(2, 4, F_IN, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: enc(x, [4, 2]), (x,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    enc = _encoder("lstm", True, "last").float()
    x = torch.randn(3, 6, F_IN)
    lengths = torch.tensor([6, 1, 4])
    expected = enc(x, lengths)
    got = enc.cuda()(x.cuda(), lengths.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-4)
