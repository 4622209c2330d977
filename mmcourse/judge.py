"""Judging class-conditional samples with three numbers that a good generator must all get right.

    from mmcourse.judge import judge
    j = judge(images, asked, classifier, train_images, reference=(real_images, real_labels))
    j.recognized      # fraction the classifier labels as the class that was asked for
    j.diversity       # mean distance between two samples of the same class (per class, averaged)
    j.nearest_train   # median distance from a sample to its nearest training image

Each number alone can be gamed: a generator that returns one perfect digit per class is always
recognized (but has no diversity), one that returns training images unchanged is recognized and
diverse (but has copied, nearest_train = 0), and noise is diverse and new (but not recognized).
Distances are Euclidean, between images flattened to vectors, pixels in [0, 1]; real held-out
images judged the same way give the scale of each number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def _images(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected {name} as a float tensor (N, ...) of images, got {got}")
    return x.flatten(1)  # (N, D)


def _labels(y: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.is_floating_point():
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"expected integer labels of shape ({n},), one per image, got {got}")
    return y


def class_diversity(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) mean pairwise distance between the images of each class (NaN if < 2)."""
    x = _images("images", images)  # (N, D)
    y = _labels(labels, len(x)).to(x.device)
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        xc = x[y == c].double()
        if len(xc) > 1:
            out[c] = torch.pdist(xc).mean().cpu()  # over the n (n - 1) / 2 pairs
    return out


def nearest_distance(
    images: torch.Tensor, reference: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """(N,) distance from each image to its nearest neighbour among ``reference`` (M, ...)."""
    x, r = _images("images", images), _images("reference", reference)
    if x.shape[1] != r.shape[1]:
        raise ValueError(f"images have {x.shape[1]} values each, reference {r.shape[1]}")
    if len(r) == 0:
        raise ValueError("expected at least one reference image")
    r = r.to(x.device, torch.float64)
    parts = [torch.cdist(x[i : i + chunk].double(), r).amin(1) for i in range(0, len(x), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


@dataclass
class Judgement:
    """What :func:`judge` measured; ``per_class_*`` are (num_classes,), ``nearest`` is (N,)."""

    recognized: float
    diversity: float
    nearest_train: float
    per_class_recognized: torch.Tensor
    per_class_diversity: torch.Tensor
    nearest: torch.Tensor
    reference_diversity: float | None = None

    @property
    def diversity_ratio(self) -> float | None:
        """Diversity relative to the real reference images (1: as varied as real digits)."""
        if self.reference_diversity is None:
            return None
        return self.diversity / self.reference_diversity

    def row(self, name: str) -> str:
        """One line of a results table (see :func:`table`)."""
        ratio = self.diversity_ratio
        rel = f"{ratio:11.2f}" if ratio is not None else f"{'':>11s}"
        return (
            f"| {name:<28s} | {100 * self.recognized:10.1f} | {self.diversity:9.2f} | {rel} | "
            f"{self.nearest_train:13.2f} |"
        )


def table(judgements: dict[str, Judgement]) -> str:
    """A markdown table, one row per judged set of images."""
    head = (
        f"| {'images':<28s} | recognized | diversity | vs real ×  | nearest train |\n"
        f"| {'-' * 28} | ---------: | --------: | ---------: | ------------: |"
    )
    return "\n".join([head, *(j.row(name) for name, j in judgements.items())])


@torch.no_grad()
def judge(
    images: torch.Tensor,
    asked: torch.Tensor,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    train_images: torch.Tensor,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_classes: int = 10,
    batch_size: int = 1024,
) -> Judgement:
    """Judge class-conditional ``images`` (N, C, H, W), pixels in [0, 1], made for classes ``asked``.

    ``classifier`` maps a batch of images to logits (B, num_classes) (put a module in eval mode
    first); ``train_images`` are the generator's training images (M, C, H, W); ``reference`` =
    (real images, their labels), held out, sets the diversity scale.
    """
    x = _images("images", images)
    y = _labels(asked, len(x))
    if len(x) == 0:
        raise ValueError("expected at least one image to judge")
    if float(images.min()) < -1e-6 or float(images.max()) > 1 + 1e-6:
        raise ValueError(
            "expected pixels in [0, 1]; map samples in [-1, 1] with (x + 1) / 2 and clamp"
        )
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"expected asked classes in 0..{num_classes - 1}")
    preds = torch.cat(
        [classifier(images[i : i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)]
    ).to(y.device)  # (N,)
    hit = (preds == y).double()
    per_class = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        if (y == c).any():
            per_class[c] = hit[y == c].mean().cpu()
    div = class_diversity(images, y, num_classes)
    near = nearest_distance(images, train_images)
    ref = None
    if reference is not None:
        ref = float(class_diversity(*reference, num_classes).nanmean())
    return Judgement(
        recognized=float(hit.mean()),
        diversity=float(div.nanmean()),
        nearest_train=float(near.median()),
        per_class_recognized=per_class,
        per_class_diversity=div,
        nearest=near.cpu(),
        reference_diversity=ref,
    )


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (a generator's range) -> pixels in [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


__all__: Sequence[str] = [
    "Judgement",
    "class_diversity",
    "judge",
    "nearest_distance",
    "table",
    "to_unit",
]
