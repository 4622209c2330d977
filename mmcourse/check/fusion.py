"""Checkers for the fusion chapter: the tensor-fusion product, softmax-weighted linear fusion,
and late fusion by averaged probabilities."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcourse.check.comparison import compare, random_cases


def _outer_with_ones(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    za = torch.cat([fa, fa.new_ones(fa.shape[0], 1)], dim=1)  # (B, da + 1)
    zb = torch.cat([fb, fb.new_ones(fb.shape[0], 1)], dim=1)  # (B, db + 1)
    return torch.einsum("bi,bj->bij", za, zb).reshape(fa.shape[0], -1)  # (B, (da+1)(db+1))


def _softmax_weighted_sum(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.einsum("m,mbd->bd", torch.softmax(a, dim=0), z)  # (B, D)


def _average_probabilities(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.einsum("m,mbc->bc", w, torch.softmax(y, dim=-1))  # (B, C)


def _size(gen: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def outer_with_ones(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """vec([fa; 1] (x) [fb; 1]) per example: (B, da), (B, db) -> (B, (da + 1)(db + 1))."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        B, da, db = _size(gen, 1, 5), _size(gen, 1, 6), _size(gen, 1, 6)
        fa = torch.randn(B, da, generator=gen, dtype=torch.float64).requires_grad_()
        fb = torch.randn(B, db, generator=gen, dtype=torch.float64).requires_grad_()
        return fa, fb

    return compare(fn, _outer_with_ones, random_cases(make), name="outer_with_ones", grad=True)


def softmax_weighted_sum(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """sum_m softmax(a)_m z_m: (M, B, D), (M,) -> (B, D)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        M, B, D = _size(gen, 1, 4), _size(gen, 1, 5), _size(gen, 1, 6)
        z = torch.randn(M, B, D, generator=gen, dtype=torch.float64).requires_grad_()
        a = (2 * torch.randn(M, generator=gen, dtype=torch.float64)).requires_grad_()
        return z, a

    return compare(
        fn, _softmax_weighted_sum, random_cases(make), name="softmax_weighted_sum", grad=True
    )


def average_probabilities(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """sum_m w_m softmax(y_m): (M, B, C) logits, (M,) weights summing to one -> (B, C)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        M, B, C = _size(gen, 2, 4), _size(gen, 1, 5), _size(gen, 2, 10)
        y = (3 * torch.randn(M, B, C, generator=gen, dtype=torch.float64)).requires_grad_()
        w = torch.softmax(torch.randn(M, generator=gen, dtype=torch.float64), dim=0)
        return y, w.requires_grad_()

    return compare(
        fn, _average_probabilities, random_cases(make), name="average_probabilities", grad=True
    )
