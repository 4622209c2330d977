"""Checkers for the learning chapter: a debiased running average, global-norm gradient clipping,
gradient accumulation over micro-batches, and BatchNorm's backward pass.

The references are PyTorch's own where one exists (``torch.nn.utils.clip_grad_norm_``, autograd
through ``F.batch_norm``, one optimizer step on the whole batch). When an answer fails, the
checker also tries the usual mistakes and names the one that matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.check.comparison import CheckFailure, Passed, random_cases
from mmcourse.check.hints import compare_with_hints

Fn = Callable[..., Any]
F64 = torch.float64


def _check_with_hints(
    fn: Fn, reference: Fn, cases: list, variants: dict[str, Fn], name: str,
    atol: float = 1e-9, rtol: float = 1e-7,
) -> Passed:
    return compare_with_hints(fn, reference, cases, variants, name, atol=atol, rtol=rtol)


# --- exercise 1: the debiased exponential moving average ---------------------------------


def _ema(x: torch.Tensor, beta: float, *, debias: bool = True, power_shift: int = 0,
         start_at_first: bool = False) -> torch.Tensor:
    m = x[0].clone() if start_at_first else torch.zeros((), dtype=x.dtype)
    out = []
    for t in range(1, len(x) + 1):
        m = beta * m + (1 - beta) * x[t - 1]
        out.append(m / (1 - beta ** (t - power_shift)) if debias else m)
    return torch.stack(out)


def debiased_ema(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> Passed:
    """``(x (T,), beta) -> (T,)``: m_t = beta m_{t-1} + (1 - beta) x_t from m_0 = 0, over 1 - beta^t."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, float]:
        t = int(torch.randint(1, 40, (1,), generator=gen))
        beta = float(torch.rand(1, generator=gen)) * 0.49 + 0.5  # in [0.5, 0.99)
        x = torch.randn(t, generator=gen, dtype=F64) * 2 + 3
        return x, beta

    cases = [(torch.full((5,), 2.0, dtype=F64), 0.9), (torch.tensor([1.0, 3.0], dtype=F64), 0.5)]
    cases += random_cases(make)
    variants = {
        "no bias correction: m_t starts at 0, so the early averages are pulled toward 0; "
        "divide m_t by 1 - beta**t": lambda x, b: _ema(x, b, debias=False),
        "the correction uses beta**(t - 1) (t counts from 1 here: the first output divides "
        "by 1 - beta)": lambda x, b: _ema(x, b, power_shift=1),
        "the average starts at x_1 instead of 0, without correction; that removes the pull "
        "toward 0 too, but differently: start at 0 and divide by 1 - beta**t as Adam "
        "does": lambda x, b: _ema(x, b, debias=False, start_at_first=True),
    }
    return _check_with_hints(fn, _ema, cases, variants, "debiased_ema")


# --- exercise 2: clipping the global gradient norm ---------------------------------------


def _clip_reference(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros_like(g))
        p.grad = g.detach().clone()
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], total


def _clip_per_tensor(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads], total


def _clip_always(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * max_norm / (total + 1e-6) for g in grads], total


def _clip_values(grads: list[torch.Tensor], max_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g.clamp(-max_norm, max_norm) for g in grads], total


