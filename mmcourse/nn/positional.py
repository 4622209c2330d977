"""Sinusoidal positional encoding: each position becomes a vector of sines and cosines.

    PE[pos, 2i]     = sin(pos / 10000^(2i / d))
    PE[pos, 2i + 1] = cos(pos / 10000^(2i / d))

Pair i turns at the angular frequency w_i = 10000^(-2i/d), from 1 rad per step (i = 0) down to
almost 1/10000. Moving k steps rotates every pair by the angle k w_i, so PE[pos + k] is a
fixed linear map of PE[pos], and PE[p] . PE[q] depends only on p - q.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(
    T: int, d: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(T, d) table of sinusoidal encodings for positions 0..T-1 (``d`` may be odd)."""
    if T < 0 or d <= 0:
        raise ValueError(f"expected T >= 0 and d > 0, got T={T}, d={d}")
    pos = torch.arange(T, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=device)  # (ceil(d/2),)
    w = torch.exp(-math.log(base) * two_i / d)  # (ceil(d/2),) angular frequencies
    angle = pos * w  # (T, ceil(d/2))
    pe = torch.zeros(T, d, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe.to(dtype)


class PositionalEncoding(nn.Module):
    """Add sinusoidal position vectors to a batch of embeddings (B, T, d_model).

    The table for ``max_len`` positions is kept as a (non-persistent) buffer; longer inputs get
    a fresh table. Dropout follows the sum, as in the original Transformer. (That paper also
    multiplies token embeddings by sqrt(d_model) before the sum; do that in the embedding.)
    """

    def __init__(self, d_model: int, max_len: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.d_model:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected x of shape (B, T, {self.d_model}), got {got}")
        T = x.shape[1]
        if T <= self.pe.shape[0]:
            pe = self.pe[:T]  # (T, d_model)
        else:
            pe = sinusoidal_encoding(T, self.d_model, device=x.device)
        return self.dropout(x + pe.to(x.dtype))  # (B, T, d_model)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.pe.shape[0]}"
