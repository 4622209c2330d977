"""Image grids: a few examples of each class, one row per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) -> (N, H, W) float64."""
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, 1, H, W), got {x.shape}")
    return x


def mosaic(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    per_class: int = 8,
    gap: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """One canvas: row r holds the first ``per_class`` images of the r-th class, ``gap`` pixels
    apart; empty places are NaN. Returns the canvas (R (H + gap) - gap, per_class (W + gap) - gap)
    and the classes (R,)."""
    x = _as_images(images)  # (N, H, W)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if len(y) != len(x):
        raise ValueError(f"expected one label per image ({len(x)}), got {len(y)}")
    if per_class < 1 or gap < 0:
        raise ValueError(f"expected per_class >= 1 and gap >= 0, got {per_class}, {gap}")
    classes = np.unique(y)
    _, h, w = x.shape
    canvas = np.full((len(classes) * (h + gap) - gap, per_class * (w + gap) - gap), np.nan)
    for r, c in enumerate(classes):
        for j, k in enumerate(np.flatnonzero(y == c)[:per_class]):
            top, left = r * (h + gap), j * (w + gap)
            canvas[top : top + h, left : left + w] = x[k]
    return canvas, classes


def image_grid(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    per_class: int = 8,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    cell: float = 0.55,
    ax: Any = None,
) -> plt.Figure:
    """The first ``per_class`` images of each class, one row per class (ink dark, 0 to 1).

    Drawn as one image (a mosaic), so a grid of a hundred digits is as fast as one.
    """
    canvas, classes = mosaic(images, labels, per_class)
    if class_names is not None and len(class_names) <= int(classes.max()):
        raise ValueError(f"expected a name for every class up to {int(classes.max())}")
    if ax is None:
        size = (cell * per_class + 0.6, cell * len(classes) + (0.5 if title else 0.2))
        fig, ax = plt.subplots(figsize=size, layout="constrained")
    else:
        fig = ax.figure
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")  # NaN: the gaps
    ax.imshow(canvas, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    h = (canvas.shape[0] + 1) / len(classes)  # rows are h pixels apart (image + gap)
    names = [class_names[int(c)] if class_names is not None else str(int(c)) for c in classes]
    ax.set_yticks([r * h + (h - 1) / 2 - 0.5 for r in range(len(classes))], names, fontsize=9)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def show_image(image: torch.Tensor | np.ndarray, ax: Any = None, title: str | None = None) -> Any:
    """One image (H, W) or (1, H, W) on ``ax`` (a new figure when None); returns the axes."""
    x = _as_images(np.asarray(image)[None] if not isinstance(image, torch.Tensor) else image[None])
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6, 1.6))
    ax.imshow(x[0], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax
