"""generate() and beam_search() (mmcourse.nn.generation): the loop against plain references,
cache = no cache, a padded batch = each prompt alone, beam search = exhaustive search."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.nn import TextDecoder, beam_search, generate
from mmcourse.nn.generation import left_pad

F64 = torch.float64
EOS = 3


def _model(seed=0, V=9, E=16, cross=False, max_len=32):
    torch.manual_seed(seed)
    m = TextDecoder(V, E, 2, 2, ffn_dim=32, max_len=max_len, cross_attention=cross).double().eval()
    for p in m.parameters():
        nn.init.normal_(p, std=0.5)
    return m


def test_greedy_is_the_plain_loop():
    m = _model()
    prompt = torch.tensor([[5, 1, 2]])
    seq = prompt.clone()
    for _ in range(6):  # the definition: feed everything so far, append the argmax
        seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    torch.testing.assert_close(generate(m, prompt, 6), seq[:, 3:])


def test_left_pad():
    left, pad = left_pad(torch.tensor([[4, 5, 6], [7, 0, 0]]), torch.tensor([3, 1]))
    assert left.tolist() == [[4, 5, 6], [0, 0, 7]]
    assert pad.tolist() == [[False, False, False], [True, True, False]]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 4), st.booleans(),
       st.sampled_from(["greedy", "sample", "beam"]))
def test_a_padded_batch_generates_as_each_prompt_alone_with_and_without_cache(seed, B, cross, how):
    m = _model(seed, cross=cross)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (B,), generator=g)
    prompt = torch.randint(4, 9, (B, int(lengths.max())), generator=g)
    memory = torch.randn(B, 3, 16, generator=g, dtype=F64) if cross else None
    kw = dict(eos_id=EOS, strategy=how, num_beams=3, top_k=5, top_p=0.9, temperature=0.8)
    together = generate(m, prompt, 7, prompt_lengths=lengths, memory=memory,
                        generator=torch.Generator().manual_seed(1), **kw)
    uncached = generate(m, prompt, 7, prompt_lengths=lengths, memory=memory, use_cache=False,
                        generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(together, uncached)  # the same draws: the same tokens
    if how == "sample":
        return  # which random number a row draws depends on the batch shape
    for b in range(B):
        alone = generate(m, prompt[b : b + 1, : int(lengths[b])], 7,
                         memory=None if memory is None else memory[b : b + 1], **kw)
        n = alone.shape[1]
        torch.testing.assert_close(together[b, :n], alone[0])
        assert (together[b, n:] == 0).all()


def test_rows_stop_at_eos_and_are_padded():
    m = _model(3)
    out = generate(m, torch.tensor([[5], [6], [7], [8]]), 12, eos_id=EOS, strategy="sample",
                   generator=torch.Generator().manual_seed(0))
    for row in out.tolist():
        if EOS in row:
            assert all(t == 0 for t in row[row.index(EOS) + 1 :])


class Bigram(nn.Module):
    """A toy model whose next-token distribution depends on the last token only."""

    max_len = 16

    def __init__(self, table):
        super().__init__()
        self.table = table  # (V, V) logits

    def new_cache(self):
        class _Nothing:
            def reorder(self, index):
                pass

        return _Nothing()

    def forward(self, tokens, memory=None, *, key_padding_mask=None, memory_key_padding_mask=None,
                cache=None):
        return self.table[tokens]  # (B, T, V)


def _exhaustive(table, start, n_max, alpha):
    """The best continuation ending in EOS (or of length n_max), by sum log p / n^alpha."""
    logp = table.log_softmax(-1)
    V, best = table.shape[0], (-float("inf"), None)
    for n in range(1, n_max + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1] or (n < n_max and seq[-1] != EOS):
                continue
            prev, s = start, 0.0
            for t in seq:
                s, prev = s + logp[prev, t].item(), t
            score = s / n**alpha
            if score > best[0]:
                best = (score, seq)
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_wide_beam_search_is_exhaustive_search(seed, alpha):
    g = torch.Generator().manual_seed(seed)
    V, n_max = 5, 4
    table = 2 * torch.randn(V, V, generator=g, dtype=F64)
    score, seq = _exhaustive(table, 4, n_max, alpha)
    tokens, s = beam_search(Bigram(table), torch.tensor([[4]]), n_max, num_beams=V**n_max,
                            eos_id=EOS, length_penalty=alpha)
    got = tokens[0].tolist()
    got = got[: got.index(EOS) + 1] if EOS in got else got
    assert tuple(got) == seq
    assert s.item() == pytest.approx(score)


def test_one_beam_is_greedy():
    m = _model(5)
    prompt = torch.tensor([[4, 5], [6, 0]])
    lengths = torch.tensor([2, 1])
    greedy = generate(m, prompt, 8, prompt_lengths=lengths, eos_id=EOS)
    beam, _ = beam_search(m, prompt, 8, prompt_lengths=lengths, eos_id=EOS, num_beams=1)
    torch.testing.assert_close(beam[:, : greedy.shape[1]], greedy)


def test_beam_finds_a_more_probable_sentence_than_greedy():
    table = torch.log(torch.tensor([  # from 4: greedy takes 5 (0.5), but 6 then EOS is likelier
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [1e-9, 1e-9, 1e-9, 1e-9, 1e-9, 0.5, 0.4],
        [1e-9, 1e-9, 1e-9, 0.3, 1e-9, 0.35, 0.35],
        [1e-9, 1e-9, 1e-9, 0.95, 1e-9, 0.05, 1e-9],
    ], dtype=F64))
    greedy = generate(Bigram(table), torch.tensor([[4]]), 2, eos_id=EOS)
    beam = generate(Bigram(table), torch.tensor([[4]]), 2, eos_id=EOS, strategy="beam",
                    num_beams=2, length_penalty=0.0)
    assert greedy.tolist() == [[5, 5]] and beam.tolist() == [[6, 3]]


def test_clear_errors():
    m = _model(max_len=6)
    p = torch.tensor([[4, 5, 6]])
    with pytest.raises(ValueError, match="at most the model's context, max_len = 6"):
        generate(m, torch.full((1, 7), 4), 1)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        generate(m, p, 4)
    with pytest.raises(ValueError, match="strategy in"):
        generate(m, p, 2, strategy="nucleus")
    with pytest.raises(ValueError, match=r"top_p in \(0, 1\]"):
        generate(m, p, 2, strategy="sample", top_p=0.0)
    with pytest.raises(ValueError, match="top_k to be an int k >= 1"):
        generate(m, p, 2, strategy="sample", top_k=0)
    with pytest.raises(ValueError, match="temperature > 0"):
        generate(m, p, 2, strategy="sample", temperature=0)
    with pytest.raises(ValueError, match="num_beams"):
        generate(m, p, 2, strategy="beam", num_beams=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(m, p, 0)
    with pytest.raises(ValueError, match=r"prompt_lengths in \[1, 3\]"):
        generate(m, p, 1, prompt_lengths=torch.tensor([0]))
    with pytest.raises(ValueError, match="at least one token"):
        generate(m, p[:, :0], 1)
