"""Text encoder: padded token ids (B, T) with lengths (B,) -> one feature vector (B, out_dim).

Every backbone starts by embedding the ids (a learned row per word; the pad row stays zero and
gets no gradient), because an id is a name, not a quantity: feeding raw ids to a recurrent
layer would treat word 7 as seven times word 1. Then one of

- ``"bag"``: the mean of the embeddings over the valid tokens (bag of embeddings, word order
  ignored, the cheapest baseline);
- ``"lstm"`` / ``"gru"``: a :class:`~mmcourse.nn.sequence.SequenceEncoder` over the embedded
  sequence (packed, so padding never enters the recurrence);
- ``"transformer"``: sinusoidal positions added to the embeddings, a Transformer encoder with
  a key padding mask, then the mean over the valid tokens.

A linear layer maps the pooled vector to ``out_dim``. Padding is invisible to every backbone:
a text gives the same features alone as inside a padded batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from mmcourse.nn.activation_checkpointing import checkpointed, recomputes
from mmcourse.nn.positional import PositionalEncoding
from mmcourse.nn.sequence import SequenceEncoder, check_lengths, length_mask
from mmcourse.nn.transformer import TransformerEncoder, masked_mean
from mmcourse.nn.validate import positive_int, value_checks_enabled

__all__ = ["TextEncoder", "BACKBONES"]

BACKBONES = ("bag", "lstm", "gru", "transformer")


class TextEncoder(nn.Module):
    """Token ids (B, T) and lengths (B,) -> features (B, out_dim).

    Args:
        vocab_size: number of ids ``V`` (ids must lie in ``[0, V)``).
        out_dim: width of the output (a linear projection, no final activation); use the
            number of classes to make the encoder a classifier.
        backbone: ``"bag"``, ``"lstm"``, ``"gru"`` or ``"transformer"``.
        embed_dim: embedding width ``d`` (also the Transformer's model width).
        hidden_dim: LSTM/GRU hidden units per direction; the Transformer's FFN width is
            ``4 * embed_dim`` unless ``ffn_dim`` is given.
        num_layers: recurrent or Transformer layers.
        num_heads: attention heads (``embed_dim`` must divide by it).
        bidirectional: LSTM/GRU only: also read the text backwards.
        dropout: dropout on the embeddings, inside the Transformer, and before the projection.
        padding_idx: the pad id; its embedding row is zero and never updated.
        max_len: the longest text the Transformer's positional table covers.
        checkpoint_activations: during training keep only the input of each Transformer layer
            (or of the LSTM/GRU as a whole) and recompute the activations in the backward pass
            (less memory, one more forward; see :mod:`mmcourse.nn.activation_checkpointing`).
    """

    def __init__(
        self,
        vocab_size: int,
        out_dim: int = 64,
        *,
        backbone: str = "lstm",
        embed_dim: int = 64,
        hidden_dim: int = 64,
        num_layers: int = 1,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        padding_idx: int = 0,
        max_len: int = 256,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        if backbone not in BACKBONES:
            raise ValueError(f"expected backbone in {BACKBONES}, got {backbone!r}")
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.out_dim = positive_int("out_dim", out_dim)
        positive_int("embed_dim", embed_dim)
        positive_int("num_layers", num_layers)
        if not 0 <= padding_idx < vocab_size:
            raise ValueError(f"expected padding_idx in [0, {vocab_size}), got {padding_idx}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), got {dropout!r}")
        self.backbone, self.padding_idx = backbone, padding_idx
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.drop = nn.Dropout(dropout)
        if backbone in ("lstm", "gru"):
            self.body = SequenceEncoder(
                embed_dim,
                positive_int("hidden_dim", hidden_dim),
                cell=backbone,
                num_layers=num_layers,
                bidirectional=bidirectional,
                dropout=dropout,
            )
            width = self.body.out_dim
        elif backbone == "transformer":
            if embed_dim % positive_int("num_heads", num_heads):
                raise ValueError(
                    f"expected embed_dim divisible by num_heads, got {embed_dim} and {num_heads}"
                )
            self.pos = PositionalEncoding(embed_dim, max_len=positive_int("max_len", max_len))
            self.body = TransformerEncoder(
                embed_dim,
                num_heads,
                num_layers,
                ffn_dim=ffn_dim or 4 * embed_dim,
                dropout=dropout,
                norm_first=True,  # pre-norm (with a final LayerNorm): stable without warm-up
                pool="mean",  # the mean over the valid positions
            )
            width = embed_dim
        else:
            self.body = None
            width = embed_dim
        self.proj = nn.Linear(width, out_dim)

    def check_input(
        self, tokens: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None
    ) -> torch.Tensor:
        """Validate ``tokens`` (B, T) and ``lengths`` (B,); return lengths as int64 on tokens' device.

        The ids and lengths are checked where that reads nothing on the host
        (:mod:`mmcourse.nn.validate`): the trainer checks a whole split once, before its steps.
        """
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"expected tokens as a tensor of shape (B, T), got {type(tokens).__name__}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(
                f"expected integer token ids (int64) of shape (B, T), got dtype {tokens.dtype}; "
                "ids are looked up in the embedding table, never used as numbers"
            )
        if tokens.dim() != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
            hint = " (add the batch axis with tokens.unsqueeze(0))" if tokens.dim() == 1 else ""
            raise ValueError(f"expected tokens of shape (B, T), got {tuple(tokens.shape)}{hint}")
        if value_checks_enabled():
            lo, hi = torch.stack([tokens.min(), tokens.max()]).tolist()  # one read of two values
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(
                    f"expected token ids in [0, {self.vocab_size}) (vocab_size), "
                    f"got ids in [{lo}, {hi}]"
                )
        return check_lengths(lengths, *tokens.shape, device=tokens.device)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """Encode ``tokens`` (B, T) with ``lengths`` (B,) (``None``: no padding) into (B, out_dim)."""
        n = self.check_input(tokens, lengths)  # (B,) on the tokens' device
        x = self.drop(self.embed(tokens))  # (B, T, d)
        recompute = recomputes(self) and self.body is not None
        if self.backbone in ("lstm", "gru"):
            h = checkpointed(self.body, x, n) if recompute else self.body(x, n)  # (B, D*H)
        else:
            valid = length_mask(n, tokens.shape[1])  # (B, T), True at real tokens
            if self.backbone == "transformer":
                x = self.pos(x)
                if recompute:
                    h = self._checkpointed_transformer(x, ~valid)  # (B, d)
                else:
                    h = self.body(x, key_padding_mask=~valid)  # (B, d), mean of valid
            else:
                w = valid.to(x.dtype)[..., None]  # (B, T, 1)
                h = (x * w).sum(1) / n.to(x.dtype)[:, None]  # (B, d), the mean of valid tokens
        return self.proj(self.drop(h))  # (B, out_dim)

    def _checkpointed_transformer(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """The Transformer body with each layer checkpointed on its own (one segment for the
        whole stack would rebuild every layer's activations at once in the backward pass)."""
        for layer in self.body.layers:
            x = checkpointed(functools.partial(layer, key_padding_mask=pad), x, module=layer)
        if self.body.norm is not None:
            x = self.body.norm(x)
        return masked_mean(x, pad)  # (B, d), the mean over the valid positions

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, out_dim={self.out_dim}"
