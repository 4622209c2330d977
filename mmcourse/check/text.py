"""Checkers for the text chapter: character n-grams, bigram counts for Naive Bayes, and the
gradient of an embedding table.

The references here are plain and short on purpose: :func:`naive_bayes_fit` is also the
reference that the tests compare with scikit-learn's ``MultinomialNB``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import Passed, compare, random_cases
from mmcourse.check.hints import compare_with_hints

# ---------------------------------------------------------------------------------------------
# references


def naive_bayes_fit(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial Naive Bayes with Laplace (additive) smoothing.

    x: (N, V) term counts, y: (N,) labels in [0, n_classes). Returns the log priors (C,)
    ``log(N_c / N)`` and the log-likelihoods (C, V)
    ``log((count(w, c) + alpha) / (sum_w count(w, c) + alpha |V|))``.
    """
    if x.ndim != 2:
        raise ValueError(f"expected x of shape (N, V), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"expected y of shape ({x.shape[0]},), got {tuple(y.shape)}")
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    x = x.to(torch.float64)
    onehot = F.one_hot(y.long(), n_classes).to(torch.float64)  # (N, C)
    n_c = onehot.sum(0)  # (C,)
    log_prior = torch.log(n_c) - math.log(x.shape[0])  # (C,)
    counts = onehot.T @ x  # (C, V) count(w, c)
    smoothed = counts + alpha
    log_likelihood = torch.log(smoothed) - torch.log(smoothed.sum(1, keepdim=True))  # (C, V)
    return log_prior, log_likelihood


def naive_bayes_predict(
    x: torch.Tensor, log_prior: torch.Tensor, log_likelihood: torch.Tensor
) -> torch.Tensor:
    """Class scores (N, C): ``log P(c) + sum_w x_w log P(w | c)``, the joint log-likelihood."""
    return x.to(log_likelihood.dtype) @ log_likelihood.T + log_prior  # (N, C)


def _embedding_backward(
    ids: torch.Tensor, grad_out: torch.Tensor, V: int, padding_idx: int
) -> torch.Tensor:
    weight = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype, requires_grad=True)
    out = F.embedding(ids, weight, padding_idx=padding_idx)  # (B, T, d)
    (grad,) = torch.autograd.grad(out, weight, grad_out)
    return grad  # (V, d)


def char_ngrams_reference(text: str, n: int) -> list[str]:
    """The character n-grams of every word of ``text``, each word marked as ``<word>``; a word
    shorter than n - 1 letters gives its marked self."""
    grams = []
    for word in text.split():
        w = f"<{word}>"
        grams += [w] if len(w) <= n else [w[i : i + n] for i in range(len(w) - n + 1)]
    return grams


def bigram_counts_reference(tokens: torch.Tensor, lengths: torch.Tensor, V: int) -> torch.Tensor:
    """(N, V * V) float64: entry a * V + b counts the adjacent pairs (a, b) among the first
    ``lengths[n]`` tokens of row n."""
    N, T = tokens.shape
    out = torch.zeros(N, V * V, dtype=torch.float64)
    for r in range(N):
        ids = tokens[r, : int(lengths[r])].tolist()
        for a, b in zip(ids, ids[1:], strict=False):
            out[r, a * V + b] += 1
    return out


# ---------------------------------------------------------------------------------------------
# random cases


def _lengths_case(gen: torch.Generator) -> tuple[torch.Tensor, int]:
    b = int(torch.randint(1, 6, (), generator=gen))
    T = int(torch.randint(1, 9, (), generator=gen))
    lengths = torch.randint(1, T + 1, (b,), generator=gen)
    lengths[int(torch.randint(0, b, (), generator=gen))] = T  # the longest fills the batch
    return lengths, T


# ---------------------------------------------------------------------------------------------
# exercises


def embedding_backward(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(ids (B, T), grad_out (B, T, d), V, padding_idx) -> (V, d)``, the table's gradient."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        V, d, B, T = (int(n) for n in torch.randint(2, 7, (4,), generator=gen))
        ids = torch.randint(0, V, (B, T), generator=gen)  # ids repeat: their rows add up
        grad_out = torch.randn(B, T, d, generator=gen, dtype=torch.float64)
        padding_idx = int(torch.randint(0, V, (), generator=gen))
        return ids, grad_out, V, padding_idx

    return compare(fn, _embedding_backward, random_cases(make), name="embedding_backward")


def char_ngrams(fn: Callable[[str, int], list[str]]) -> Passed:
    """``fn(text, n) -> list[str]``: the n-grams of each ``<word>``, in order."""
    words = ["even", "evven", "odd", "od", "a", "is", "seven", "sveen", "than", "thna", "prime"]

    def make(gen: torch.Generator) -> tuple[str, int]:
        k = int(torch.randint(1, 5, (), generator=gen))
        text = " ".join(words[int(i)] for i in torch.randint(0, len(words), (k,), generator=gen))
        return text, int(torch.randint(2, 5, (), generator=gen))

    cases = [("even", 3), ("a", 3), ("an odd", 2), *random_cases(make)]
    variants = {
        "the words are not marked: add '<' before and '>' after each word, so that the "
        "n-grams at the start and end of a word differ from those inside it":
            lambda t, n: [g for w in t.split() for g in
                          ([w] if len(w) <= n else [w[i : i + n] for i in range(len(w) - n + 1)])],
        "the n-grams run across the space between words; cut the text into words first":
            lambda t, n: (lambda s: [s[i : i + n] for i in range(len(s) - n + 1)])(
                "<" + t.replace(" ", "><") + ">"),
    }
    return compare_with_hints(fn, char_ngrams_reference, cases, variants, "char_ngrams")


def bigram_counts(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Passed:
    """``fn(tokens (N, T), lengths (N,), V) -> (N, V * V)``: counts of adjacent id pairs."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        lengths, T = _lengths_case(gen)
        V = int(torch.randint(2, 6, (), generator=gen))
        tokens = torch.randint(1, V, (lengths.shape[0], T), generator=gen)  # repeated pairs occur
        tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0  # pad id 0 after each text
        return tokens, lengths, V

    def with_padding(tokens, lengths, V):
        return bigram_counts_reference(tokens, torch.full_like(lengths, tokens.shape[1]), V)

    def transposed(tokens, lengths, V):
        N = tokens.shape[0]
        return bigram_counts_reference(tokens, lengths, V).view(N, V, V).transpose(1, 2).reshape(N, -1)

    variants = {
        "pairs that reach into the padding are counted; a pair (t, t + 1) counts only when "
        "t + 1 < lengths[n]": with_padding,
        "the pair index is b * V + a; the first word of the pair picks the block: a * V + b":
            transposed,
    }
    return compare_with_hints(fn, bigram_counts_reference, random_cases(make), variants,
                              "bigram_counts")
