"""Activation checkpointing: keep a block's input, drop its activations, recompute them later.

Backpropagation needs the activations of the forward pass, so a network of L blocks holds all
L blocks' activations between its forward and its backward. A checkpointed block keeps only
its input; the backward pass runs the block's forward once more to rebuild what it needs.
Memory of the activations drops from all blocks' to one block's (plus the inputs kept), for
the price of a second forward pass of each block (about a third more compute for a step).

:func:`checkpointed` wraps ``torch.utils.checkpoint.checkpoint`` (the non-reentrant kind,
which restores the random state so that dropout draws the same mask when recomputing) and
keeps BatchNorm's running statistics from being updated twice: the recomputation would
otherwise count each batch again in the running mean and variance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpointed", "recomputes"]


def recomputes(module: nn.Module) -> bool:
    """Whether ``module`` checkpoints now: its ``checkpoint_activations`` flag is set and
    gradients are being recorded (in evaluation without gradients there is nothing to save)."""
    return bool(getattr(module, "checkpoint_activations", False)) and torch.is_grad_enabled()


@contextlib.contextmanager
def _running_stats_kept(norms: list[_BatchNorm]) -> Iterator[None]:
    """Restore the running statistics of ``norms`` on exit (the recomputation's update undone)."""
    saved = [[t.clone() for t in (m.running_mean, m.running_var, m.num_batches_tracked)
              if t is not None] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, tensors in zip(norms, saved, strict=True):
                live = [t for t in (m.running_mean, m.running_var, m.num_batches_tracked)
                        if t is not None]
                for t, s in zip(live, tensors, strict=True):
                    t.copy_(s)


def checkpointed(fn: Callable[..., Any], *args: Any, module: nn.Module | None = None) -> Any:
    """``fn(*args)``, with the activations inside ``fn`` recomputed in the backward pass.
    Under ``torch.compile`` too.

    ``module``: the layers ``fn`` runs (default: ``fn`` itself when it is a module), searched
    for BatchNorm layers whose running statistics the recomputation must leave alone.
    """
    owner = module if module is not None else (fn if isinstance(fn, nn.Module) else None)
    norms = [m for m in owner.modules() if isinstance(m, _BatchNorm)
             and m.training and m.track_running_stats] if owner is not None else []
    if not norms or torch.compiler.is_compiling():
        # compiled, the recomputation is planned in the backward graph, which recomputes
        # values and never repeats the forward's in-place updates of the running statistics
        return checkpoint(fn, *args, use_reentrant=False)
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _running_stats_kept(norms)))
