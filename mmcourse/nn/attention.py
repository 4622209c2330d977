"""Multi-head attention on ``F.scaled_dot_product_attention``, for self- and cross-attention.

    head_i = softmax(q_i k_i^T / sqrt(d_k) + mask) v_i          q_i = query W_i^Q, ...
    MultiHead(query, key, value) = concat(head_1, ..., head_H) W^O

Shapes are batch first: ``query`` (B, T_q, E), ``key`` (B, T_k, kdim), ``value`` (B, T_k, vdim).

Masks follow ``nn.MultiheadAttention``: a boolean ``True`` means *blocked*.

- ``key_padding_mask`` (B, T_k): True where a key is padding.
- ``attn_mask`` (T_q, T_k), (B, T_q, T_k) or (B, H, T_q, T_k): boolean (True = blocked) or
  float (added to the scores, ``-inf`` = blocked).
- ``is_causal=True``: query i sees keys j <= i (top-left aligned when T_q != T_k).

A query whose keys are all blocked has no distribution to average over; plain softmax gives
NaN there. Here its output is defined as **zero** (and its attention weights as all zero),
on every device and backend, with zero gradient flowing through it.

Float masks often write "blocked" as a large negative number instead of ``-inf`` (-1e4 in
fp16 code, -1e9, ``finfo.min``). Where a query also has an open key, such a value already
gets (almost) zero weight. Where *every* key of a query is at or below ``BLOCKED`` (-1e4),
the query counts as fully blocked too, and gets the zero output of a row of ``-inf``:
plain softmax would instead spread its weight evenly over keys meant to be blocked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.validate import value_checks_enabled

BLOCKED = -1e4  # a float mask value at or below this blocks a key (see the module docstring)


def key_padding_mask(lengths: torch.Tensor, T: int | None = None) -> torch.Tensor:
    """(B, T) boolean mask, True at the padded positions t >= lengths[b].

    ``T`` defaults to the longest length (a read of ``lengths`` on the host). Lengths outside
    ``[0, T]`` are an error, checked where that reads nothing on the host
    (:mod:`mmcourse.nn.validate`).
    """
    if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1:
        raise ValueError(f"expected lengths as a 1-D tensor of shape (B,), got {lengths!r}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"expected integer lengths, got dtype {lengths.dtype}")
    if T is None:
        T = int(lengths.max()) if len(lengths) else 0
    elif len(lengths) and value_checks_enabled():
        lo, hi = torch.stack([lengths.min(), lengths.max()]).tolist()
        if lo < 0 or hi > T:
            raise ValueError(f"expected lengths in [0, T = {T}], got min {lo}, max {hi}")
    steps = torch.arange(T, device=lengths.device)  # (T,)
    return steps[None, :] >= lengths[:, None]  # (B, T)


def _check_input(name: str, x: torch.Tensor, last: int, B: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {name} as a tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != last or (B is not None and x.shape[0] != B):
        b = "B" if B is None else B
        raise ValueError(f"expected {name} of shape ({b}, T, {last}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected {name} of a floating-point dtype, got {x.dtype}")


def merge_masks(
    B: int,
    H: int,
    T_q: int,
    T_k: int,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """One mask for SDPA, broadcastable to (B, H, T_q, T_k), or None when nothing is masked.

    Boolean in SDPA's convention (True = *may attend*) unless ``attn_mask`` is float, in which
    case the result is additive (``-inf`` = blocked) in ``dtype``.
    """
    allowed: torch.Tensor | None = None  # bool, True = may attend
    additive: torch.Tensor | None = None  # float, added to the scores
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(f"expected a boolean key_padding_mask, got {key_padding_mask.dtype}")
        if key_padding_mask.shape != (B, T_k):
            raise ValueError(
                f"expected key_padding_mask of shape (B, T_k) = ({B}, {T_k}), "
                f"got {tuple(key_padding_mask.shape)}"
            )
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
    if attn_mask is not None:
        shapes = {2: (T_q, T_k), 3: (B, T_q, T_k), 4: (B, H, T_q, T_k)}
        if shapes.get(attn_mask.dim()) != tuple(attn_mask.shape):
            raise ValueError(
                f"expected attn_mask of shape (T_q, T_k) = ({T_q}, {T_k}), (B, T_q, T_k) = "
                f"({B}, {T_q}, {T_k}) or (B, H, T_q, T_k) = ({B}, {H}, {T_q}, {T_k}), "
                f"got {tuple(attn_mask.shape)}"
            )
        m = attn_mask.unsqueeze(1) if attn_mask.dim() == 3 else attn_mask  # (.., T_q, T_k)
        if m.dtype == torch.bool:
            allowed = ~m if allowed is None else allowed & ~m
        elif m.is_floating_point():
            additive = m.to(dtype)
        else:
            raise TypeError(f"expected a boolean or float attn_mask, got {attn_mask.dtype}")
    if is_causal:
        causal = torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril()  # (T_q, T_k)
        allowed = causal if allowed is None else allowed & causal
    if additive is None:
        return allowed
    if allowed is not None:
        additive = additive.masked_fill(~allowed, float("-inf"))
    return additive


def _fully_blocked(mask: torch.Tensor) -> torch.Tensor:
    """True for the queries (.., T_q) whose keys are all blocked (float: at or below BLOCKED)."""
    if mask.dtype == torch.bool:
        return ~mask.any(dim=-1)
    return (mask <= BLOCKED).all(dim=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first, on ``F.scaled_dot_product_attention``.

    Self-attention: ``mha(x)``. Cross-attention: ``mha(x, y)`` with queries from ``x``
    (B, T_q, E) and keys/values from ``y`` (B, T_k, kdim); ``T_q`` and ``T_k`` may differ.

    Returns ``(out, weights)``: ``out`` (B, T_q, E) and, with ``need_weights=True``, the
    attention weights per head (B, H, T_q, T_k) before dropout (else ``None``). The fast SDPA
    path never forms the weights; asking for them computes attention explicitly.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"expected embed_dim divisible by num_heads, got {embed_dim} and {num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.d_k = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^Q, all heads side by side
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)  # W^K
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)  # W^V
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = query if key is None else key
        value = key if value is None else value
        _check_input("query", query, self.embed_dim)
        B = query.shape[0]
        _check_input("key", key, self.kdim, B)
        _check_input("value", value, self.vdim, B)
        if value.shape[1] != key.shape[1]:
            raise ValueError(
                f"expected value of shape ({B}, T_k, {self.vdim}) with T_k = {key.shape[1]} "
                f"as in key, got {tuple(value.shape)}"
            )
        H, d_k = self.num_heads, self.d_k
        T_q, T_k = query.shape[1], key.shape[1]

        q = self.q_proj(query).view(B, T_q, H, d_k).transpose(1, 2)  # (B, H, T_q, d_k)
        k = self.k_proj(key).view(B, T_k, H, d_k).transpose(1, 2)  # (B, H, T_k, d_k)
        v = self.v_proj(value).view(B, T_k, H, d_k).transpose(1, 2)  # (B, H, T_k, d_k)
        p = self.dropout if self.training else 0.0

        mask = merge_masks(
            B, H, T_q, T_k, key_padding_mask, attn_mask, is_causal,
            dtype=q.dtype, device=q.device,
        )  # broadcastable to (B, H, T_q, T_k), or None
        only_causal = is_causal and key_padding_mask is None and attn_mask is None
        blocked = None
        if mask is not None and not only_causal:  # a causal mask alone never blocks a row
            blocked = _fully_blocked(mask)  # (.., T_q): queries with no key to attend to
            # give those rows one harmless key so softmax stays finite; their output is zeroed
            open_row = blocked[..., None]
            mask = mask | open_row if mask.dtype == torch.bool else mask.masked_fill(open_row, 0.0)

        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T_q, T_k)
            if mask is not None and mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            elif mask is not None:
                scores = scores + mask
            weights = scores.softmax(dim=-1)  # (B, H, T_q, T_k)
            if blocked is not None:
                weights = weights.masked_fill(blocked[..., None], 0.0)
            out = F.dropout(weights, p, training=p > 0) @ v  # (B, H, T_q, d_k)
        elif only_causal:  # lets SDPA pick its fastest causal kernel
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        if blocked is not None:
            out = out.masked_fill(blocked[..., None], 0.0)  # the documented zero output

        out = out.transpose(1, 2).reshape(B, T_q, self.embed_dim)  # (B, T_q, E): concat heads
        return self.out_proj(out), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``nn.MultiheadAttention`` of the same size into this module.

        ``nn.MultiheadAttention`` stacks W^Q, W^K, W^V row-wise in ``in_proj_weight`` (3E, E)
        when the three widths agree, else keeps ``q_proj_weight``, ``k_proj_weight``, ...
        """
        E = self.embed_dim
        if (mha.embed_dim, mha.num_heads, mha.kdim, mha.vdim) != (
            E, self.num_heads, self.kdim, self.vdim
        ):
            raise ValueError(
                f"expected nn.MultiheadAttention(embed_dim={E}, num_heads={self.num_heads}, "
                f"kdim={self.kdim}, vdim={self.vdim}), got embed_dim={mha.embed_dim}, "
                f"num_heads={mha.num_heads}, kdim={mha.kdim}, vdim={mha.vdim}"
            )
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn of nn.MultiheadAttention are not supported")
        if (mha.in_proj_bias is None) != (self.q_proj.bias is None):
            raise ValueError(f"expected bias={self.q_proj.bias is not None} as in this module")
        if mha.in_proj_weight is not None:
            w_q, w_k, w_v = mha.in_proj_weight.split(E)  # each (E, E)
        else:
            w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for proj, w in ((self.q_proj, w_q), (self.k_proj, w_k), (self.v_proj, w_v)):
            proj.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.split(E),
                               strict=True):
                proj.bias.copy_(b)
        self.out_proj.load_state_dict(mha.out_proj.state_dict())
        return self

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, "
            f"vdim={self.vdim}, dropout={self.dropout}"
        )
