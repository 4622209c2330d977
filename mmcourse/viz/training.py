"""Training plots: learning curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def plot_history(history: Any, axes: Any = None) -> plt.Figure:
    """Loss (train, val) on the left, accuracy (train, val) on the right, per epoch."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    else:
        fig = np.ravel(axes)[0].figure
    ax_loss, ax_acc = np.ravel(axes)[:2]
    for name, style in (("train", "-"), ("val", "--")):
        loss = getattr(history, f"{name}_loss", [])
        acc = getattr(history, f"{name}_accuracy", [])
        if loss:
            ax_loss.plot(range(1, len(loss) + 1), loss, style, marker=".", label=name)
        if acc:
            ax_acc.plot(range(1, len(acc) + 1), acc, style, marker=".", label=name)
    best = getattr(history, "best_epoch", None)
    if best is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best + 1, color="grey", lw=0.8, ls=":", label="best")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_confusion(
    confusion: torch.Tensor | np.ndarray,
    classes: Sequence[str] | None = None,
    ax: Any = None,
    normalize: bool = False,
    title: str = "confusion matrix",
) -> plt.Figure:
    """Heat map of a (C, C) confusion matrix: rows true class, columns predicted class."""
    cm = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a (C, C) confusion matrix, got shape {cm.shape}")
    c = cm.shape[0]
    classes = [str(i) for i in range(c)] if classes is None else list(classes)
    if len(classes) != c:
        raise ValueError(f"expected {c} class names, got {len(classes)}")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.45 * c + 1.5, 0.45 * c + 1.2))
    else:
        fig = ax.figure
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(c), yticks=range(c), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    top = shown.max() if shown.size else 0
    for i in range(c):
        for j in range(c):
            value = f"{shown[i, j]:.2f}" if normalize else f"{int(shown[i, j])}"
            color = "white" if shown[i, j] > 0.6 * top else "black"
            ax.text(j, i, value, ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return fig
