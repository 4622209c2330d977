"""Classification metrics: accuracy, the confusion matrix and macro-averaged F1.

Each takes predictions as class indices ``(N,)`` or as scores/logits ``(N, C)`` (the arg-max is
taken), and integer targets ``(N,)``. The confusion matrix follows scikit-learn: row = true
class, column = predicted class.
"""

from __future__ import annotations

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


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """(C, C) int64 counts; entry [i, j] = samples of true class i predicted as class j."""
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
    flat = target * num_classes + pred  # (N,) index into the flattened (C, C) matrix
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()


def f1_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """(C,) F1 = 2 TP / (2 TP + FP + FN) for each class; 0 where the class never occurs."""
    confusion = confusion.double()
    tp = confusion.diag()  # (C,)
    fp = confusion.sum(dim=0) - tp  # predicted as c, truly another class
    fn = confusion.sum(dim=1) - tp  # truly c, predicted as another class
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in target or prediction.

    Classes that neither occur nor are predicted are left out of the mean, as scikit-learn's
    ``f1_score(average="macro")`` does without an explicit label list.
    """
    cm = confusion_matrix(pred, target, num_classes)  # (C, C)
    present = (cm.sum(dim=0) + cm.sum(dim=1)) > 0  # (C,)
    if not present.any():
        raise ValueError("macro F1 of an empty set is undefined")
    return f1_per_class(cm)[present].mean().item()
