"""Batches for the trainer: a dict of tensors, a Dataset, a DataLoader, or a pair (x, y).

Whatever comes in, the loop sees an iterable of dict batches with a ``"label"`` key. A whole
split given as a dict of tensors is moved to the device once and cut into batches by a
shuffled index, so there is no DataLoader (no worker processes, no host-to-device copies).

Shuffling depends only on ``(seed, epoch)``, so epoch 5 sees the same order whether the run
started at epoch 0 or was resumed from a checkpoint. Under data parallelism (``world_size >
1``) every global batch of ``batch_size`` indices is dealt out round-robin to the ranks,
exactly as one process would have used it, so the averaged gradient is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

LABEL = "label"
PAIR_INPUT = "x"  # the key under which the x of an (x, y) pair is stored


class PairBatch(dict):
    """A batch made from an (x, y) pair: ``{"x": x, "label": y}``; the model gets x."""


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return type(value)((k, _to_device(v, device)) for k, v in value.items())
    return value


def as_batch(raw: Any, where: str = "batch") -> dict:
    """A dict batch from what a loader yields: a dict, or a pair (x, y)."""
    if isinstance(raw, Mapping):
        if LABEL not in raw:
            raise ValueError(
                f"{where}: expected a dict with a {LABEL!r} key, got keys {sorted(raw)}"
            )
        return raw if isinstance(raw, dict) else dict(raw)
    if isinstance(raw, (tuple, list)) and len(raw) == 2:
        return PairBatch({PAIR_INPUT: raw[0], LABEL: raw[1]})
    raise TypeError(
        f"{where}: expected a dict of tensors with a {LABEL!r} key or a pair (x, y), "
        f"got {type(raw).__name__}"
    )


def default_collate(items: list) -> Any:
    """``mmcourse.data.collate`` when the data package has it, else torch's default."""
    try:
        from mmcourse.data import collate
    except ImportError:
        collate = None
    if collate is not None and items and isinstance(items[0], Mapping):
        return collate(items)
    return torch.utils.data.default_collate(items)


def shard_batches(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    pad: bool = True,
) -> list[torch.Tensor]:
    """Index batches of one epoch for one rank.

    The permutation of ``range(n)`` is the same on every rank (seeded by ``seed + epoch``).
    It is cut into global batches of ``batch_size``; rank r takes entries r, r+W, r+2W, ...
    of each. A last global batch whose size is not a multiple of W is padded with indices
    from the start of the permutation (as ``DistributedSampler`` pads), so that every rank
    takes the same number of steps. With ``pad=False`` (evaluation) nothing is repeated and
    a rank may get a shorter last batch, or none.
    """
    if n <= 0:
        raise ValueError(f"expected a non-empty split, got {n} samples")
    if shuffle:
        gen = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    batches = []
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        if world_size > 1:
            short = (-len(chunk)) % world_size
            if short and pad:
                chunk = torch.cat([chunk, order[:short]])
            chunk = chunk[rank::world_size]
        if len(chunk):
            batches.append(chunk)
    return batches


class Split:
    """One split of data, ready to be iterated epoch after epoch as dict batches on a device."""

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int,
        device: torch.device,
        name: str = "train",
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.name, self.device, self.batch_size = name, device, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.tensors: dict | None = None
        self.dataset: Dataset | None = None
        self.loader: DataLoader | None = None
        self.pair = False
        if isinstance(data, DataLoader):
            self.loader = data
        elif isinstance(data, Mapping):
            self.tensors = self._check_tensors(dict(data))
        elif isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data
        ):
            self.tensors = self._check_tensors({PAIR_INPUT: data[0], LABEL: data[1]})
            self.pair = True
        elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
            self.dataset = data
        else:
            raise TypeError(
                f"{name}: expected a dict of tensors (a whole split), a Dataset of dict items, "
                f"a DataLoader yielding dicts, or a pair of tensors (x, y); got {type(data).__name__}"
            )

    def _check_tensors(self, data: dict) -> dict:
        if LABEL not in data:
            raise ValueError(
                f"{self.name}: expected a dict with a {LABEL!r} key, got keys {sorted(data)}"
            )
        y = data[LABEL]
        if not isinstance(y, torch.Tensor) or y.ndim == 0:
            raise TypeError(
                f"{self.name}: expected {LABEL!r} to be a tensor of shape (N, ...), "
                f"got {type(y).__name__}"
            )
        n = len(y)
        for key, value in data.items():
            if not hasattr(value, "__len__") or len(value) != n:
                size = len(value) if hasattr(value, "__len__") else type(value).__name__
                raise ValueError(
                    f"{self.name}: expected every entry to hold N={n} samples like "
                    f"{LABEL!r}, but {key!r} has {size}"
                )
        return {k: _to_device(v, self.device) for k, v in data.items()}

    def __len__(self) -> int:
        """Samples in this split (before sharding)."""
        if self.tensors is not None:
            return len(self.tensors[LABEL])
        if self.dataset is not None:
            return len(self.dataset)
        return len(self.loader.dataset)  # type: ignore[union-attr, arg-type]

    def num_batches(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        return -(-len(self) // self.batch_size)

    def epoch(self, epoch: int, *, shuffle: bool, pad: bool = True) -> Iterator[dict]:
        """The batches of one epoch, on the device."""
        if self.loader is not None:
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for raw in self.loader:
                yield _to_device(as_batch(raw, f"{self.name} batch"), self.device)
            return
        index_batches = shard_batches(
            len(self),
            self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            pad=pad,
        )
        if self.tensors is not None:
            kind = PairBatch if self.pair else dict
            for idx in index_batches:
                yield kind((k, _take(v, idx, self.device)) for k, v in self.tensors.items())
            return
        for idx in index_batches:
            items = [self.dataset[int(i)] for i in idx]  # type: ignore[index]
            raw = default_collate(items)
            yield _to_device(as_batch(raw, f"{self.name} item"), self.device)


def _take(value: Any, idx: torch.Tensor, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value[idx.to(value.device)]
    return [value[int(i)] for i in idx]  # e.g. the raw texts of a split
