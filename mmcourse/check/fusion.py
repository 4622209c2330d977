"""Checkers for the fusion chapter: gates renormalized per example, low-rank factors of a
tensor-fusion weight, and late-fusion weights fitted on held-out logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mmcourse.check.comparison import CheckFailure, Passed, _call, compare, random_cases, random_int
from mmcourse.check.hints import explain

# --- gated fusion, renormalized over the modalities present in each example ------------------


def _renormalized_gating(s: torch.Tensor, z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    g = s.masked_fill(~present[:, :, None], float("-inf")).softmax(dim=1)  # (B, M, D)
    return (g * torch.tanh(z)).sum(dim=1)  # (B, D)


_GATING_MISTAKES: dict[str, Callable[..., torch.Tensor]] = {
    "the gates of the missing modalities are zeroed but the others no longer sum to one: take the "
    "softmax over the modalities present only (or divide by the sum of the gates kept).":
        lambda s, z, p: (s.softmax(1) * p[:, :, None] * torch.tanh(z)).sum(1),
    "the missing modalities still take part: each example's softmax must run over its present "
    "modalities only.": lambda s, z, p: (s.softmax(1) * torch.tanh(z)).sum(1),
    "the softmax runs over the D dimensions; it should run over the modalities (dim 1).":
        lambda s, z, p: (s.masked_fill(~p[:, :, None], float("-inf")).softmax(2).nan_to_num()
                         * torch.tanh(z)).sum(1),
    "the features enter as z; the formula uses tanh(z).":
        lambda s, z, p: (s.masked_fill(~p[:, :, None], float("-inf")).softmax(1) * z).sum(1),
}


def renormalized_gating(fn: Callable[..., torch.Tensor]) -> Passed:
    """sum_m g_m tanh(z_m), g = softmax over the modalities present of each example:
    (B, M, D) scores, (B, M, D) projections, (B, M) bool -> (B, D)."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, M, D = random_int(gen, 2, 6), random_int(gen, 2, 4), random_int(gen, 1, 5)
        s = (2 * torch.randn(B, M, D, generator=gen, dtype=torch.float64)).requires_grad_()
        z = torch.randn(B, M, D, generator=gen, dtype=torch.float64).requires_grad_()
        present = torch.rand(B, M, generator=gen) < 0.6
        present[0] = True  # one complete example
        present[1] = False
        present[1, random_int(gen, 0, M - 1)] = True  # one example with a single modality
        empty = ~present.any(dim=1)
        present[empty, 0] = True  # every example keeps at least one modality
        return s, z, present

    cases = random_cases(make)
    try:
        return compare(fn, _renormalized_gating, cases, name="renormalized_gating", grad=True)
    except CheckFailure as failure:
        raise explain(failure, fn, cases, _GATING_MISTAKES, "renormalized_gating") from None


# --- low-rank factors of a two-modality tensor-fusion weight -----------------------------------


def _best_rank(W: torch.Tensor, R: int) -> torch.Tensor:
    """The best rank-R approximation of every output slice W[:, :, d] (Eckart-Young)."""
    U, S, Vh = torch.linalg.svd(W.permute(2, 0, 1), full_matrices=False)  # (D, P, K) (D, K) (D, K, Q)
    return torch.einsum("dpr,dr,drq->pqd", U[..., :R], S[..., :R], Vh[..., :R, :])  # (P, Q, D)


