"""Data parallelism when launched by ``torchrun``: one process per device, gradients averaged.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script and tells each its
place through the environment: ``WORLD_SIZE`` (N), ``RANK`` (0..N-1) and ``LOCAL_RANK`` (its
GPU on this machine). Every process sees a different shard of each global batch. Two
strategies:

- ``"ddp"`` (DistributedDataParallel): every process holds a full model replica; after
  ``backward`` an all-reduce replaces every gradient by its mean over the processes, so all
  replicas take the same step, the step of the whole global batch.
- ``"fsdp"`` (FSDP2, ``torch.distributed.fsdp.fully_shard``; ZeRO stage 3): every process
  holds 1/N of each parameter, of its gradient and of the optimizer state. Before a layer
  runs, an all-gather assembles its full weights (freed again after its forward and its
  backward); after its backward, a reduce-scatter leaves each process the mean gradient of its
  own shard, which its optimizer updates. Same step as DDP, a fraction of the memory.

Across machines, ``torchrun --nnodes=M --nproc_per_node=N --rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT`` on each machine forms one group of M * N processes.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a ``torchrun`` launch (rank 0 of 1 when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Read ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` from the environment."""
    values = {}
    for key, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", None)):
        raw = os.environ.get(key)
        try:
            values[key] = int(raw) if raw not in (None, "") else default
        except ValueError:
            raise ValueError(f"expected an integer in environment variable {key}, got {raw!r}") from None
    rank, world = values["RANK"], values["WORLD_SIZE"]
    local = values["LOCAL_RANK"] if values["LOCAL_RANK"] is not None else rank
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return DistEnv(rank, world, local)


def process_device(env: DistEnv, device: torch.device) -> torch.device:
    """Under DDP on CUDA each process takes GPU ``LOCAL_RANK``; elsewhere ``device`` stays."""
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    return device


def init(env: DistEnv, device: torch.device) -> bool:
    """Join the process group (nccl on CUDA, gloo otherwise); True if this call created it.

    The group then lives as long as the process (it is destroyed at exit): creating a second
    default group on the same rendezvous store is not reliable, so a script that calls ``fit``
    twice reuses the first group.
    """
    if not env.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, **kwargs)
    atexit.register(cleanup)
    return True


def cleanup() -> None:
    """Leave the process group and free it now, while Python is still fully alive.

    The group's C++ worker threads must be joined before the interpreter shuts down: a thread
    that touches Python during shutdown is killed, which aborts the process. Collecting
    garbage drops the last references (e.g. a DDP wrapper caught in a reference cycle).
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes, in place (a no-op in a single process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if active():
        dist.barrier()


def check_strategy(strategy: str | None) -> str:
    """The strategy's name: ``"ddp"`` (the default) or ``"fsdp"``; a clear error otherwise."""
    if strategy is None:
        return "ddp"
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {strategy!r}")
    return strategy


def wrap(
    module: nn.Module,
    device: torch.device,
    find_unused_parameters: bool = False,
    strategy: str | None = "ddp",
    units: list[nn.Module] | None = None,
) -> nn.Module:
    """``module`` ready for data parallelism when in a process group, else ``module`` itself.

    ``strategy="ddp"``: ``DistributedDataParallel(module)``. ``find_unused_parameters``: after
    each forward, DDP walks the autograd graph from the outputs and marks the parameters that
    took no part as ready, so that the all-reduce does not wait for their gradients (a
    parameter unused on every process keeps ``grad=None``, as in one process). The walk costs
    a little per step: on only when some may sit out.

    ``strategy="fsdp"``: ``module`` itself, its parameters sharded in place by :func:`shard`
    (``units``: its groups; default :func:`shard_units`); make the optimizer afterwards, from
    the sharded parameters.
    """
    strategy = check_strategy(strategy)
    if not active():
        return module
    if strategy == "fsdp":
        return shard(module, units)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The children of ``model`` that hold parameters, looking inside containers
    (``ModuleDict``, ``ModuleList``): for a ``MultimodalClassifier``, each encoder, the fusion,
    the head and each per-modality head; for an ``nn.Sequential``, each layer with weights."""
    units = []
    for child in model.children():
        if isinstance(child, (nn.ModuleDict, nn.ModuleList)):
            units.extend(shard_units(child))
        elif _has_parameters(child):
            units.append(child)
    return units


def shard(
    module: nn.Module, units: list[nn.Module] | None = None, reshard_after_forward: bool = True
) -> nn.Module:
    """Shard ``module``'s parameters over the process group with FSDP2, in place.

    Each of ``units`` (default :func:`shard_units` of ``module``) becomes one ``fully_shard``
    group: its parameters are all-gathered together just before it runs and freed after
    (``reshard_after_forward``; False keeps them until the backward: ZeRO-2-like, more memory,
    one all-gather less). ``module`` itself is sharded last, for the parameters left over.
    Groups already sharded (a second ``fit`` on the same model) are kept as they are.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    for unit in shard_units(module) if units is None else units:
        if not isinstance(unit, FSDPModule):
            fully_shard(unit, reshard_after_forward=reshard_after_forward)
    if not isinstance(module, FSDPModule):
        fully_shard(module, reshard_after_forward=reshard_after_forward)
    return module


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


@contextlib.contextmanager
def gradient_sync(wrapped: nn.Module, sync: bool) -> Iterator[None]:
    """Within: gradients are (``sync``) or are not averaged over the processes in ``backward``.

    Gradient accumulation needs the average only after the last micro-batch: DDP's
    ``no_sync()`` skips the all-reduce, FSDP's ``set_requires_gradient_sync(False)`` the
    reduce-scatter (the unsharded gradients add up locally until then).
    """
    if sync or not active():
        yield
        return
    if isinstance(wrapped, nn.parallel.DistributedDataParallel):
        with wrapped.no_sync():
            yield
        return
    from torch.distributed.fsdp import FSDPModule

    if isinstance(wrapped, FSDPModule):
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
        return
    yield


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with whole tensors, on every process (a collective under FSDP:
    call it on all ranks); a plain module's own state dict otherwise."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
