"""The symmetric InfoNCE (CLIP) loss: matching pairs close, every other pair apart.

For a batch of N pairs (a_i, b_i), with unit vectors and temperature tau,

    S_ij = cos(a_i, b_j) / tau                              (N, N)
    L    = 1/2 [ CE(S, diag) + CE(S^T, diag) ]

where CE(S, diag) = -1/N sum_i log softmax(S_i)_i. For random embeddings the loss is about
ln N: every candidate is equally likely.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.validate import value_checks_enabled


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every a_i with every b_j: (N, d), (M, d) -> (N, M)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"expected a (N, d) and b (M, d) with the same d, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE of paired embeddings a, b (N, d); a_i and b_i belong together.

    ``temperature`` must be positive. A number is always checked; a tensor where reading its
    value costs no host sync (see :mod:`mmcourse.nn.validate`).
    """
    _check_pairs(a, b)
    if isinstance(temperature, torch.Tensor):
        if value_checks_enabled() and not bool((temperature > 0).all()):
            raise ValueError(f"expected a positive temperature, got {temperature.tolist()}")
    elif not temperature > 0:
        raise ValueError(f"expected a positive temperature, got {temperature!r}")
    return _symmetric_cross_entropy(a, b, temperature)


def _check_pairs(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"expected paired embeddings of one shape (N, d), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _symmetric_cross_entropy(
    a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    logits = similarity(a, b) / temperature  # (N, N)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class InfoNCE(nn.Module):
    """InfoNCE with a learnable temperature, kept as log(1/tau) and clamped to 1/tau <= 100."""

    def __init__(self, temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"expected a positive temperature, got {temperature}")
        log_scale = torch.tensor(math.log(1.0 / temperature))
        self.log_scale = nn.Parameter(log_scale) if learnable else nn.Buffer(log_scale)
        self.max_log_scale = math.log(max_scale)

    @property
    def temperature(self) -> torch.Tensor:
        return 1.0 / self.log_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pairs(a, b)
        return _symmetric_cross_entropy(a, b, self.temperature)  # positive by construction
