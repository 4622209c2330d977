"""Checkers for the attention chapter: the causal mask, a stable softmax, one attention head."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mmcourse.check.comparison import Passed, compare, random_cases

F64 = torch.float64


def causal_mask_reference(T: int) -> torch.Tensor:
    """(T, T) boolean, True where query i may attend to key j, i.e. j <= i."""
    return torch.ones(T, T, dtype=torch.bool).tril()


def attention_head_reference(
    x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor
) -> torch.Tensor:
    """softmax(x W^Q (x W^K)^T / sqrt(d_k)) x W^V for x (B, T, E); returns (B, T, d_v)."""
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (B, T, d_k), (B, T, d_k), (B, T, d_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T, T)
    return torch.softmax(scores, dim=-1) @ v  # (B, T, d_v)


def causal_mask(fn: Callable[[int], torch.Tensor]) -> str:
    """(T, T) boolean mask, True where position i may attend to position j (j <= i)."""
    cases = [(T,) for T in (1, 2, 3, 5, 8, 13)]
    return compare(fn, causal_mask_reference, cases, name="causal_mask")


def stable_softmax(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    """Softmax along ``dim`` that survives logits of any size (values and gradients)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, int]:
        ndim = int(torch.randint(1, 4, (1,), generator=gen))
        n = int(torch.randint(2, 6, (1,), generator=gen))
        shape = [n] * ndim if torch.rand(1, generator=gen) < 0.5 else [
            int(s) for s in torch.randint(1, 6, (ndim,), generator=gen)
        ]
        scale = float(10 ** torch.randint(0, 4, (1,), generator=gen))  # up to +-1000: exp overflows
        x = (torch.randn(shape, generator=gen, dtype=F64) * scale).requires_grad_()
        dim = int(torch.randint(-ndim, ndim, (1,), generator=gen))
        return x, dim

    def reference(x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.softmax(x, dim=dim)

    compare(fn, reference, random_cases(make, n=30), name="stable_softmax", grad=True)

    def with_neg_inf(gen: torch.Generator) -> tuple[torch.Tensor, int]:
        x = torch.randn(4, 6, generator=gen, dtype=F64) * 50
        x[torch.rand(4, 6, generator=gen) < 0.4] = float("-inf")  # masked scores
        x[:, 0] = x[:, 0].nan_to_num(neginf=0.0)  # one finite score per row
        return x, -1

    compare(fn, reference, random_cases(with_neg_inf, n=5, seed=1), name="stable_softmax")
    return Passed("✓ stable_softmax: 35 random cases match torch.softmax, "
                  "incl. logits up to ~1000 and -inf scores (values and gradients)")


def attention_head(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
) -> str:
    """One head of self-attention on x (B, T, E) with W^Q, W^K (E, d_k) and W^V (E, d_v)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        B, T, E, d_k, d_v = (int(v) for v in torch.randint(1, 7, (5,), generator=gen))
        x = torch.randn(B, T, E, generator=gen, dtype=F64)
        w_q, w_k = (torch.randn(E, d_k, generator=gen, dtype=F64) for _ in range(2))
        w_v = torch.randn(E, d_v, generator=gen, dtype=F64)
        return tuple(t.requires_grad_() for t in (x, w_q, w_k, w_v))

    return compare(fn, attention_head_reference, random_cases(make), name="attention_head",
                   grad=True)
