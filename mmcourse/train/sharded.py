"""Sharded checkpoints: each process writes its own shards; any number of processes reads them.

Under FSDP no process holds the whole model, and gathering it on one would defeat the point.
``torch.distributed.checkpoint`` (DCP) has every process write the slices it owns, plus one
metadata file that says which slice of which tensor lies in which file. On load, each process
reads just the slices its own shards need, whatever the number of processes that wrote them
(resharding); a single process without a process group reads whole tensors, e.g. to evaluate
a model trained on many.

The folder ``PATH`` of ``fit(..., strategy="fsdp", checkpoint=PATH)``::

    PATH/latest                       the name of the newest complete epoch folder
    PATH/epoch-0003/.metadata         DCP: where each slice of each tensor lies
    PATH/epoch-0003/__0_0.distcp ...  DCP: model, loss, optimizer state, one file per process
    PATH/epoch-0003/trainer-rank0.pt  each process's epoch, history, schedule, RNG states

``latest`` is replaced atomically once every process has finished writing (and the older
folder is removed only then), so a crash while writing leaves the previous epoch readable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from mmcourse.train import distributed
from mmcourse.train.checkpoint import atomic_save, rng_state, set_rng_state

FORMAT = "mmcourse-sharded-checkpoint-1"
LATEST = "latest"


def _rank_world() -> tuple[int, int]:
    if distributed.active():
        import torch.distributed as dist

        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _trained(model: nn.Module, loss_fn: Any) -> nn.ModuleDict:
    """The modules whose parameters the optimizer updates, under fixed names."""
    modules = {"model": model}
    if isinstance(loss_fn, nn.Module) and next(loss_fn.parameters(), None) is not None:
        modules["loss_fn"] = loss_fn
    return nn.ModuleDict(modules)


@contextlib.contextmanager
def _single_process_intended() -> Iterator[None]:
    """Quiet DCP's notice that, without a process group, it assumes a single process: here
    that is what the caller asked for (``no_dist``), not a guess."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or "
                                "uninitialized, assuming the intent is to (load|save) in a single")
        yield


def latest_folder(path: str | os.PathLike) -> Path | None:
    """The newest complete epoch folder of the sharded checkpoint ``path``; None if none yet.

    A file at ``path`` (a single-file checkpoint, e.g. of a DDP run) is a clear error.
    """
    path = Path(path)
    if path.is_file():
        raise ValueError(
            f"{path} is a single-file checkpoint (written with strategy 'ddp' or in one "
            "process); a sharded checkpoint is a folder: read it with load_checkpoint"
        )
    pointer = path / LATEST
    if not pointer.is_file():
        return None
    folder = path / pointer.read_text().strip()
    if not (folder / ".metadata").is_file():
        raise RuntimeError(f"sharded checkpoint {path}: {pointer} names {folder}, which is incomplete")
    return folder


def save_sharded(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    loss_fn: Any = None,
    epoch: int = 0,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    **extra: Any,
) -> Path:
    """Write a sharded checkpoint of epoch ``epoch`` into the folder ``path`` (every process
    calls it). Tensors, sharded or not: the model, the loss's parameters, the optimizer state
    and the state dicts in ``tensors``; per process: scaler, scheduler, RNG states, ``extra``."""
    rank, world = _rank_world()
    path = Path(path)
    folder = path / f"epoch-{epoch:04d}"
    if rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # left by a run that stopped while writing this epoch
            shutil.rmtree(folder)
    distributed.barrier()
    trained = _trained(model, loss_fn)
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if "loss_fn" in trained:
        state["loss_fn"] = get_model_state_dict(trained["loss_fn"])
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(trained, optimizer)
    for name, tensor_state in (tensors or {}).items():
        if name in state:
            raise ValueError(f"tensors: the name {name!r} is taken; pick another")
        state[name] = tensor_state
    with _single_process_intended():
        dcp.save(state, checkpoint_id=folder, no_dist=not distributed.active())
    atomic_save({
        "format": FORMAT,
        "epoch": epoch,
        "world_size": world,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        **extra,
    }, folder / f"trainer-rank{rank}.pt")
    distributed.barrier()  # every process has written its part: the epoch is complete
    if rank == 0:
        atomic_save_text(path / LATEST, folder.name)
        for old in path.glob("epoch-*"):
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return folder


def atomic_save_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_sharded(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    loss_fn: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    restore_rng: bool = False,
) -> dict[str, Any]:
    """Read the sharded checkpoint in the folder ``path`` into the objects given.

    Works in a process group (each process reads the slices of its own shards, however many
    processes wrote them) and in a single process (whole tensors: e.g. a plain model built as
    for training, to evaluate it). ``tensors``: state dicts to fill from the entries of that
    name, if the checkpoint has them. Returns this process's trainer state (that of rank 0 if
    the run that wrote it had fewer processes), with ``"tensors"``: the names filled.
    """
    folder = latest_folder(path)
    if folder is None:
        raise FileNotFoundError(f"no sharded checkpoint in {path} (no {Path(path) / LATEST})")
    rank, _ = _rank_world()
    trainer_file = folder / f"trainer-rank{rank}.pt"
    if not trainer_file.is_file():
        trainer_file = folder / "trainer-rank0.pt"
    try:
        trainer = torch.load(trainer_file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise RuntimeError(f"sharded checkpoint {folder}: {trainer_file.name} is unreadable: {err}") from err
    if not isinstance(trainer, dict) or trainer.get("format") != FORMAT:
        raise ValueError(f"{folder} is not an mmcourse sharded checkpoint (expected {FORMAT!r})")

    stored = {key.split(".", 1)[0] for key in dcp.FileSystemReader(folder).read_metadata()
              .state_dict_metadata}
    trained = _trained(model, loss_fn) if model is not None else None
    state: dict[str, Any] = {}
    if model is not None:
        state["model"] = get_model_state_dict(model)
        if "loss_fn" in trained:
            if "loss_fn" not in stored:
                raise ValueError(
                    f"sharded checkpoint {folder} holds no state for the parameters of loss_fn "
                    f"({type(loss_fn).__name__}): it was written by a run with another loss"
                )
            state["loss_fn"] = get_model_state_dict(trained["loss_fn"])
    if optimizer is not None:
        if trained is None:
            raise ValueError("loading an optimizer's state needs the model it trains: pass model")
        if "optimizer" not in stored:
            raise ValueError(f"sharded checkpoint {folder} holds no optimizer state to load")
        state["optimizer"] = get_optimizer_state_dict(trained, optimizer)
    filled = [name for name in (tensors or {}) if name in stored]
    for name in filled:
        state[name] = tensors[name]
    if state:
        with _single_process_intended():
            dcp.load(state, checkpoint_id=folder, no_dist=not distributed.active())
    if model is not None:
        set_model_state_dict(model, state["model"])
        if "loss_fn" in state:
            set_model_state_dict(trained["loss_fn"], state["loss_fn"])
    if optimizer is not None:
        set_optimizer_state_dict(trained, optimizer, state["optimizer"])
    for name, obj in (("scaler", scaler), ("scheduler", scheduler)):
        if obj is None:
            continue
        if trainer[name] is None:
            raise ValueError(f"sharded checkpoint {folder} holds no {name} state to load")
        obj.load_state_dict(trainer[name])
    if restore_rng:
        set_rng_state(trainer["rng"])
    return {**trainer, "tensors": filled}
