"""The text encoder (mmcourse.nn.text) and the text chapter's checkers (mmcourse.check.text):
shapes, padding invariance, gradients and errors of every backbone; the Naive Bayes reference
against scikit-learn; each checker passing a right answer and catching the usual slips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.naive_bayes import MultinomialNB

from mmcourse import check
from mmcourse.check.text import naive_bayes_fit, naive_bayes_predict
from mmcourse.nn import TextEncoder


@st.composite
def count_data(draw):
    n_classes = draw(st.integers(2, 5))
    v = draw(st.integers(1, 10))
    n = draw(st.integers(n_classes, 30))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=(n, v))
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
    rng.shuffle(y)
    alpha = draw(st.sampled_from([0.01, 0.5, 1.0, 3.0]))
    return x, y, n_classes, alpha


@settings(max_examples=40, deadline=None)
@given(count_data())
def test_naive_bayes_fit_matches_sklearn(data):
    x, y, n_classes, alpha = data
    ref = MultinomialNB(alpha=alpha).fit(x, y)
    log_prior, log_lik = naive_bayes_fit(torch.from_numpy(x), torch.from_numpy(y), n_classes, alpha)
    torch.testing.assert_close(log_prior, torch.from_numpy(ref.class_log_prior_))
    torch.testing.assert_close(log_lik, torch.from_numpy(ref.feature_log_prob_))
    scores = naive_bayes_predict(torch.from_numpy(x), log_prior, log_lik)
    torch.testing.assert_close(scores, torch.from_numpy(ref.predict_joint_log_proba(x)))
    # sklearn breaks ties by the first maximum, as argmax does
    assert (scores.argmax(1).numpy() == ref.predict(x)).all()


def test_naive_bayes_fit_likelihoods_are_distributions():
    x = torch.tensor([[2, 0, 1], [0, 3, 0], [1, 1, 1]])
    y = torch.tensor([0, 1, 0])
    log_prior, log_lik = naive_bayes_fit(x, y, 2, alpha=1.0)
    torch.testing.assert_close(log_prior.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(log_lik.exp().sum(1), torch.ones(2, dtype=torch.float64))
    # class 0 saw word 0 three times out of 6 tokens: (3 + 1) / (6 + 3)
    torch.testing.assert_close(log_lik[0, 0], torch.tensor(4 / 9, dtype=torch.float64).log())


def test_naive_bayes_fit_bad_input():
    with pytest.raises(ValueError, match=r"expected x of shape \(N, V\)"):
        naive_bayes_fit(torch.zeros(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"expected y of shape \(3,\)"):
        naive_bayes_fit(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="alpha"):
        naive_bayes_fit(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2, alpha=-1.0)


# ---------------------------------------------------------------------------------------------
# each checker: passes a right answer, catches a typical mistake


def emb_backward_right(ids, grad_out, V, padding_idx):
    onehot = F.one_hot(ids, V).to(grad_out.dtype)  # (B, T, V)
    grad = torch.einsum("btv,btd->vd", onehot, grad_out)
    grad[padding_idx] = 0
    return grad


def emb_backward_no_padding(ids, grad_out, V, padding_idx):
    return torch.einsum("btv,btd->vd", F.one_hot(ids, V).to(grad_out.dtype), grad_out)


def emb_backward_overwrites(ids, grad_out, V, padding_idx):
    grad = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype)
    grad[ids.flatten()] = grad_out.flatten(0, 1)  # repeated ids overwrite instead of adding up
    grad[padding_idx] = 0
    return grad


@pytest.mark.parametrize(
    "name, right",
    [
        ("embedding_backward", emb_backward_right),
    ],
)
def test_checker_passes(name, right):
    assert str(check.checker_for(name)(right)).startswith("✓")


@pytest.mark.parametrize(
    "name, wrong, message",
    [
        ("embedding_backward", emb_backward_no_padding, "entries differ"),
        ("embedding_backward", emb_backward_overwrites, "entries differ"),
    ],
)
def test_checker_catches(name, wrong, message):
    with pytest.raises(check.CheckFailure, match=message):
        check.checker_for(name)(wrong)


# ---------------------------------------------------------------------------------------------
# TextEncoder

BACKBONES = ["bag", "lstm", "gru", "transformer"]
V, PAD = 13, 0


def make_encoder(backbone: str, out_dim: int = 5, **kwargs) -> TextEncoder:
    torch.manual_seed(0)
    kwargs = {"embed_dim": 8, "hidden_dim": 6, "num_heads": 2, **kwargs}
    return TextEncoder(V, out_dim, backbone=backbone, padding_idx=PAD, **kwargs).double().eval()


def random_texts(n: int, seed: int = 0, max_len: int = 7) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=gen)
    return [torch.randint(1, V, (int(t),), generator=gen) for t in lengths]


def pad(texts: list[torch.Tensor], fill: int | None = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad with ``fill``; ``fill=None`` fills with random ids (padding must not matter)."""
    T = max(len(t) for t in texts)
    if fill is None:
        tokens = torch.randint(0, V, (len(texts), T), generator=torch.Generator().manual_seed(1))
    else:
        tokens = torch.full((len(texts), T), fill)
    for i, t in enumerate(texts):
        tokens[i, : len(t)] = t
    return tokens, torch.tensor([len(t) for t in texts])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_text_encoder_shape(backbone):
    enc = make_encoder(backbone, out_dim=11)
    tokens, lengths = pad(random_texts(4))
    out = enc(tokens, lengths)
    assert out.shape == (4, 11) and out.dtype == torch.float64
    assert torch.isfinite(out).all()
    assert enc.out_dim == 11


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("fill", [PAD, None], ids=["pad-id", "random-ids"])
def test_text_encoder_padding_invariance(backbone, fill):
    enc = make_encoder(backbone)
    texts = random_texts(6, seed=3)
    tokens, lengths = pad(texts, fill)
    batched = enc(tokens, lengths)
    alone = torch.cat([enc(t[None], torch.tensor([len(t)])) for t in texts])
    torch.testing.assert_close(batched, alone)
    # lengths=None means "no padding": the same as full lengths
    torch.testing.assert_close(enc(tokens), enc(tokens, torch.full((6,), tokens.shape[1])))