def clip_grad_norm(fn: Callable[[list[torch.Tensor], float], tuple]) -> Passed:
    """``(grads, max_norm) -> (clipped grads, total norm)``, as ``torch.nn.utils.clip_grad_norm_``."""

    def make(gen: torch.Generator) -> tuple[list[torch.Tensor], float]:
        n = int(torch.randint(1, 5, (1,), generator=gen))
        grads = []
        for _ in range(n):
            shape = tuple(int(s) for s in torch.randint(1, 5, (int(torch.randint(1, 3, (1,), generator=gen)),), generator=gen))
            scale = float(10 ** (torch.rand(1, generator=gen) * 2 - 1))  # tensors of different sizes
            grads.append(torch.randn(shape, generator=gen, dtype=F64) * scale)
        total = float(torch.sqrt(sum((g**2).sum() for g in grads)))
        max_norm = total * float(torch.rand(1, generator=gen) * 1.5 + 0.25)  # clipped or not
        return grads, max_norm

    big, small = torch.tensor([3.0, 4.0], dtype=F64), torch.tensor([0.3], dtype=F64)
    cases = [([big, small], 1.0), ([big, small], 100.0), ([small * 10], 2.0)] + random_cases(make)
    originals = [[g.clone() for g in grads] for grads, _ in cases]
    for (grads, max_norm), before in zip(cases, originals, strict=True):  # inputs must survive
        try:
            out = fn(grads, max_norm)
        except NotImplementedError:
            break
        except Exception:  # compare() below reports it, with the case
            continue
        if not (isinstance(out, (tuple, list)) and len(out) == 2
                and isinstance(out[0], (tuple, list)) and isinstance(out[1], torch.Tensor)):
            raise CheckFailure(
                "clip_grad_norm must return a pair: (the list of clipped gradients, the total "
                f"norm before clipping as a 0-dim tensor); got {type(out).__name__}"
                + (f" of {len(out)} items" if isinstance(out, (tuple, list)) else "")
            )
        for g, g0 in zip(grads, before, strict=True):
            if not torch.equal(g, g0):
                raise CheckFailure(
                    "clip_grad_norm changed its input gradients in place; return new tensors "
                    "(e.g. g * scale) and leave the inputs as they were"
                )
    variants = {
        "each tensor is clipped to max_norm on its own; the norm is one number over ALL the "
        "gradients together, and every tensor is scaled by the same factor": _clip_per_tensor,
        "the gradients are rescaled even when their norm is already below max_norm; clipping "
        "only ever shrinks (the factor is min(1, max_norm / (norm + 1e-6)))": _clip_always,
        "each entry is clamped to [-max_norm, max_norm] (that is clip_grad_value_); scale the "
        "whole gradient by one factor instead": _clip_values,
    }
    return _check_with_hints(fn, _clip_reference, cases, variants, "clip_grad_norm",
                             atol=1e-9, rtol=1e-6)


# --- exercise 3: gradient accumulation ---------------------------------------------------


