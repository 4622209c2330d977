"""The Transformer decoder: causal self-attention, optional cross-attention, and a KV cache.

    post-norm (norm_first=False):  x = LN1(x + SelfAttn(x))        # causal
                                   x = LN2(x + CrossAttn(x, m))    # queries x, keys/values m
                                   x = LN3(x + FFN(x))
    pre-norm  (norm_first=True):   x = x + SelfAttn(LN1(x));  x = x + CrossAttn(LN2(x), m);
                                   x = x + FFN(LN3(x))

Parameter names follow ``nn.TransformerDecoderLayer`` (``self_attn``, ``multihead_attn``,
``linear1``, ``linear2``, ``norm1``-``norm3``), so :meth:`TransformerDecoderLayer.load_from_torch`
copies its weights. Without cross-attention the layer is a GPT block.

**The KV cache.** Generating token t+1 needs the keys and values of tokens 1..t, which do not
change once computed (a causal layer never lets a token see later ones). A :class:`KVCache`
keeps them per layer, so each step projects only the new token, O(T) work per step instead of
O(T^2) for recomputing the whole prefix; the keys and values of the memory (cross-attention)
are projected once. Without a cache the layer calls :class:`MultiHeadAttention`; with one it
computes the same attention from the cached keys, so the two paths check each other.

**Padding.** ``key_padding_mask`` (True = padding) may mark positions anywhere: left padding
lets prompts of different lengths end at the same step, and :class:`TextDecoder` counts
positions over the real tokens only, so each sequence of a padded batch is computed as if alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.attention import MultiHeadAttention, merge_masks
from mmcourse.nn.transformer import ACTIVATIONS
from mmcourse.nn.validate import positive_int

__all__ = ["KVCache", "LayerCache", "TextDecoder", "TransformerDecoderLayer", "causal_mask"]


def causal_mask(T_q: int, T_k: int, device: torch.device | None = None) -> torch.Tensor:
    """(T_q, T_k) boolean, True where blocked: the T_q queries are the *last* T_q positions.

    Query i sits at position T_k - T_q + i and may see keys j <= T_k - T_q + i, so with a cache
    of T_k - T_q past tokens the new tokens see the whole past and not each other's future.
    """
    if T_q > T_k:
        raise ValueError(f"expected at most as many queries as keys, got T_q={T_q}, T_k={T_k}")
    i = torch.arange(T_q, device=device)[:, None] + (T_k - T_q)  # (T_q, 1) absolute positions
    j = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
    return j > i  # (T_q, T_k)


@dataclass
class LayerCache:
    """One layer's cached keys and values, each (B, H, T, d_k)."""

    k: torch.Tensor | None = None  # self-attention keys of the tokens so far
    v: torch.Tensor | None = None
    memory_k: torch.Tensor | None = None  # cross-attention keys of the memory, computed once
    memory_v: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        for name in ("k", "v", "memory_k", "memory_v"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, index))


@dataclass
class KVCache:
    """The cache of a whole decoder: one :class:`LayerCache` per layer, and which past
    positions are padding (B, T_past)."""

    layers: list[LayerCache] = field(default_factory=list)
    padding: torch.Tensor | None = None  # (B, T_past) bool, True = padding

    @property
    def length(self) -> int:
        """Number of cached positions (padding included)."""
        return 0 if self.padding is None else self.padding.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',), in that order (beam search reorders beams)."""
        for layer in self.layers:
            layer.reorder(index)
        if self.padding is not None:
            self.padding = self.padding.index_select(0, index)


def _heads(x: torch.Tensor, H: int) -> torch.Tensor:
    B, T, E = x.shape
    return x.view(B, T, H, E // H).transpose(1, 2)  # (B, H, T, d_k)


def _attend(
    mha: MultiHeadAttention, q_in: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    allowed: torch.Tensor | None,
) -> torch.Tensor:
    """Attention of the queries ``q_in`` (B, T_q, E) over projected ``k``, ``v`` (B, H, T_k, d_k).

    ``allowed`` broadcasts to (B, H, T_q, T_k), True = may attend. A query with no key to
    attend to gets a zero output, as in :class:`MultiHeadAttention`.
    """
    B, T_q, E = q_in.shape
    q = _heads(mha.q_proj(q_in), mha.num_heads)  # (B, H, T_q, d_k)
    empty = None
    if allowed is not None:
        empty = ~allowed.any(dim=-1, keepdim=True)  # (.., T_q, 1): nothing to attend to
        allowed = allowed | empty  # one harmless key keeps the softmax finite; zeroed below
    p = mha.dropout if mha.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, H, T_q, d_k)
    if empty is not None:
        out = out.masked_fill(empty, 0.0)
    return mha.out_proj(out.transpose(1, 2).reshape(B, T_q, E))  # (B, T_q, E): concat heads


