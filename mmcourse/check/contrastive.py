"""Checkers for the contrastive chapter: the symmetric InfoNCE loss, recall@k, class prototypes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mmcourse.check.comparison import compare, random_cases
from mmcourse.nn.contrastive import info_nce
from mmcourse.nn.retrieval import prototypes
from mmcourse.nn.retrieval import recall_at_k as _recall_at_k


def _size(gen: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def _as_float(x: Any) -> Any:
    """A one-element tensor as a Python float (other values unchanged)."""
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x.item())
    return x


def info_nce_loss(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """Symmetric InfoNCE of paired embeddings a, b (N, d) at temperature tau: a scalar."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        N, d = _size(gen, 1, 8), _size(gen, 1, 6)
        a = torch.randn(N, d, generator=gen, dtype=torch.float64).requires_grad_()
        b = torch.randn(N, d, generator=gen, dtype=torch.float64).requires_grad_()
        tau = float(0.05 + 1.5 * torch.rand(1, generator=gen))
        return a, b, tau

    return compare(fn, info_nce, random_cases(make), name="info_nce_loss", grad=True)


def recall_at_k(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], float]) -> str:
    """Fraction of queries with an item of their own label among the k most similar."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        Q, G, C = _size(gen, 1, 12), _size(gen, 2, 15), _size(gen, 2, 5)
        sim = torch.randn(Q, G, generator=gen, dtype=torch.float64)
        query_labels = torch.randint(0, C, (Q,), generator=gen)
        gallery_labels = torch.randint(0, C, (G,), generator=gen)
        return sim, query_labels, gallery_labels, _size(gen, 1, min(G, 5))

    def mine(*args: Any) -> Any:
        return _as_float(fn(*args))

    return compare(mine, _recall_at_k, random_cases(make, n=40), name="recall_at_k", atol=1e-9)


def class_prototypes(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    """(C, d): the normalized mean of the normalized embeddings (N, d) of each class."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        C, d, extra = _size(gen, 1, 5), _size(gen, 1, 6), _size(gen, 0, 8)
        labels = torch.cat([torch.arange(C), torch.randint(0, C, (extra,), generator=gen)])
        labels = labels[torch.randperm(len(labels), generator=gen)]  # every class at least once
        emb = (3 * torch.randn(len(labels), d, generator=gen, dtype=torch.float64)).requires_grad_()
        return emb, labels, C

    return compare(fn, prototypes, random_cases(make), name="class_prototypes", grad=True)