def _net(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> nn.Module:
    net = nn.Sequential(nn.Linear(w1.shape[1], w1.shape[0]), nn.Tanh(),
                        nn.Linear(w2.shape[1], w2.shape[0])).to(w1.dtype)
    with torch.no_grad():
        for p, value in zip(net.parameters(), (w1, b1, w2, b2), strict=True):
            p.copy_(value)
            p.grad = torch.full_like(p, 0.5)  # a stale gradient from an earlier step
    return net


def _after_step(step: Fn, one_piece_at_a_time: bool = False) -> Fn:
    """Run ``step(model, optimizer, x, y, sizes)`` on a fresh net; return its new parameters.
    ``one_piece_at_a_time``: the net refuses a batch larger than the largest micro-batch."""

    def run(w1, b1, w2, b2, x, y, sizes, lr):
        net = _net(w1, b1, w2, b2)
        if one_piece_at_a_time:
            largest = max(sizes)

            def one_piece(module: nn.Module, args: tuple) -> None:
                if args[0].shape[0] > largest:
                    raise CheckFailure(
                        f"accumulation_step: the model was called on {args[0].shape[0]} examples "
                        f"at once; the point of accumulation is that only one micro-batch (here "
                        f"at most {largest} examples) goes through the model at a time")

            net.register_forward_pre_hook(one_piece)
        step(net, torch.optim.SGD(net.parameters(), lr=lr), x, y, list(sizes))
        return tuple(p.detach().clone() for p in net.parameters())

    return run


def _one_big_batch(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def _pieces(x, y, sizes):
    start = 0
    for size in sizes:
        yield x[start : start + size], y[start : start + size]
        start += size


def _mean_of_means(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    for xb, yb in _pieces(x, y, sizes):
        (F.cross_entropy(model(xb), yb) / len(sizes)).backward()
    optimizer.step()


def _sum_of_means(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    for xb, yb in _pieces(x, y, sizes):
        F.cross_entropy(model(xb), yb).backward()
    optimizer.step()


def _no_zero_grad(model, optimizer, x, y, sizes):
    for xb, yb in _pieces(x, y, sizes):
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()
    optimizer.step()


def _step_each_piece(model, optimizer, x, y, sizes):
    for xb, yb in _pieces(x, y, sizes):
        optimizer.zero_grad()
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()
        optimizer.step()


def accumulation_step(fn: Fn) -> Passed:
    """``(model, optimizer, x, y, sizes)``: one step equal to the step on the whole batch's mean loss."""

    def make(gen: torch.Generator) -> tuple:
        d, h, c = (int(v) for v in torch.randint(2, 6, (3,), generator=gen))
        k = int(torch.randint(2, 5, (1,), generator=gen))
        sizes = [int(s) for s in torch.randint(1, 7, (k,), generator=gen)]
        if len(set(sizes)) == 1:
            sizes[0] += 1  # unequal pieces: equal weighting must show
        n = sum(sizes)
        w = [torch.randn(s, generator=gen, dtype=F64) * 0.7 for s in ((h, d), (h,), (c, h), (c,))]
        x = torch.randn(n, d, generator=gen, dtype=F64)
        y = torch.randint(0, c, (n,), generator=gen)
        return (*w, x, y, sizes, 0.5)

    cases = random_cases(make, n=15)
    variants = {
        "the micro-batch means are averaged with equal weights; with pieces of unequal size "
        "that is not the mean over the whole batch: weight each piece by its size / len(y) "
        "(e.g. a summed loss divided by len(y))": _after_step(_mean_of_means),
        "the micro-batch mean losses are added up without dividing: the gradient is len(sizes) "
        "times too large": _after_step(_sum_of_means),
        "the gradients left in .grad by an earlier step were not cleared: call "
        "optimizer.zero_grad() once, before the first micro-batch": _after_step(_no_zero_grad),
        "the optimizer steps after every micro-batch; accumulate all of them, then step "
        "once": _after_step(_step_each_piece),
    }
    try:
        return _check_with_hints(_after_step(fn, one_piece_at_a_time=True),
                                 _after_step(_one_big_batch), cases, variants,
                                 "accumulation_step")
    except CheckFailure as failure:
        if "not written yet" in str(failure):
            raise
        raise CheckFailure(
            f"{failure}\n(the case's tensors are the model's weights w1, b1, w2, b2, then x and y; "
            "the items compared are its parameters after your step, in the same order)"
        ) from None


# --- exercise 4: BatchNorm's backward pass -----------------------------------------------


def _bn_backward_reference(dy, x, gamma, eps):
    x = x.detach().clone().requires_grad_()
    g = gamma.detach().clone().requires_grad_()
    b = torch.zeros_like(g, requires_grad=True)
    y = F.batch_norm(x, None, None, g, b, training=True, eps=eps)
    return torch.autograd.grad(y, (x, g, b), dy)


def _bn_backward_constant_stats(dy, x, gamma, eps):
    inv_std = 1 / torch.sqrt(x.var(0, correction=0) + eps)
    x_hat = (x - x.mean(0)) * inv_std
    return dy * gamma * inv_std, (dy * x_hat).sum(0), dy.sum(0)


def _bn_backward_unbiased(dy, x, gamma, eps):
    inv_std = 1 / torch.sqrt(x.var(0, correction=1) + eps)
    x_hat = (x - x.mean(0)) * inv_std
    dx_hat = dy * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(0) - x_hat * (dx_hat * x_hat).mean(0))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def batchnorm_backward(fn: Fn) -> Passed:
    """``(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` of training-mode BatchNorm on (N, C)."""

    def make(gen: torch.Generator) -> tuple:
        n = int(torch.randint(2, 9, (1,), generator=gen))
        c = int(torch.randint(1, 6, (1,), generator=gen))
        x = torch.randn(n, c, generator=gen, dtype=F64) * 2 + 1
        gamma = torch.rand(c, generator=gen, dtype=F64) + 0.5
        dy = torch.randn(n, c, generator=gen, dtype=F64)
        return dy, x, gamma, float(10 ** -int(torch.randint(2, 6, (1,), generator=gen)))

    variants = {
        "the batch mean and variance were treated as constants (dx = gamma * dy / std); they "
        "depend on every x_i, which adds two terms: the mean of dx_hat, and x_hat times the "
        "mean of dx_hat * x_hat": _bn_backward_constant_stats,
        "the variance has divisor N - 1; BatchNorm normalizes with the biased variance "
        "(divisor N, correction=0)": _bn_backward_unbiased,
    }
    return _check_with_hints(fn, _bn_backward_reference, random_cases(make), variants,
                             "batchnorm_backward")