class TransformerDecoderLayer(nn.Module):
    """One decoder block on (B, T, d_model): causal self-attention, cross-attention to a memory
    (B, S, d_model) when ``cross_attention``, then the FFN; residuals and LayerNorm."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        ffn_dim: int | None = None,
        dropout: float = 0.1,
        *,
        activation: Literal["relu", "gelu"] = "relu",
        norm_first: bool = False,
        cross_attention: bool = True,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"expected activation in {sorted(ACTIVATIONS)}, got {activation!r}")
        d_ff = ffn_dim or 4 * d_model
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias)
        self.multihead_attn = (
            MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias) if cross_attention else None
        )
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)  # W_2, b_2
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if cross_attention else None
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout = nn.Dropout(dropout)  # inside the FFN
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.activation, self.norm_first = activation, norm_first
        self.d_model, self.nhead = d_model, nhead

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """FFN(x) = act(x W_1 + b_1) W_2 + b_2, at every position."""
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))

    def _self_attn(
        self, x: torch.Tensor, padding: torch.Tensor | None, cache: LayerCache | None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        if cache is None:  # the reference path: MultiHeadAttention with a causal mask
            if padding is None:
                out, _ = self.self_attn(x, is_causal=True)
            else:
                out, _ = self.self_attn(x, key_padding_mask=padding,
                                        attn_mask=causal_mask(T, T, x.device))
            return self.dropout1(out)
        H = self.self_attn.num_heads
        k_new = _heads(self.self_attn.k_proj(x), H)  # (B, H, T, d_k)
        v_new = _heads(self.self_attn.v_proj(x), H)
        cache.k = k_new if cache.k is None else torch.cat([cache.k, k_new], dim=2)  # (B, H, T_k, d_k)
        cache.v = v_new if cache.v is None else torch.cat([cache.v, v_new], dim=2)
        T_k = cache.k.shape[2]
        if padding is not None and padding.shape != (B, T_k):
            raise ValueError(
                f"expected key_padding_mask over the cached and new positions, (B, T_k) = "
                f"({B}, {T_k}), got {tuple(padding.shape)}"
            )
        allowed = None  # one new token and no padding: it may see the whole cache
        if T > 1 or padding is not None:
            allowed = merge_masks(
                B, H, T, T_k, padding, causal_mask(T, T_k, x.device), device=x.device
            )  # bool, broadcastable to (B, H, T, T_k), True = may attend
        return self.dropout1(_attend(self.self_attn, x, cache.k, cache.v, allowed))

    def _cross_attn(
        self, x: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        mha = self.multihead_attn
        if cache is None:
            out, _ = mha(x, memory, key_padding_mask=memory_padding)
            return self.dropout2(out)
        if cache.memory_k is None:  # first step: project the memory once
            cache.memory_k = _heads(mha.k_proj(memory), mha.num_heads)  # (B, H, S, d_k)
            cache.memory_v = _heads(mha.v_proj(memory), mha.num_heads)
        allowed = None if memory_padding is None else ~memory_padding[:, None, None, :]
        return self.dropout2(_attend(mha, x, cache.memory_k, cache.memory_v, allowed))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model).

        ``key_padding_mask`` (B, T_k), True = padding, covers every key: the T new positions,
        preceded by the cached ones when ``cache`` is given (the cache grows by T).
        """
        if (memory is None) != (self.multihead_attn is None):
            need = "a memory" if self.multihead_attn is not None else "no memory"
            raise ValueError(f"this layer has cross_attention={self.multihead_attn is not None}: "
                             f"expected {need}")
        pad, mpad = key_padding_mask, memory_key_padding_mask
        if self.norm_first:
            x = x + self._self_attn(self.norm1(x), pad, cache)
            if memory is not None:
                x = x + self._cross_attn(self.norm2(x), memory, mpad, cache)
            return x + self.dropout3(self.ffn(self.norm3(x)))
        x = self.norm1(x + self._self_attn(x, pad, cache))
        if memory is not None:
            x = self.norm2(x + self._cross_attn(x, memory, mpad, cache))
        return self.norm3(x + self.dropout3(self.ffn(x)))  # (B, T, d_model)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> TransformerDecoderLayer:
        """Copy the weights of a ``nn.TransformerDecoderLayer`` of the same size."""
        if self.multihead_attn is None:
            raise ValueError("nn.TransformerDecoderLayer has cross-attention; this layer has none")
        if layer.norm_first != self.norm_first:
            raise ValueError(
                f"expected norm_first={self.norm_first} as in this layer, got {layer.norm_first}"
            )
        act = layer.activation
        kind = {F.relu: "relu", F.gelu: "gelu"}.get(act) or {nn.ReLU: "relu", nn.GELU: "gelu"}.get(
            type(act))
        if getattr(act, "approximate", "none") != "none":  # tanh-approximated GELU differs
            kind = None
        if kind != self.activation:
            raise ValueError(f"expected activation {self.activation!r}, got {layer.activation}")
        self.self_attn.load_from_torch(layer.self_attn)
        self.multihead_attn.load_from_torch(layer.multihead_attn)
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            getattr(self, name).load_state_dict(getattr(layer, name).state_dict())
        return self


