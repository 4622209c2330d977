"""Checkers for the scaling-out exercises: ZeRO memory, learning-rate scaling, sharding."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch
from torch.utils.data import DistributedSampler

from mmcourse.check.comparison import CheckFailure, Passed, _call, compare, random_cases


def _max_parameters_reference(
    memory: float, world_size: int, stage: int, w: float = 4, g: float = 4, o: float = 8
) -> int:
    n = Fraction(world_size)
    per = (Fraction(w) / (n if stage >= 3 else 1) + Fraction(g) / (n if stage >= 2 else 1)
           + Fraction(o) / (n if stage >= 1 else 1))  # bytes per parameter on one rank, exactly
    return math.floor(Fraction(memory) / per)


def _all_sharded(memory: float, world_size: int, stage: int, w: float = 4, g: float = 4,
                 o: float = 8) -> int:
    return math.floor(memory * world_size / (w + g + o))  # the usual slip: every stage as ZeRO-3


def max_parameters(fn: Callable[..., int]) -> str:
    """The most parameters whose weights, gradients and optimizer state fit in ``memory``
    bytes per rank under ZeRO ``stage`` on ``world_size`` ranks (``w, g, o`` bytes each)."""
    __tracebackhide__ = True

    def make(gen: torch.Generator) -> tuple[float, int, int, float, float, float]:
        memory = float(torch.randint(10**6, 10**12, (1,), generator=gen)) * 1.37
        world = int(torch.randint(1, 1025, (1,), generator=gen))
        stage = int(torch.randint(0, 4, (1,), generator=gen))
        w, g, o = ((4, 4, 8), (2, 2, 12), (2, 4, 8))[int(torch.randint(0, 3, (1,), generator=gen))]
        return memory, world, stage, w, g, o

    fixed = [(80e9, 8, 3, 4, 4, 8), (80e9, 8, 0, 4, 4, 8), (80e9, 8, 1, 4, 4, 8),
             (80e9, 64, 2, 4, 4, 8), (80e9, 1, 3, 2, 2, 12), (1000.0, 3, 3, 4, 4, 8)]
    cases = fixed + random_cases(make, n=40)
    for n, args in enumerate(cases, start=1):
        got = _call(fn, args, "max_parameters", n)
        if isinstance(got, bool) or not isinstance(got, int):
            raise CheckFailure(
                f"case {n}: max_parameters{args} returned {got!r} ({type(got).__name__}); "
                "expected a whole number of parameters as a Python int (round down: a fraction "
                "of a parameter does not fit)"
            )
        expected = _max_parameters_reference(*args)
        if got != expected:
            hint = ""
            if args[2] < 3 and got == _all_sharded(*args):
                hint = (f"; that is memory * world_size / (w + g + o), as if stage {args[2]} "
                        "sharded everything: stage 1 shards only the optimizer state, stage 2 "
                        "also the gradients, stage 3 also the weights")
            elif got > expected:
                hint = "; so many parameters would need more than `memory` bytes"
            raise CheckFailure(
                f"case {n}: max_parameters(memory={args[0]!r}, world_size={args[1]}, "
                f"stage={args[2]}, w={args[3]}, g={args[4]}, o={args[5]}) returned {got}, "
                f"expected {expected}{hint}"
            )
    return Passed(f"✓ max_parameters: {len(cases)} cases match the reference")


def _scaled_lr_reference(
    base_lr: float, base_batch: int, batch: int, step: int, warmup_steps: int
) -> float:
    target = base_lr * batch / base_batch
    if step < warmup_steps:
        return target * (step + 1) / warmup_steps
    return target


def scaled_lr(fn: Callable[[float, int, int, int, int], float]) -> str:
    """The linear scaling rule with linear warm-up: lr at ``step`` for a batch of ``batch``."""

    def make(gen: torch.Generator) -> tuple[float, int, int, int, int]:
        base_lr = float(torch.rand(1, generator=gen)) * 0.1 + 1e-3
        base_batch = int(2 ** torch.randint(4, 9, (1,), generator=gen))
        batch = int(2 ** torch.randint(4, 12, (1,), generator=gen))
        warmup = int(torch.randint(0, 20, (1,), generator=gen))
        step = int(torch.randint(0, 40, (1,), generator=gen))
        return base_lr, base_batch, batch, step, warmup

    cases = [(0.1, 256, 1024, 0, 0), (0.1, 256, 1024, 0, 10), (0.1, 256, 1024, 9, 10)]
    return compare(fn, _scaled_lr_reference, cases + random_cases(make, n=40), name="scaled_lr",
                   atol=1e-12, rtol=1e-9)


def _shard_reference(
    n: int, world_size: int, rank: int, shuffle: bool, seed: int, epoch: int
) -> torch.Tensor:
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle,
                                 seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def shard_indices(fn: Callable[[int, int, int, bool, int, int], torch.Tensor]) -> str:
    """The indices ``DistributedSampler`` gives ``rank``: (ceil(n / W),) int64."""

    def make(gen: torch.Generator) -> tuple[int, int, int, bool, int, int]:
        n = int(torch.randint(1, 30, (1,), generator=gen))
        world = int(torch.randint(1, 6, (1,), generator=gen))
        rank = int(torch.randint(0, world, (1,), generator=gen))
        shuffle = bool(torch.randint(0, 2, (1,), generator=gen))
        seed = int(torch.randint(0, 100, (1,), generator=gen))
        epoch = int(torch.randint(0, 5, (1,), generator=gen))
        return n, world, rank, shuffle, seed, epoch

    fixed = [(10, 4, 0, False, 0, 0), (10, 4, 3, False, 0, 0), (10, 3, 1, True, 0, 2)]
    return compare(fn, _shard_reference, fixed + random_cases(make, n=40), name="shard_indices")
