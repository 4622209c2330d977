"""Memory of training: the bytes each parameter costs, what ZeRO shards, and peaks measured.

Training a model of P parameters with AdamW keeps, per parameter::

    float32:           weights 4 B + gradients 4 B + Adam's moments m, v 8 B         = 16 B
    mixed (ZeRO's):    bf16/fp16 weights 2 B + gradients 2 B
                       + float32 master weights, m and v 12 B (the optimizer's part) = 16 B

(PyTorch's ``autocast``, used by ``mmcourse.train``, keeps float32 weights and gradients and
casts on the fly: the float32 row.) Data parallelism (DDP) replicates all of it on each of
N ranks. ZeRO shards it: stage 1 the optimizer state, stage 2 also the gradients, stage 3
(FSDP) also the weights, so that a rank holds::

    stage 0 (DDP):  P (w + g + o)        stage 2:  P w + P (g + o) / N
    stage 1:        P (w + g) + P o / N  stage 3:  P (w + g + o) / N

bytes, with (w, g, o) the bytes per parameter of weights, gradients and optimizer state.
Activations come on top and grow with the batch; :class:`PeakMemory` measures them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# bytes per parameter of (weights, gradients, optimizer state) under AdamW
BYTES_PER_PARAMETER: dict[str, tuple[int, int, int]] = {
    "fp32": (4, 4, 8),
    "mixed": (2, 2, 12),
}
STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class RankMemory:
    """Bytes one rank holds for weights, gradients and optimizer state."""

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def zero_memory(parameters: int, world_size: int, stage: int,
                precision: str = "fp32") -> RankMemory:
    """Per-rank bytes of a model with ``parameters`` scalars trained by AdamW under ZeRO
    ``stage`` (0: plain data parallelism, 3: weights, gradients and state all sharded)."""
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 0:
        raise ValueError(f"parameters must be a non-negative int, got {parameters!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if precision not in BYTES_PER_PARAMETER:
        raise ValueError(f"precision must be one of {tuple(BYTES_PER_PARAMETER)}, got {precision!r}")
    w, g, o = BYTES_PER_PARAMETER[precision]
    n = world_size
    return RankMemory(
        weights=parameters * w / (n if stage >= 3 else 1),
        gradients=parameters * g / (n if stage >= 2 else 1),
        optimizer=parameters * o / (n if stage >= 1 else 1),
    )


def local_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t`` held by this process: a sharded tensor (DTensor) counts its shard only."""
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def rank_memory(module: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> RankMemory:
    """The bytes of ``module``'s parameters, their gradients and ``optimizer``'s tensors
    (AdamW: m and v; its scalar step counters too) that this process actually holds."""
    params = list(module.parameters())
    weights = sum(local_bytes(p) for p in params)
    grads = sum(local_bytes(p.grad) for p in params if p.grad is not None)
    state = 0
    if optimizer is not None:
        for per_param in optimizer.state.values():
            state += sum(local_bytes(v) for v in per_param.values() if isinstance(v, torch.Tensor))
    return RankMemory(weights, grads, state)


class PeakMemory(TorchDispatchMode):
    """Bytes of the tensors allocated inside the ``with`` block, live at once: ``peak``.

    Works on any device: every operator's outputs are recorded as they are made (a dispatch
    mode sees each one), and dropped from the count when their storage is freed. Tensors
    made before the block (weights, inputs) are not counted. On CUDA,
    ``torch.cuda.max_memory_allocated`` tells the same from the allocator's side.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}  # id of a live storage -> its bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # a view or an in-place result shares its input's storage: nothing new (and an input
        # made before the block, such as a weight, must not count when viewed inside it)
        given = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs))
                 if isinstance(t, torch.Tensor) and not t.is_meta}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                if id(storage) not in given:
                    self._record(storage)
        return out

    def _record(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)
