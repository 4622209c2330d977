"""Checkers for the image-generation chapter: re-noising from step s to t, a DDIM step with
stochasticity eta, and guidance composed from several conditions.

Every case runs in float64 against a reference written from the formula; values and gradients
are compared. When an answer fails, the checker also tries the usual mistakes and names the one
that matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mmcourse.check.comparison import Passed, random_cases, random_int
from mmcourse.check.hints import compare_with_hints

Fn = Callable[..., Any]
F64 = torch.float64


def _shape(gen: torch.Generator) -> tuple[int, ...]:
    """A random batch of images (B, C, H, W) or of vectors (B, D)."""
    if random_int(gen, 0, 1):
        return (random_int(gen, 1, 4), random_int(gen, 1, 2), random_int(gen, 1, 5), random_int(gen, 1, 5))
    return (random_int(gen, 1, 4), random_int(gen, 1, 8))


def _alpha_bar(gen: torch.Generator) -> torch.Tensor:
    """(T,) a random decreasing alpha_bar of a schedule with T in 2..50 steps."""
    T = random_int(gen, 2, 50)
    betas = 1e-3 + 0.2 * torch.rand(T, generator=gen, dtype=F64)
    return torch.cumprod(1 - betas, 0)


def _check(
    fn: Fn, reference: Callable, cases: list, variants: dict[str, Callable], name: str
) -> Passed:
    """Compare with ``reference``; on failure, name the known mistake that ``fn`` matches."""
    return compare_with_hints(fn, reference, cases, variants, name, atol=1e-8, rtol=1e-6,
                              grad=True)


# --- re-noising: q(x_t | x_s) for s < t ---------------------------------------------------


def _q_sample_from_reference(
    x_s: torch.Tensor, alpha_bar: torch.Tensor, s: int, t: int, eps: torch.Tensor
) -> torch.Tensor:
    r = alpha_bar[t] / alpha_bar[s]  # the product of alpha over the steps s+1 .. t
    return r.sqrt() * x_s + (1 - r).sqrt() * eps


def q_sample_from(fn: Fn) -> Passed:
    """``fn(x_s, alpha_bar, s, t, eps)`` = sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) eps."""

    def make(gen: torch.Generator) -> tuple:
        alpha_bar = _alpha_bar(gen)
        T = len(alpha_bar)
        s = random_int(gen, 0, T - 2)
        t = random_int(gen, s + 1, T - 1)
        shape = _shape(gen)
        x_s = torch.randn(shape, generator=gen, dtype=F64).requires_grad_()
        eps = torch.randn(shape, generator=gen, dtype=F64).requires_grad_()
        return (x_s, alpha_bar, s, t, eps)

    variants = {
        "it treats x_s as the clean image x_0 (sqrt(alpha_bar[t]) x_s + sqrt(1 - alpha_bar[t]) "
        "eps); from step s, only the alphas of the steps s+1 .. t are left to apply": (
            lambda x_s, ab, s, t, eps: ab[t].sqrt() * x_s + (1 - ab[t]).sqrt() * eps
        ),
        "the noise has variance 1 - alpha_bar[t], as from x_0; from step s it is "
        "1 - alpha_bar[t] / alpha_bar[s]": (
            lambda x_s, ab, s, t, eps: (ab[t] / ab[s]).sqrt() * x_s + (1 - ab[t]).sqrt() * eps
        ),
        "the variances were used as standard deviations (no square roots)": (
            lambda x_s, ab, s, t, eps: ab[t] / ab[s] * x_s + (1 - ab[t] / ab[s]) * eps
        ),
    }
    return _check(fn, _q_sample_from_reference, random_cases(make, n=30), variants, "q_sample_from")


# --- one DDIM step with stochasticity eta -------------------------------------------------


def ddim_sigma(ab: torch.Tensor, ab_next: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma = eta sqrt((1 - ab_next) / (1 - ab)) sqrt(1 - ab / ab_next) (Song et al., eq. 16)."""
    return eta * ((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)).sqrt()


def _ddim_step_eta_reference(
    x: torch.Tensor,
    eps: torch.Tensor,
    ab: torch.Tensor,
    ab_next: torch.Tensor,
    eta: float,
    z: torch.Tensor,
) -> torch.Tensor:
    sigma = ddim_sigma(ab, ab_next, eta)
    x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    return ab_next.sqrt() * x0_hat + (1 - ab_next - sigma**2).sqrt() * eps + sigma * z


