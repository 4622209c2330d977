"""Attention heat maps: which keys (columns) each query (rows) looks at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_array(weights: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().to("cpu", torch.float64).numpy()
    return np.asarray(weights, dtype=np.float64)


def plot_attention(
    weights: torch.Tensor | np.ndarray,
    keys: Sequence[str] | None = None,
    queries: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
    annotate: bool = False,
    cell_labels: Sequence[Sequence[str]] | None = None,
) -> plt.Figure:
    """Heat map of one attention matrix (T_q, T_k): row i is query i's distribution over keys.

    ``annotate`` writes each weight in its cell; ``cell_labels`` writes the given text instead
    (row i may be shorter than T_k, e.g. the words of a padded sentence).
    """
    w = _as_array(weights)
    if w.ndim != 2:
        raise ValueError(f"expected weights of shape (T_q, T_k), got {w.shape}")
    T_q, T_k = w.shape
    for name, labels, n in (("keys", keys, T_k), ("queries", queries, T_q)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"expected {n} labels for the {name}, got {len(labels)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.42 * T_k + 1.8, 0.38 * T_q + 1.2))
    else:
        fig = ax.figure
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-12), aspect="auto")
    ax.set_xticks(range(T_k), keys if keys is not None else range(T_k), rotation=60,
                  ha="right", fontsize=8)
    ax.set_yticks(range(T_q), queries if queries is not None else range(T_q), fontsize=8)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if cell_labels is not None and len(cell_labels) != T_q:
        raise ValueError(f"expected {T_q} rows of cell labels, got {len(cell_labels)}")
    if annotate or cell_labels is not None:
        for i in range(T_q):
            row = cell_labels[i] if cell_labels is not None else [f"{x:.2f}" for x in w[i]]
            for j, text in enumerate(row[:T_k]):
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_attention_heads(
    weights: torch.Tensor | np.ndarray,
    tokens: Sequence[str] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """One heat map per head, side by side, from weights (H, T_q, T_k) of one example."""
    w = _as_array(weights)
    if w.ndim != 3:
        raise ValueError(f"expected weights of shape (H, T_q, T_k), got {w.shape}")
    H, T_q, T_k = w.shape
    if tokens is not None and len(tokens) != T_k:
        raise ValueError(f"expected {T_k} tokens (one per key), got {len(tokens)}")
    labels_k = tokens if tokens is not None else range(T_k)
    labels_q = tokens if tokens is not None and T_q == T_k else range(T_q)
    size = 0.36 * max(T_q, T_k) + 1.2
    fig, axes = plt.subplots(1, H, figsize=(size * H + 0.6, size), squeeze=False)
    for h, ax in enumerate(axes[0]):
        ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(T_k), labels_k, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(T_q), labels_q if h == 0 else [], fontsize=8)
        ax.set_title(f"head {h}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
