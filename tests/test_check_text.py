"""The text chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from mmcourse import check
from mmcourse.check.text import bigram_counts_reference, char_ngrams_reference


def test_references_pass():
    assert check.char_ngrams(char_ngrams_reference).startswith("✓")
    assert check.bigram_counts(bigram_counts_reference).startswith("✓")


def test_char_ngrams_examples():
    assert char_ngrams_reference("an even", 3) == ["<an", "an>", "<ev", "eve", "ven", "en>"]
    assert char_ngrams_reference("a", 3) == ["<a>"]


def test_bigram_counts_example():
    tokens = torch.tensor([[2, 3, 2, 3], [3, 3, 0, 0]])
    counts = bigram_counts_reference(tokens, torch.tensor([4, 2]), V=4)
    assert counts[0, 2 * 4 + 3] == 2 and counts[0, 3 * 4 + 2] == 1 and counts[0].sum() == 3
    assert counts[1, 3 * 4 + 3] == 1 and counts[1].sum() == 1  # nothing from the padding


@pytest.mark.parametrize("wrong, hint", [
    (lambda t, n: [w[i : i + n] for w in t.split() for i in range(max(1, len(w) - n + 1))],
     "not marked"),
    (lambda t, n: (lambda s: [s[i : i + n] for i in range(len(s) - n + 1)])(
        "<" + t.replace(" ", "><") + ">"), "across the space"),
])
def test_char_ngram_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.char_ngrams(wrong)


def test_bigrams_into_the_padding_are_named():
    def all_pairs(tokens, lengths, V):
        return bigram_counts_reference(tokens, torch.full_like(lengths, tokens.shape[1]), V)

    with pytest.raises(check.CheckFailure, match="reach into the padding"):
        check.bigram_counts(all_pairs)


def test_embedding_backward_without_the_padding_row_zeroed_is_caught():
    def keeps_pad(ids, grad_out, V, padding_idx):
        grad = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype)
        return grad.index_add_(0, ids.reshape(-1), grad_out.reshape(-1, grad_out.shape[-1]))

    with pytest.raises(check.CheckFailure, match="entries differ"):
        check.embedding_backward(keeps_pad)