def _lowrank_factors(W: torch.Tensor, R: int) -> tuple[torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(W.permute(2, 0, 1), full_matrices=False)
    A = (U[..., :R] * S[:, None, :R]).permute(2, 1, 0)  # (R, P, D)
    B = Vh[..., :R, :].permute(1, 2, 0)  # (R, Q, D)
    return A, B


def _rebuild(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return torch.einsum("rpd,rqd->pqd", A, B)  # sum_r A[r] (x) B[r], per output d


def _flattened_rank(W: torch.Tensor, R: int) -> torch.Tensor:  # one SVD over (P, Q * D)
    P, Q, D = W.shape
    U, S, Vh = torch.linalg.svd(W.reshape(P, Q * D), full_matrices=False)
    return ((U[:, :R] * S[:R]) @ Vh[:R]).reshape(P, Q, D)


def _smallest(W: torch.Tensor, R: int) -> torch.Tensor:  # the R smallest singular values
    U, S, Vh = torch.linalg.svd(W.permute(2, 0, 1), full_matrices=False)
    return torch.einsum("dpr,dr,drq->pqd", U[..., -R:], S[..., -R:], Vh[..., -R:, :])


def _no_singular_values(W: torch.Tensor, R: int) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(W.permute(2, 0, 1), full_matrices=False)
    return torch.einsum("dpr,drq->pqd", U[..., :R], Vh[..., :R, :])


_FACTOR_MISTAKES: dict[str, Callable[..., torch.Tensor]] = {
    "one SVD of W flattened to (P, Q * D) ties the outputs together; low-rank fusion has its own "
    "factors per output d: take the SVD of every slice W[:, :, d].": _flattened_rank,
    "these are the R *smallest* singular values; torch.linalg.svd sorts them in descending order, "
    "keep the first R.": _smallest,
    "the singular values are missing: put S into one of the two factors (A = U S, B = V).":
        _no_singular_values,
}


def lowrank_factors(fn: Callable[[torch.Tensor, int], Any]) -> Passed:
    """(P, Q, D) weight, rank R -> factors A (R, P, D), B (R, Q, D) whose sum of outer products
    is the best rank-R approximation of every W[:, :, d]."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, int]:
        P, Q, D = random_int(gen, 2, 6), random_int(gen, 2, 6), random_int(gen, 1, 4)
        R = random_int(gen, 1, min(P, Q))
        return torch.randn(P, Q, D, generator=gen, dtype=torch.float64), R

    cases = random_cases(make, n=20)
    for n, (W, R) in enumerate(cases, start=1):
        got = _call(fn, [W.clone(), R], "lowrank_factors", n)
        P, Q, D = W.shape
        where = f"case {n} (lowrank_factors(W of shape {(P, Q, D)}, R={R}))"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailure(f"{where}: expected a pair of tensors (A, B), got {type(got).__name__}")
        A, B = got
        for label, t, shape in (("A", A, (R, P, D)), ("B", B, (R, Q, D))):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got_shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise CheckFailure(f"{where}: {label} has shape {got_shape}, expected {shape} "
                                   "(rank, modality width + 1, outputs)")
        rebuilt, best = _rebuild(A.detach(), B.detach()), _best_rank(W, R)
        if not torch.allclose(rebuilt, best, atol=1e-8, rtol=1e-6):
            err = (rebuilt - best).norm() / best.norm()
            failure = CheckFailure(
                f"{where}: sum_r A[r] (x) B[r] is not the best rank-{R} approximation of the "
                f"slices W[:, :, d] (relative difference {err:.2e})")
            for hint, wrong in _FACTOR_MISTAKES.items():
                if torch.allclose(rebuilt, wrong(W, R), atol=1e-8, rtol=1e-6):
                    raise CheckFailure(f"{failure}\nHint: {hint}") from None
            raise failure
    return Passed(f"✓ lowrank_factors: {len(cases)} random weights, each rebuilt as its best "
                  "rank-R approximation (and exactly when R = min(P, Q))")


# --- late-fusion weights fitted on held-out logits ------------------------------------------


def _nll(w: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> float:
    return F.cross_entropy(torch.einsum("m,mnc->nc", w, y), labels).item()


def _best_weights(y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    a = torch.zeros(y.shape[0], dtype=y.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([a], lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(torch.einsum("m,mnc->nc", a.softmax(0), y), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().softmax(0)


def _late_case(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of M classifiers of different reliability on N held-out examples."""
    M, N, C = random_int(gen, 2, 3), random_int(gen, 80, 200), random_int(gen, 3, 8)
    labels = torch.randint(0, C, (N,), generator=gen)
    y = torch.empty(M, N, C, dtype=torch.float64)
    for m in range(M):
        skill = 4 * torch.rand((), generator=gen, dtype=torch.float64)  # 0: guessing
        scale = 0.5 + 3 * torch.rand((), generator=gen, dtype=torch.float64)  # over/under-confident
        y[m] = scale * (skill * F.one_hot(labels, C) + torch.randn(N, C, generator=gen, dtype=torch.float64))
    return y, labels


def fit_late_weights(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Passed:
    """(M, N, C) held-out logits, (N,) labels -> weights w (M,) on the simplex that minimize the
    cross-entropy of softmax(sum_m w_m y_m); judged by the loss they reach."""
    cases = random_cases(_late_case, n=8)
    gaps = []
    for n, (y, labels) in enumerate(cases, start=1):
        M = y.shape[0]
        where = f"case {n} (fit_late_weights(y of shape {tuple(y.shape)}, labels))"
        w = _call(fn, [y.clone(), labels.clone()], "fit_late_weights", n)
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (M,):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise CheckFailure(f"{where}: expected a tensor of shape ({M},), one weight per "
                               f"modality, got {got}")
        w = w.detach().to(torch.float64)
        if not torch.isfinite(w).all() or (w < -1e-9).any() or abs(w.sum().item() - 1) > 1e-6:
            raise CheckFailure(
                f"{where}: the weights {[round(v, 4) for v in w.tolist()]} must be positive and sum "
                "to one\nHint: optimize free parameters a and return softmax(a), not a.")
        best = _best_weights(y, labels)
        mine, opt = _nll(w, y, labels), _nll(best, y, labels)
        if mine > opt + 2e-3:
            uniform = _nll(torch.full((M,), 1 / M, dtype=y.dtype), y, labels)
            hint = ("\nHint: these are the uniform starting weights: the weights must be optimized."
                    if abs(mine - uniform) < 1e-9 else
                    "\nHint: minimize the cross-entropy of the fused logits sum_m w_m y_m until it "
                    "stops falling (more steps or a larger learning rate).")
            raise CheckFailure(
                f"{where}: your weights {[round(v, 3) for v in w.tolist()]} reach a validation loss "
                f"of {mine:.4f}; the best weights {[round(v, 3) for v in best.tolist()]} reach "
                f"{opt:.4f}{hint}")
        gaps.append(mine - opt)
    return Passed(f"✓ fit_late_weights: {len(cases)} random validation sets, loss within "
                  f"{max(gaps):.1e} of the best weights")