def ddim_step_eta(fn: Fn) -> Passed:
    """``fn(x, eps, ab, ab_next, eta, z)``: a DDIM step from alpha_bar ``ab`` to ``ab_next``."""

    def make(gen: torch.Generator) -> tuple:
        ab = 0.01 + 0.9 * torch.rand((), generator=gen, dtype=F64)
        last = random_int(gen, 0, 4) == 0  # sometimes the final jump, to alpha_bar = 1
        ab_next = (
            torch.ones((), dtype=F64)
            if last
            else ab + (1 - ab) * torch.rand((), generator=gen, dtype=F64)
        )
        eta = [0.0, 1.0, float(torch.rand((), generator=gen))][random_int(gen, 0, 2)]
        shape = _shape(gen)
        x = torch.randn(shape, generator=gen, dtype=F64).requires_grad_()
        eps = torch.randn(shape, generator=gen, dtype=F64).requires_grad_()
        z = torch.randn(shape, generator=gen, dtype=F64)
        return (x, eps, ab, ab_next, eta, z)

    def without_shrinking(x, eps, ab, ab_next, eta, z):
        sigma = ddim_sigma(ab, ab_next, eta)
        x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps + sigma * z

    def without_noise(x, eps, ab, ab_next, eta, z):
        sigma = ddim_sigma(ab, ab_next, eta)
        x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return ab_next.sqrt() * x0_hat + (1 - ab_next - sigma**2).sqrt() * eps

    variants = {
        "with eta > 0 the direction term must shrink to sqrt(1 - ab_next - sigma^2) eps, so "
        "that the total variance stays 1 - ab_next": without_shrinking,
        "the fresh noise sigma z is missing: the step must add it": without_noise,
    }
    # first a plain case of each kind: deterministic, DDPM-like, and the last step
    ab, ab_next = torch.tensor(0.3, dtype=F64), torch.tensor(0.6, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    x, eps, z = (torch.randn(2, 3, generator=gen, dtype=F64) for _ in range(3))
    cases: list = [
        (x.clone().requires_grad_(), eps.clone().requires_grad_(), ab, ab_next, 0.0, z),
        (x.clone().requires_grad_(), eps.clone().requires_grad_(), ab, ab_next, 1.0, z),
        (
            x.clone().requires_grad_(),
            eps.clone().requires_grad_(),
            ab,
            torch.ones((), dtype=F64),
            1.0,
            z,
        ),
    ]
    cases += random_cases(make, n=30)
    return _check(fn, _ddim_step_eta_reference, cases, variants, "ddim_step_eta")


# --- guidance composed from several conditions --------------------------------------------


def _composed_guidance_reference(
    eps_uncond: torch.Tensor, eps_conds: torch.Tensor, scales: torch.Tensor
) -> torch.Tensor:
    s = scales.view(-1, *[1] * eps_uncond.ndim)  # (K, 1, ...)
    return eps_uncond + (s * (eps_conds - eps_uncond)).sum(0)


def composed_guidance(fn: Fn) -> Passed:
    """``fn(eps_uncond (B, ...), eps_conds (K, B, ...), scales (K,))``
    = eps_uncond + sum_k scales[k] (eps_conds[k] - eps_uncond)."""

    def make(gen: torch.Generator) -> tuple:
        shape = _shape(gen)
        K = random_int(gen, 1, 4)
        eps_uncond = torch.randn(shape, generator=gen, dtype=F64).requires_grad_()
        eps_conds = torch.randn(K, *shape, generator=gen, dtype=F64).requires_grad_()
        scales = 4 * torch.rand(K, generator=gen, dtype=F64)
        return (eps_uncond, eps_conds, scales)

    variants = {
        "each guidance term is scales[k] (eps_conds[k] - eps_uncond): the unconditional "
        "prediction must be subtracted from every conditional one": (
            lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * c).sum(0)
        ),
        "the guidance terms are summed, not averaged": (
            lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * (c - u)).mean(0)
        ),
        "the roles are swapped: the push goes from the conditional prediction towards the "
        "unconditional one": (lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * (u - c)).sum(0)),
    }
    return _check(
        fn, _composed_guidance_reference, random_cases(make, n=30), variants, "composed_guidance"
    )
