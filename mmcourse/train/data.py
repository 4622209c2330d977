"""Batches for the trainer: a dict of tensors, a Dataset, a DataLoader, or a pair (x, y).

Whatever comes in, the loop sees an iterable of dict batches with a ``"label"`` key. A whole
split given as a dict of tensors is moved to the device once and cut into batches by a
shuffled index, so there is no DataLoader (no worker processes, no copy of the data per batch).

Shuffling depends only on ``(seed, epoch)``, so epoch 5 sees the same order whether the run
started at epoch 0 or was resumed from a checkpoint. Under data parallelism (``world_size >
1``) every global batch of ``batch_size`` indices is dealt out round-robin to the ranks,
exactly as one process would have used it, so the averaged gradient is the same. An epoch's
index goes to the device in one copy before its first batch; each batch is then cut out on
the device, with no host read.

Input values are checked (``check``, e.g. the model's ``check_input``) where reading them costs
little: a whole split once, when the Split is made, before it moves to the device; a Dataset
or a DataLoader batch by batch, on the CPU, before the batch moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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
        check: Callable[[dict], Any] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.name, self.device, self.batch_size = name, device, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.check = check
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
            self.pair = True
            self.tensors = self._check_tensors({PAIR_INPUT: data[0], LABEL: data[1]})
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
        if self.check is not None:  # once, before the split moves to the device
            self.check(PairBatch(data) if self.pair else data)
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
        """The batches of one epoch, on the device.

        For a whole split, the epoch's index is made here, before the first batch: one copy to
        the device (and one to a Python list, for entries that are lists).
        """
        if self.loader is not None:
            return self._loader_batches(epoch)
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
        if self.tensors is None:
            return self._dataset_batches([idx.tolist() for idx in index_batches])
        on_host = None
        if any(not isinstance(v, torch.Tensor) for v in self.tensors.values()):
            on_host = [idx.tolist() for idx in index_batches]
        on_device: list[torch.Tensor] = []
        if index_batches:
            sizes = [len(idx) for idx in index_batches]
            whole = torch.cat(index_batches).to(self.device, non_blocking=True)
            on_device = list(whole.split(sizes))
        return self._tensor_batches(on_device, on_host)

    def _tensor_batches(
        self, on_device: list[torch.Tensor], on_host: list[list[int]] | None
    ) -> Iterator[dict]:
        kind = PairBatch if self.pair else dict
        for i, idx in enumerate(on_device):
            yield kind(
                (k, v[idx] if isinstance(v, torch.Tensor) else [v[j] for j in on_host[i]])
                for k, v in self.tensors.items()
            )

    def _dataset_batches(self, index_batches: list[list[int]]) -> Iterator[dict]:
        for idx in index_batches:
            raw = default_collate([self.dataset[i] for i in idx])  # type: ignore[index]
            yield self._checked(as_batch(raw, f"{self.name} item"))

    def _loader_batches(self, epoch: int) -> Iterator[dict]:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for raw in self.loader:  # type: ignore[union-attr]
            yield self._checked(as_batch(raw, f"{self.name} batch"))

    def _checked(self, batch: dict) -> dict:
        """A batch from a Dataset or DataLoader, checked (on the CPU), then on the device."""
        if self.check is not None:
            self.check(batch)
        return _to_device(batch, self.device)
