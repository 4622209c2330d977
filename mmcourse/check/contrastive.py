"""Checkers for the contrastive chapter: recall@k, the supervised (multi-positive) InfoNCE loss,
leave-one-out k-NN, and a LoRA update extracted from a fine-tuned weight.

Each checker compares a learner's function with a reference on random cases; when an answer
fails, it also tries the usual mistakes and names the one that matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import CheckFailure, Passed, random_cases, random_int
from mmcourse.check.hints import compare_with_hints
from mmcourse.nn.retrieval import recall_at_k as _recall_at_k

Fn = Callable[..., Any]
F64 = torch.float64


def _as_float(x: Any) -> Any:
    """A one-element tensor as a Python float (other values unchanged)."""
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x.item())
    return x


def _with_hints(fn: Fn, reference: Fn, cases: list, variants: dict[str, Fn], name: str,
                **kwargs: Any) -> Passed:
    return compare_with_hints(fn, reference, cases, variants, name, **kwargs)


# --- recall@k ----------------------------------------------------------------------------


def recall_at_k(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], float]) -> Passed:
    """Fraction of queries with an item of their own label among the k most similar."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        Q, G, C = random_int(gen, 1, 12), random_int(gen, 2, 15), random_int(gen, 2, 5)
        sim = torch.randn(Q, G, generator=gen, dtype=F64)
        query_labels = torch.randint(0, C, (Q,), generator=gen)
        gallery_labels = torch.randint(0, C, (G,), generator=gen)
        return sim, query_labels, gallery_labels, random_int(gen, 1, min(G, 5))

    def mine(*args: Any) -> Any:
        return _as_float(fn(*args))

    def smallest(sim, q, g, k):  # the k least similar items
        return _recall_at_k(-sim, q, g, k)

    variants = {"you took the k *least* similar items: rank by descending similarity "
                "(sim.topk(k, dim=1) picks the largest)": smallest}
    return _with_hints(mine, _recall_at_k, random_cases(make, n=40), variants, "recall_at_k",
                       atol=1e-9)


# --- the supervised (multi-positive) InfoNCE loss ------------------------------------------


def _supcon(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, tau: float, *,
            positives: str = "class", reduce: str = "mean", both: bool = True,
            normalize: bool = True) -> torch.Tensor:
    """Reference and its usual mistakes (keyword arguments)."""
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    S = a @ b.T / tau  # (N, N)
    if positives == "class":
        pos = (labels[:, None] == labels[None, :]).to(S.dtype)  # (N, N), diagonal included
    else:
        pos = torch.eye(len(labels), dtype=S.dtype)
    if reduce == "mean":
        weights = pos / pos.sum(1, keepdim=True)
    else:
        weights = pos

    def one_way(S: torch.Tensor) -> torch.Tensor:
        return -(weights * S.log_softmax(dim=1)).sum(1).mean()

    return (one_way(S) + one_way(S.T)) / 2 if both else one_way(S)


