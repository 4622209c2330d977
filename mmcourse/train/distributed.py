"""Data parallelism when launched by ``torchrun``: one process per device, gradients averaged.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script and tells each its
place through the environment: ``WORLD_SIZE`` (N), ``RANK`` (0..N-1) and ``LOCAL_RANK`` (its
GPU on this machine). Every process holds a full model replica and sees a different shard of
each global batch; after ``backward`` an all-reduce replaces every gradient by its mean over
the processes, so all replicas take the same step, the step of the whole global batch.
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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


def wrap(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(module)`` when in a process group, else the module itself.

    ``find_unused_parameters``: after each forward, DDP walks the autograd graph from the
    outputs and marks the parameters that took no part as ready, so that the all-reduce does
    not wait for their gradients (a parameter unused on every process keeps ``grad=None``, as
    in one process). The walk costs a little per step: on only when some may sit out.
    """
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters
    )
