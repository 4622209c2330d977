"""A 2-D picture of an embedding space: one PCA over all groups, colour = class, marker = group."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch

MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")


def pca_2d(x: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
    """Project (N, d) points onto their two principal axes: (N, 2).

    Exact (an SVD of the centred data), hence deterministic up to the sign of each axis.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected at least 2 points of dimension >= 2, shape (N, d); got {got}")
    x = x.detach().double().cpu()
    centred = x - x.mean(0)  # (N, d)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(N, d), d)
    return centred @ vh[:2].T  # (N, 2)


def plot_embedding(
    groups: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor] | torch.Tensor,
    classes: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> plt.Figure:
    """Scatter several sets of embeddings (e.g. one per modality) in one 2-D PCA projection.

    groups: {name: (N_g, d)}; labels: {name: (N_g,)}, or one (N,) tensor shared by every group.
    """
    if not groups:
        raise ValueError("expected at least one group of embeddings, got none")
    if len(groups) > len(MARKERS):
        raise ValueError(f"at most {len(MARKERS)} groups can get their own marker, got {len(groups)}")
    names = list(groups)
    dims = {groups[n].shape[-1] for n in names}
    if len(dims) != 1 or any(groups[n].dim() != 2 for n in names):
        shapes = {n: tuple(groups[n].shape) for n in names}
        raise ValueError(f"expected every group of shape (N_g, d) with one d, got {shapes}")
    if isinstance(labels, torch.Tensor):
        labels = dict.fromkeys(names, labels)
    for n in names:
        if n not in labels or labels[n].shape != (groups[n].shape[0],):
            got = tuple(labels[n].shape) if n in labels else "nothing"
            raise ValueError(f"expected labels of shape ({groups[n].shape[0]},) for {n!r}, got {got}")
    xy = pca_2d(torch.cat([groups[n].detach().cpu() for n in names]))  # (sum N_g, 2)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    cmap = plt.get_cmap("tab10")
    start = 0
    for marker, n in zip(MARKERS, names, strict=False):
        part = xy[start : start + groups[n].shape[0]]
        start += groups[n].shape[0]
        y = labels[n].cpu()
        ax.scatter(part[:, 0], part[:, 1], c=[cmap(int(c) % 10) for c in y], marker=marker,
                   s=14, alpha=0.7, linewidths=0, label=n)
    n_classes = int(max(int(labels[n].max()) for n in names)) + 1
    handles = [plt.Line2D([], [], ls="", marker=m, color="grey", label=n)
               for m, n in zip(MARKERS, names, strict=False)]
    handles += [plt.Line2D([], [], ls="", marker="o", color=cmap(c % 10),
                           label=classes[c] if classes is not None else str(c))
                for c in range(n_classes)]  # one legend: the groups' markers, then the colours
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="center left",
              bbox_to_anchor=(1.0, 0.5))
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title or "embeddings, 2-D PCA")
    fig.tight_layout()
    return fig