@pytest.mark.parametrize("backbone", ["lstm", "gru", "transformer"])
def test_text_encoder_word_order_matters(backbone):
    enc = make_encoder(backbone)
    tokens = torch.tensor([[3, 5, 7, 9]])
    flipped = tokens.flip(1)
    assert not torch.allclose(enc(tokens), enc(flipped))
    # the bag of embeddings ignores order by construction
    bag = make_encoder("bag")
    torch.testing.assert_close(bag(tokens), bag(flipped))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_text_encoder_gradients(backbone):
    enc = make_encoder(backbone, out_dim=3, embed_dim=4, hidden_dim=3)
    tokens, lengths = pad(random_texts(3, seed=5, max_len=4))
    params = dict(enc.named_parameters())

    def f(weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(enc, {**params, "embed.weight": weight}, (tokens, lengths))

    weight = enc.embed.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (weight,))
    # every parameter learns, except the pad row, which never does
    enc.zero_grad()
    enc(tokens, lengths).square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (enc.embed.weight.grad[PAD] == 0).all()
    used = tokens[tokens != PAD].unique()
    assert (enc.embed.weight.grad[used].abs().sum(1) > 0).all()


def test_text_encoder_bag_is_mean_of_valid_embeddings():
    enc = make_encoder("bag")
    tokens, lengths = pad(random_texts(5, seed=7), fill=None)
    e = enc.embed.weight
    means = torch.stack([e[t[:n]].mean(0) for t, n in zip(tokens, lengths, strict=True)])
    torch.testing.assert_close(enc(tokens, lengths), enc.proj(means))


def test_text_encoder_pad_row_is_zero():
    enc = TextEncoder(V, backbone="bag", padding_idx=2)
    assert (enc.embed.weight[2] == 0).all()


@pytest.mark.parametrize(
    "tokens, lengths, error, message",
    [
        (torch.ones(2, 3), None, TypeError, r"integer token ids .* \(B, T\)"),
        (torch.ones(3, dtype=torch.long), None, ValueError, r"\(B, T\), got \(3,\)"),
        (torch.ones(1, 2, 3, dtype=torch.long), None, ValueError, r"\(B, T\), got \(1, 2, 3\)"),
        ([[1, 2]], None, TypeError, r"\(B, T\)"),
        (torch.tensor([[1, V]]), None, ValueError, rf"\[0, {V}\)"),
        (torch.tensor([[1, -1]]), None, ValueError, rf"\[0, {V}\)"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([3]), ValueError, r"\(2,\)"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 4]), ValueError, r"\[1, 3\]"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 3]), ValueError, r"\[1, 3\]"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([2.0, 3.0]), TypeError, "integer lengths"),
    ],
)
def test_text_encoder_bad_input(tokens, lengths, error, message):
    enc = TextEncoder(V, backbone="bag")
    with pytest.raises(error, match=message):
        enc(tokens, lengths)


def test_text_encoder_bad_arguments():
    with pytest.raises(ValueError, match="expected backbone in"):
        TextEncoder(V, backbone="cnn")
    with pytest.raises(ValueError, match="vocab_size"):
        TextEncoder(0)
    with pytest.raises(ValueError, match=r"padding_idx in \[0, 13\)"):
        TextEncoder(V, padding_idx=13)
    with pytest.raises(ValueError, match="out_dim"):
        TextEncoder(V, out_dim=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backbone", BACKBONES)
def test_text_encoder_cuda_matches_cpu(backbone):
    enc = make_encoder(backbone).float()
    tokens, lengths = pad(random_texts(8, seed=11))
    cpu = enc(tokens, lengths)
    gpu = enc.cuda()(tokens.cuda(), lengths.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
