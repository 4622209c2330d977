r"""Learning-rate schedules, stepped once per optimizer step, with linear warm-up.

With base rate :math:`\eta`, total steps :math:`T` and warm-up steps :math:`W`:

- warm-up (``constant``, ``cosine``): :math:`\eta_t = \eta \, (t + 1) / W` for :math:`t < W`;
- ``"constant"``: :math:`\eta_t = \eta` after warm-up;
- ``"cosine"``: :math:`\eta_t = \tfrac{\eta}{2}\,(1 + \cos(\pi\, p))`, :math:`p = (t - W)/(T - W)`;
- ``"onecycle"`` (Smith's policy, as ``torch.optim.lr_scheduler.OneCycleLR``): a cosine rise
  from :math:`\eta/25` to :math:`\eta` over the warm-up (30% of the run when :math:`W = 0`),
  then a cosine fall to :math:`\eta/(25 \cdot 10^4)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

SCHEDULES = ("constant", "cosine", "onecycle")


def _cos_anneal(start: float, end: float, p: float) -> float:
    """From ``start`` at p = 0 to ``end`` at p = 1 along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * p))


class LRFactor:
    """The factor :math:`\\eta_t / \\eta` of a named schedule (picklable, so it checkpoints)."""

    def __init__(self, name: str, total_steps: int, warmup_steps: int = 0) -> None:
        if name not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or None, got {name!r}")
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"expected 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if name == "onecycle" and warmup_steps == 0:
            warmup_steps = max(1, round(0.3 * total_steps))
        self.name, self.total, self.warmup = name, total_steps, warmup_steps

    def __call__(self, t: int) -> float:
        w, total = self.warmup, self.total
        if self.name == "onecycle":
            low, final = 1 / 25, 1 / 25 / 1e4
            peak = w - 1  # the step at which the rate reaches eta (OneCycleLR's convention)
            if t <= peak and peak > 0:
                return _cos_anneal(low, 1.0, t / peak)
            p = min((t - max(peak, 0)) / max(total - 1 - max(peak, 0), 1), 1.0)
            return _cos_anneal(1.0, final, p)
        if t < w:
            return (t + 1) / w
        if self.name == "constant":
            return 1.0
        p = min((t - w) / max(total - w, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * p))


def make_schedule(
    schedule: str | Callable[[int], float] | None,
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int = 0,
) -> LRScheduler | None:
    """A per-step scheduler for ``optimizer``: a named schedule, a factor function, or None."""
    if schedule is None:
        if warmup_steps == 0:
            return None
        schedule = "constant"
    factor = LRFactor(schedule, total_steps, warmup_steps) if isinstance(schedule, str) else schedule
    if not callable(factor):
        raise TypeError(f"expected schedule to be a name or a callable step -> factor, got {schedule!r}")
    return LambdaLR(optimizer, factor)


def continue_at(scheduler: LambdaLR, step: int) -> None:
    """Put a resumed run's ``scheduler`` at ``step`` of its own plan, and its rates with it.

    A checkpoint's scheduler state holds the step count and the plan of the run that wrote it
    (for a named schedule, its total length). A resumed run keeps the step count and follows
    the plan of its own arguments: with the same number of epochs it continues exactly; with
    more, a cosine goes on decaying towards the new end instead of staying at its old end (0).
    """
    state = scheduler.state_dict()  # this run's plan (base rates, factor functions)
    lrs = [base * f(step) for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    scheduler.load_state_dict({**state, "last_epoch": step, "_last_lr": lrs})
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
