"""Checkers for the text chapter: Naive Bayes posteriors, embedding gradients, pooling over
padded sequences.

The references here are plain and short on purpose: :func:`naive_bayes_fit` is also the
reference that the tests compare with scikit-learn's ``MultinomialNB``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import Passed, compare, random_cases

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


def _naive_bayes_posterior(
    x: torch.Tensor, log_prior: torch.Tensor, log_likelihood: torch.Tensor
) -> torch.Tensor:
    return torch.softmax(naive_bayes_predict(x, log_prior, log_likelihood), dim=1)  # (N, C)


def _embedding_backward(
    ids: torch.Tensor, grad_out: torch.Tensor, V: int, padding_idx: int
) -> torch.Tensor:
    weight = torch.zeros(V, grad_out.shape[-1], dtype=grad_out.dtype, requires_grad=True)
    out = F.embedding(ids, weight, padding_idx=padding_idx)  # (B, T, d)
    (grad,) = torch.autograd.grad(out, weight, grad_out)
    return grad  # (V, d)


def _bag_of_embeddings(
    ids: torch.Tensor, lengths: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    e = weight[ids]  # (B, T, d)
    valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # (B, T)
    total = (e * valid[..., None].to(e.dtype)).sum(1)  # (B, d)
    return total / lengths[:, None].to(e.dtype)


def _last_valid_step(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return h[torch.arange(h.shape[0]), lengths - 1]  # (B, d)


# ---------------------------------------------------------------------------------------------
# random cases


def _counts_case(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    n_classes = int(torch.randint(2, 5, (), generator=gen))
    v = int(torch.randint(3, 12, (), generator=gen))
    n = n_classes + int(torch.randint(0, 20, (), generator=gen))
    x = torch.randint(0, 4, (n, v), generator=gen).to(torch.float64)
    # every class present at least once; class order shuffled
    y = torch.cat([torch.arange(n_classes), torch.randint(0, n_classes, (n - n_classes,), generator=gen)])
    y = y[torch.randperm(n, generator=gen)]
    alpha = [1.0, 0.5, 2.0, 0.1][int(torch.randint(0, 4, (), generator=gen))]
    return x, y, n_classes, alpha


def _lengths_case(gen: torch.Generator) -> tuple[torch.Tensor, int]:
    b = int(torch.randint(1, 6, (), generator=gen))
    T = int(torch.randint(1, 9, (), generator=gen))
    lengths = torch.randint(1, T + 1, (b,), generator=gen)
    lengths[int(torch.randint(0, b, (), generator=gen))] = T  # the longest fills the batch
    return lengths, T


# ---------------------------------------------------------------------------------------------
# exercises


def naive_bayes_posterior(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(x (N, V), log_prior (C,), log_likelihood (C, V)) -> (N, C)``, the posteriors P(c | x)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, n_classes, alpha = _counts_case(gen)
        log_prior, log_likelihood = naive_bayes_fit(x, y, n_classes, alpha)
        if bool(torch.rand((), generator=gen) < 0.5):  # long documents: scores far below -745
            x = x * int(torch.randint(100, 400, (), generator=gen))
        return x, log_prior, log_likelihood

    return compare(
        fn, _naive_bayes_posterior, random_cases(make), name="naive_bayes_posterior", atol=1e-9
    )


def embedding_backward(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(ids (B, T), grad_out (B, T, d), V, padding_idx) -> (V, d)``, the table's gradient."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        V, d, B, T = (int(n) for n in torch.randint(2, 7, (4,), generator=gen))
        ids = torch.randint(0, V, (B, T), generator=gen)  # ids repeat: their rows add up
        grad_out = torch.randn(B, T, d, generator=gen, dtype=torch.float64)
        padding_idx = int(torch.randint(0, V, (), generator=gen))
        return ids, grad_out, V, padding_idx

    return compare(fn, _embedding_backward, random_cases(make), name="embedding_backward")


def bag_of_embeddings(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(ids (B, T), lengths (B,), weight (V, d)) -> (B, d)``: mean over the valid tokens."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths, T = _lengths_case(gen)
        v, d = (int(n) for n in torch.randint(2, 7, (2,), generator=gen))
        ids = torch.randint(0, v, (lengths.shape[0], T), generator=gen)  # padding holds any id
        weight = torch.randn(v, d, generator=gen, dtype=torch.float64).requires_grad_()
        return ids, lengths, weight

    return compare(
        fn, _bag_of_embeddings, random_cases(make), name="bag_of_embeddings", grad=True
    )


def last_valid_step(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Passed:
    """``fn(h (B, T, d), lengths (B,)) -> (B, d)``: each sequence's output at its last real step."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        lengths, T = _lengths_case(gen)
        d = int(torch.randint(1, 5, (), generator=gen))
        h = torch.randn(lengths.shape[0], T, d, generator=gen, dtype=torch.float64)
        return h.requires_grad_(), lengths

    return compare(fn, _last_valid_step, random_cases(make), name="last_valid_step", grad=True)
