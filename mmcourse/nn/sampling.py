"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus) sampling::

    temperature:  p_i = softmax(z / tau)_i       tau < 1 sharpens, tau > 1 flattens, tau -> 0 greedy
    top-k:        keep the k largest logits (ties with the k-th are kept), renormalize
    top-p:        keep the smallest set of most probable tokens whose probability adds up to at
                  least p (the most probable token always stays), renormalize

Filters return logits with ``-inf`` at the removed tokens, so that ``softmax`` renormalizes.
They apply in the order temperature, top-k, top-p. Logits are (..., V).
"""

from __future__ import annotations

import math

import torch

__all__ = ["filter_logits", "greedy", "sample", "top_k_filter", "top_p_filter"]


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        got = f"{logits.dtype} of shape {tuple(logits.shape)}" if isinstance(
            logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"expected floating-point logits of shape (..., V), got {got}")


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not (
        0 < temperature < math.inf
    ):
        raise ValueError(f"expected a temperature > 0 (finite), got {temperature!r}")
    return float(temperature)


def check_top_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"expected top_k to be an int k >= 1, got {k!r}")
    return k


def check_top_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
        raise ValueError(f"expected top_p in (0, 1], got {p!r}")
    return float(p)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits (..., V) with every token below the k-th largest set to -inf."""
    _check_logits(logits)
    k = min(check_top_k(k), logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Logits (..., V) keeping the smallest most-probable set with probability >= p."""
    _check_logits(logits)
    p = check_top_p(p)
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # (..., V): mass of the more probable tokens
    drop_sorted = before >= p  # already p without this token: drop it (never the first)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the logits whose softmax is sampled."""
    _check_logits(logits)
    z = logits / check_temperature(temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return z


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most probable token: logits (..., V) -> ids (...)."""
    _check_logits(logits)
    return logits.argmax(dim=-1)


def sample(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from the filtered distribution: logits (B, V) -> ids (B,)."""
    z = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    if z.dim() != 2:
        raise ValueError(f"expected logits of shape (B, V), got {tuple(z.shape)}")
    probs = z.float().softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
