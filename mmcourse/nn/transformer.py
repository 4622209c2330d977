"""The Transformer encoder: self-attention and a feed-forward network, each with a residual.

    post-norm (the original, norm_first=False):  x = LN(x + MHA(x));  x = LN(x + FFN(x))
    pre-norm  (norm_first=True):                 x = x + MHA(LN(x));  x = x + FFN(LN(x))
    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2       W_1 (d_model, d_ff), W_2 (d_ff, d_model)

Parameter names follow ``nn.TransformerEncoderLayer`` (``self_attn``, ``linear1``, ``linear2``,
``norm1``, ``norm2``), so its weights copy over with :meth:`TransformerEncoderLayer.load_from_torch`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.attention import MultiHeadAttention

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
POOLS = ("none", "mean", "first")


def masked_mean(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of x (B, T, E) over the valid positions (key_padding_mask (B, T), True = padding).

    A sequence with no valid position pools to zero.
    """
    if x.dim() != 3:
        raise ValueError(f"expected x of shape (B, T, E), got {tuple(x.shape)}")
    if key_padding_mask is None:
        return x.mean(dim=1)  # (B, E)
    if key_padding_mask.shape != x.shape[:2] or key_padding_mask.dtype != torch.bool:
        raise ValueError(
            f"expected a boolean key_padding_mask of shape (B, T) = {tuple(x.shape[:2])}, "
            f"got {key_padding_mask.dtype} of shape {tuple(key_padding_mask.shape)}"
        )
    valid = (~key_padding_mask).to(x.dtype)[..., None]  # (B, T, 1)
    return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)  # (B, E)


class TransformerEncoderLayer(nn.Module):
    """One encoder block on (B, T, d_model): self-attention, then FFN, residuals and LayerNorm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        *,
        activation: Literal["relu", "gelu"] = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"expected activation in {sorted(ACTIVATIONS)}, got {activation!r}")
        d_ff = ffn_dim or 4 * d_model
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)  # W_2, b_2
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout = nn.Dropout(dropout)  # inside the FFN
        self.dropout1 = nn.Dropout(dropout)  # on the attention branch
        self.dropout2 = nn.Dropout(dropout)  # on the FFN branch
        self.activation = activation
        self.norm_first = norm_first

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """FFN(x) = act(x W_1 + b_1) W_2 + b_2, applied at every position."""
        h = ACTIVATIONS[self.activation](self.linear1(x))  # (B, T, d_ff)
        return self.linear2(self.dropout(h))  # (B, T, d_model)

    def attend(self, x: torch.Tensor, **masks: torch.Tensor | bool | None) -> torch.Tensor:
        out, _ = self.self_attn(x, **masks)
        return self.dropout1(out)  # (B, T, d_model)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        masks = dict(key_padding_mask=key_padding_mask, attn_mask=attn_mask, is_causal=is_causal)
        if self.norm_first:
            x = x + self.attend(self.norm1(x), **masks)
            return x + self.dropout2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.attend(x, **masks))
        return self.norm2(x + self.dropout2(self.ffn(x)))  # (B, T, d_model)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> TransformerEncoderLayer:
        """Copy the weights of a ``nn.TransformerEncoderLayer`` of the same size."""
        if layer.norm_first != self.norm_first:
            raise ValueError(
                f"expected norm_first={self.norm_first} as in this layer, got {layer.norm_first}"
            )
        kind = {1: "relu", 2: "gelu"}.get(getattr(layer, "activation_relu_or_gelu", 0))
        if kind != self.activation:
            raise ValueError(f"expected activation {self.activation!r}, got {layer.activation}")
        self.self_attn.load_from_torch(layer.self_attn)
        for name in ("linear1", "linear2", "norm1", "norm2"):
            getattr(self, name).load_state_dict(getattr(layer, name).state_dict())
        return self


class TransformerEncoder(nn.Module):
    """A stack of encoder layers on (B, T, d_model), optionally pooled to (B, d_model).

    ``pool="mean"`` averages over the valid positions (padding excluded), ``"first"`` takes
    position 0 (a [CLS]-style token), ``"none"`` returns every position. ``final_norm`` adds
    a LayerNorm after the stack; it defaults to ``norm_first`` (pre-norm stacks need one).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_layers: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        *,
        activation: Literal["relu", "gelu"] = "relu",
        norm_first: bool = False,
        final_norm: bool | None = None,
        pool: Literal["none", "mean", "first"] = "none",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"expected pool in {POOLS}, got {pool!r}")
        if num_layers < 1:
            raise ValueError(f"expected num_layers >= 1, got {num_layers}")
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                d_model, nhead, ffn_dim, dropout, activation=activation,
                norm_first=norm_first, layer_norm_eps=layer_norm_eps,
            )
            for _ in range(num_layers)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if final_norm else None
        self.pool = pool

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                      is_causal=is_causal)  # (B, T, d_model)
        if self.norm is not None:
            x = self.norm(x)
        if self.pool == "mean":
            return masked_mean(x, key_padding_mask)  # (B, d_model)
        if self.pool == "first":
            return x[:, 0]  # (B, d_model)
        return x

    @torch.no_grad()
    def load_from_torch(self, encoder: nn.TransformerEncoder) -> TransformerEncoder:
        """Copy the weights of a ``nn.TransformerEncoder`` with as many layers."""
        if len(encoder.layers) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layers, got {len(encoder.layers)}")
        if (encoder.norm is None) != (self.norm is None):
            raise ValueError(f"expected a final norm: {self.norm is not None}, as in this encoder")
        for mine, theirs in zip(self.layers, encoder.layers, strict=True):
            mine.load_from_torch(theirs)
        if self.norm is not None:
            self.norm.load_state_dict(encoder.norm.state_dict())
        return self