def supervised_info_nce(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> Passed:
    """Symmetric InfoNCE where every pair of the same class is a positive (a scalar)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        N, d, C = random_int(gen, 2, 10), random_int(gen, 2, 6), random_int(gen, 1, 4)
        a = torch.randn(N, d, generator=gen, dtype=F64).mul(2).requires_grad_()
        b = torch.randn(N, d, generator=gen, dtype=F64).mul(2).requires_grad_()
        labels = torch.randint(0, C, (N,), generator=gen)
        labels[0] = labels[1]  # at least one class with two members
        return a, b, labels, float(0.1 + torch.rand(1, generator=gen))

    variants = {
        "only the diagonal is a positive: that is plain InfoNCE; every j with "
        "labels[j] == labels[i] is a positive of i": lambda *x: _supcon(*x, positives="diag"),
        "the log-probabilities of the positives are summed; average them over the "
        "positives of each anchor": lambda *x: _supcon(*x, reduce="sum"),
        "only one direction: average the loss over rows (a -> b) and columns "
        "(b -> a)": lambda *x: _supcon(*x, both=False),
        "the embeddings are not normalized: the similarity is the cosine, "
        "F.normalize each row first": lambda *x: _supcon(*x, normalize=False),
    }
    return _with_hints(fn, _supcon, random_cases(make), variants, "supervised_info_nce",
                       grad=True)


# --- leave-one-out k-NN --------------------------------------------------------------------


def _knn_loo(z: torch.Tensor, labels: torch.Tensor, k: int, *, self_too: bool = False,
             pooled: bool = False) -> torch.Tensor:
    """Reference: each point's k nearest *other* points vote; ties go to the smallest label."""
    N, C = len(labels), int(labels.max()) + 1
    dist = torch.cdist(z, z)  # (N, N)
    if not self_too:
        dist = dist.fill_diagonal_(float("inf"))
    if pooled:  # all distances sorted together: one set of neighbours for everybody
        near = dist.flatten().topk(k, largest=False).indices % N  # (k,)
        votes = torch.bincount(labels[near], minlength=C)
        return votes.argmax().repeat(N)
    near = dist.topk(k, dim=1, largest=False).indices  # (N, k)
    votes = F.one_hot(labels[near], C).sum(1)  # (N, C)
    return votes.argmax(1)  # the first maximum: the smallest label among ties


def knn_leave_one_out(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Passed:
    """(N,) int64 predictions: each point classified by its k nearest other points."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        N, d, C = random_int(gen, 6, 30), random_int(gen, 1, 4), random_int(gen, 2, 4)
        labels = torch.randint(0, C, (N,), generator=gen)
        centers = 2 * torch.randn(C, d, generator=gen, dtype=F64)
        z = centers[labels] + torch.randn(N, d, generator=gen, dtype=F64)
        return z, labels, random_int(gen, 1, min(7, N - 1))

    cases = [(torch.tensor([[0.0], [1.0], [3.0], [3.5]], dtype=F64), torch.tensor([0, 0, 1, 1]), 1)]
    cases += random_cases(make, n=40)
    variants = {
        "each point counts itself among its neighbours (its distance to itself is 0): "
        "exclude it, e.g. by setting the diagonal of the distance matrix to "
        "infinity": lambda z, y, k: _knn_loo(z, y, k, self_too=True),
        "the distances of all points were sorted together, so everybody got the same "
        "neighbours: take the k nearest in each row": lambda z, y, k: _knn_loo(z, y, k, pooled=True),
    }
    return _with_hints(fn, _knn_loo, cases, variants, "knn_leave_one_out")


# --- a LoRA update from a fine-tuned weight -----------------------------------------------


def _lora_from_delta(W0: torch.Tensor, W1: torch.Tensor, r: int, alpha: float, *,
                     smallest: bool = False, scaled: bool = True) -> torch.Tensor:
    """Reference, returned as the update it stands for: (alpha / r) B A = best rank-r W1 - W0."""
    U, s, Vh = torch.linalg.svd(W1 - W0, full_matrices=False)
    keep = slice(len(s) - r, len(s)) if smallest else slice(0, r)
    delta = U[:, keep] @ torch.diag(s[keep]) @ Vh[keep]  # (out, in), rank r
    return delta if scaled else (alpha / r) * delta


def lora_from_delta(fn: Callable[[torch.Tensor, torch.Tensor, int, float], Any]) -> Passed:
    """(B (out, r), A (r, in)) with (alpha / r) B A the best rank-r approximation of W1 - W0."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        out, n_in = random_int(gen, 2, 9), random_int(gen, 2, 9)
        r = random_int(gen, 1, min(out, n_in) - 1)  # below full rank: the truncation matters
        W0 = torch.randn(out, n_in, generator=gen, dtype=F64)
        W1 = W0 + torch.randn(out, n_in, generator=gen, dtype=F64)
        return W0, W1, r, float(random_int(gen, 1, 16))

    def as_update(W0: torch.Tensor, W1: torch.Tensor, r: int, alpha: float) -> torch.Tensor:
        got = fn(W0, W1, r, alpha)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailure(f"lora_from_delta should return a pair (B, A), got {type(got).__name__}")
        B, A = got
        want_B, want_A = (W0.shape[0], r), (r, W0.shape[1])
        for what, t, want in (("B", B, want_B), ("A", A, want_A)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise CheckFailure(f"{what} should have shape {want}, got {shape}")
        return (alpha / r) * (B @ A)

    variants = {
        "you kept the r *smallest* singular values; the best approximation keeps the r "
        "largest (torch.linalg.svd sorts them in descending order)":
            lambda *x: _lora_from_delta(*x, smallest=True),
        "B A already equals the update, but the layer multiplies it by alpha / r: divide "
        "it out (e.g. scale B by r / alpha)": lambda *x: _lora_from_delta(*x, scaled=False),
    }
    cases = random_cases(make)
    return _with_hints(as_update, _lora_from_delta, cases, variants, "lora_from_delta",
                       atol=1e-8, rtol=1e-6)
