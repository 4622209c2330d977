"""Checkpoints that survive a crash: atomic writes, and everything needed to resume exactly.

A checkpoint is written to a temporary file in the same folder, flushed to disk (``fsync``)
and only then renamed over the old one with ``os.replace``, which is atomic on POSIX and
Windows. A crash during the write leaves the previous checkpoint untouched; readers never
see half a file.

Resuming exactly needs more than the weights: optimizer moments, the grad scaler's scale,
the scheduler's step, the epoch, and the random number generators' states (dropout masks and
data order must continue as if the run had never stopped).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "mmcourse-checkpoint-1"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` so that ``path`` is always either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global state)
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    legacy = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    np.random.set_state(legacy)  # noqa: NPY002 (the global state seed_everything seeds)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int = 0,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    **extra: Any,
) -> Path:
    """Write model, optimizer, scaler, scheduler, RNG states and ``epoch`` (epochs done)."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        **extra,
    }
    return atomic_save(state, path)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    restore_rng: bool = False,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint and load it into the objects given; returns the whole dict.

    A missing, truncated or foreign file raises an error that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint {path} is unreadable (truncated or corrupt): {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mmcourse checkpoint (expected format {FORMAT!r})")
    if model is not None:
        model.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scaler", scaler), ("scheduler", scheduler)):
        if obj is None:
            continue
        if state[name] is None:
            raise ValueError(f"checkpoint {path} holds no {name} state to load")
        obj.load_state_dict(state[name])
    if restore_rng:
        set_rng_state(state["rng"])
    return state
