"""Classification metrics: accuracy, the confusion matrix and macro-averaged F1.

Each takes predictions as class indices ``(N,)`` or as scores/logits ``(N, C)`` (the arg-max is
taken), and integer targets ``(N,)``. The confusion matrix follows scikit-learn: row = true
class, column = predicted class.
"""

from __future__ import annotations

import math

import torch


def _labels(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"expected tensors pred and target, got {type(pred).__name__} and "
            f"{type(target).__name__}"
        )
    if pred.ndim == 2:
        pred = pred.argmax(dim=1)  # (N, C) scores -> (N,) classes
    if pred.ndim != 1 or target.ndim != 1:
        raise ValueError(
            f"expected pred of shape (N,) or (N, C) and target of shape (N,), "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if len(pred) != len(target):
        raise ValueError(f"pred has {len(pred)} samples but target has {len(target)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError(
            f"expected integer class indices, got dtypes {pred.dtype} and {target.dtype}"
        )
    return pred.long(), target.long().to(pred.device)


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of samples whose predicted class equals the target."""
    pred, target = _labels(pred, target)
    if len(target) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return (pred == target).float().mean().item()


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts on the device of ``pred``: no checks, and no read of any value.

    ``pred`` and ``target`` are class indices (N,) in [0, C). A scatter-add into the C * C
    cells (``bincount`` would read the largest index on the host to size its output).
    """
    flat = target.long() * num_classes + pred.long()  # (N,) index into the flattened (C, C)
    counts = torch.zeros(num_classes * num_classes, dtype=torch.long, device=pred.device)
    return counts.scatter_add_(0, flat, torch.ones_like(flat)).reshape(num_classes, num_classes)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """(C, C) int64 counts on the CPU; entry [i, j] = samples of true class i predicted as j."""
    if num_classes is None and isinstance(pred, torch.Tensor) and pred.ndim == 2:
        num_classes = pred.shape[1]
    pred, target = _labels(pred, target)
    if num_classes is None:
        num_classes = int(max(pred.max().item(), target.max().item())) + 1 if len(pred) else 0
    for name, t in (("pred", pred), ("target", target)):
        if len(t) and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(
                f"expected {name} classes in [0, {num_classes}), got values in "
                f"[{t.min().item()}, {t.max().item()}]"
            )
    return confusion_counts(pred, target, num_classes).cpu()


def f1_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """(C,) F1 = 2 TP / (2 TP + FP + FN) for each class; 0 where the class never occurs."""
    confusion = confusion.double()
    tp = confusion.diag()  # (C,)
    fp = confusion.sum(dim=0) - tp  # predicted as c, truly another class
    fn = confusion.sum(dim=1) - tp  # truly c, predicted as another class
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))


def scores(confusion: torch.Tensor) -> tuple[float, float]:
    """Accuracy and macro F1 of a confusion matrix; NaN for an empty one.

    Macro F1 is the unweighted mean of per-class F1 over the classes present in the targets
    or the predictions, as scikit-learn's ``f1_score(average="macro")`` without a label list.
    """
    confusion = confusion.cpu()
    total = confusion.sum()
    present = (confusion.sum(dim=0) + confusion.sum(dim=1)) > 0  # (C,)
    if total == 0 or not present.any():
        return math.nan, math.nan
    acc = (confusion.diag().sum() / total).item()
    return acc, f1_per_class(confusion)[present].mean().item()


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in target or prediction.

    Classes that neither occur nor are predicted are left out of the mean, as scikit-learn's
    ``f1_score(average="macro")`` does without an explicit label list.
    """
    f1 = scores(confusion_matrix(pred, target, num_classes))[1]
    if math.isnan(f1):
        raise ValueError("macro F1 of an empty set is undefined")
    return f1