class TextDecoder(nn.Module):
    """A decoder-only (GPT-style) language model; with ``cross_attention`` it reads a memory.

    tokens (B, T) -> logits (B, T, V) for the next token at every position:
    token embedding + learned position embedding, ``num_layers`` decoder layers (pre-norm by
    default, with a final LayerNorm), and a linear head. Positions count the real tokens of
    each row (padding does not advance them), up to ``max_len`` (the context).

    Pass a :class:`KVCache` (``new_cache()``) to feed the tokens step by step: each call then
    takes only the new tokens and returns their logits. Use :func:`mmcourse.nn.generate` to
    generate.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        ffn_dim: int | None = None,
        max_len: int = 64,
        dropout: float = 0.0,
        *,
        cross_attention: bool = False,
        norm_first: bool = True,
        activation: Literal["relu", "gelu"] = "gelu",
        padding_idx: int | None = 0,
    ) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.max_len = positive_int("max_len", max_len)
        positive_int("num_layers", num_layers)
        self.d_model, self.cross_attention = d_model, cross_attention
        self.tok_emb = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(
                d_model, nhead, ffn_dim, dropout, activation=activation, norm_first=norm_first,
                cross_attention=cross_attention,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def new_cache(self) -> KVCache:
        """An empty cache for step-by-step decoding."""
        return KVCache(layers=[LayerCache() for _ in self.layers])

    def positions(
        self, padding: torch.Tensor, cache: KVCache | None = None
    ) -> torch.Tensor:
        """(B, T) position of each new token: the number of real tokens before it."""
        valid = (~padding).long()  # (B, T)
        past = 0 if cache is None or cache.padding is None else (~cache.padding).sum(1, keepdim=True)
        return (past + valid.cumsum(1) - valid).clamp_max(self.max_len - 1)  # (B, T)

    def forward(
        self,
        tokens: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """tokens (B, T) (the new ones when ``cache`` is given) -> logits (B, T, V).

        ``key_padding_mask`` (B, T) marks padded tokens (True); ``memory`` (B, S, d_model) with
        ``memory_key_padding_mask`` (B, S) is what cross-attention reads.
        """
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"expected integer tokens of shape (B, T), got {got}")
        B, T = tokens.shape
        if (memory is None) == self.cross_attention:
            need = "a memory (B, S, d_model)" if self.cross_attention else "no memory"
            raise ValueError(f"this decoder has cross_attention={self.cross_attention}: expected {need}")
        if memory is not None and (memory.dim() != 3 or memory.shape[0] != B
                                   or memory.shape[2] != self.d_model):
            raise ValueError(f"expected memory of shape ({B}, S, {self.d_model}), got "
                             f"{tuple(memory.shape)}")
        padding = key_padding_mask
        if padding is not None and (padding.shape != (B, T) or padding.dtype != torch.bool):
            raise ValueError(f"expected a boolean key_padding_mask of shape ({B}, {T}), got "
                             f"{padding.dtype} of shape {tuple(padding.shape)}")
        if cache is not None and cache.padding is not None and cache.padding.shape[0] != B:
            raise ValueError(f"expected {cache.padding.shape[0]} rows as in the cache, got {B}")
        pad_new = torch.zeros(B, T, dtype=torch.bool, device=tokens.device) if padding is None else padding
        pos = self.positions(pad_new, cache)  # (B, T)
        n_real = (~pad_new).sum(1) + (0 if cache is None or cache.padding is None
                                      else (~cache.padding).sum(1))
        if int(n_real.max()) > self.max_len:
            raise ValueError(f"expected at most max_len = {self.max_len} tokens per sequence "
                             f"(the context), got {int(n_real.max())}")
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(pos))  # (B, T, d_model)
        if cache is not None:
            past = cache.padding if cache.padding is not None else pad_new[:, :0]
            full = torch.cat([past, pad_new], dim=1)  # (B, T_past + T)
            cache.padding = full
            layer_padding = full if bool(full.any()) else None
            for layer, lc in zip(self.layers, cache.layers, strict=True):
                x = layer(x, memory, key_padding_mask=layer_padding,
                          memory_key_padding_mask=memory_key_padding_mask, cache=lc)
        else:
            for layer in self.layers:
                x = layer(x, memory, key_padding_mask=padding,
                          memory_key_padding_mask=memory_key_padding_mask)
        return self.head(self.norm(x))  # (B, T, V)
