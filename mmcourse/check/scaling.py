"""Checkers for the scaling-out exercises: gradient averaging, learning-rate scaling, sharding."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DistributedSampler

from mmcourse.check.comparison import compare, random_cases


def _combine_reference(grads: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    w = sizes.to(grads.dtype)  # (W,)
    return (w[:, None] * grads).sum(0) / w.sum()  # (P,)


def combine_shard_gradients(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    """(W, P) per-shard mean-loss gradients and (W,) shard sizes -> (P,) full-batch gradient."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        w = int(torch.randint(1, 6, (1,), generator=gen))
        p = int(torch.randint(1, 9, (1,), generator=gen))
        grads = torch.randn(w, p, generator=gen, dtype=torch.float64)
        sizes = torch.randint(1, 40, (w,), generator=gen)
        return grads, sizes

    cases = random_cases(make)
    # equal shard sizes: the plain mean DDP's all-reduce computes must come out too
    cases.append((torch.arange(6.0, dtype=torch.float64).reshape(3, 2), torch.tensor([4, 4, 4])))
    return compare(fn, _combine_reference, cases, name="combine_shard_gradients")


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
