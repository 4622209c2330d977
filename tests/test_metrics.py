"""Metrics of mmcourse.train.metrics against hand-made examples and scikit-learn."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mmcourse.train.metrics import accuracy, confusion_matrix, f1_per_class, macro_f1

# A hand-made example: 3 classes, 6 samples.
TARGET = torch.tensor([0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 1, 1, 1, 2, 0])


def test_accuracy_by_hand():
    assert accuracy(PRED, TARGET) == pytest.approx(4 / 6)


def test_confusion_by_hand():
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert torch.equal(confusion_matrix(PRED, TARGET), expected)


def test_macro_f1_by_hand():
    # class 0: TP 1, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1, FN 0 -> 4/5; class 2: TP 1, FN 1 -> 2/3
    assert macro_f1(PRED, TARGET) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_logits_are_argmaxed():
    logits = torch.nn.functional.one_hot(PRED, 3).float() * 3 + 0.1 * torch.randn(6, 3)
    assert accuracy(logits, TARGET) == accuracy(PRED, TARGET)
    assert torch.equal(confusion_matrix(logits, TARGET), confusion_matrix(PRED, TARGET))


def test_confusion_width_from_logits_and_num_classes():
    logits = torch.zeros(2, 5)
    logits[:, 1] = 1
    cm = confusion_matrix(logits, torch.tensor([1, 3]))
    assert cm.shape == (5, 5) and cm[1, 1] == 1 and cm[3, 1] == 1
    assert confusion_matrix(torch.tensor([0]), torch.tensor([0]), num_classes=4).shape == (4, 4)


def test_per_class_f1_zero_where_class_missing():
    cm = torch.tensor([[2, 0, 0], [0, 0, 0], [1, 0, 0]])
    f1 = f1_per_class(cm)
    assert f1[1] == 0 and f1[2] == 0 and f1[0] == pytest.approx(2 * 2 / (4 + 1))


labels = st.lists(st.integers(0, 6), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(labels, st.data())
def test_against_sklearn(y_true, data):
    y_pred = data.draw(st.lists(st.integers(0, 6), min_size=len(y_true), max_size=len(y_true)))
    t, p = torch.tensor(y_true), torch.tensor(y_pred)
    assert accuracy(p, t) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert macro_f1(p, t) == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    cm = confusion_matrix(p, t, num_classes=7)
    assert (cm.numpy() == skm.confusion_matrix(y_true, y_pred, labels=range(7))).all()


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match=r"expected pred of shape \(N,\) or \(N, C\)"):
        accuracy(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="pred has 3 samples but target has 2"):
        accuracy(torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="expected integer class indices"):
        accuracy(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="expected tensors"):
        accuracy([0, 1], torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected target classes in \[0, 2\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 5]), num_classes=2)
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert not math.isnan(macro_f1(torch.tensor([1]), torch.tensor([1])))


def test_evaluate_scores_are_the_metrics_of_its_predictions():
    """One confusion matrix and one macro F1: the trainer's tally gives the metrics' numbers."""
    from test_train import blobs, mlp

    from mmcourse.train import evaluate

    model = mlp()
    data = blobs(90)
    data["label"][:10] = 0  # some mistakes to count
    result = evaluate(model, data, batch_size=16)
    with torch.no_grad():
        logits = model(data["image"])
    assert torch.equal(result.confusion, confusion_matrix(logits, data["label"]))
    assert result.macro_f1 == pytest.approx(macro_f1(logits, data["label"]))
    assert result.accuracy == pytest.approx(accuracy(logits, data["label"]))


def test_confusion_counts_by_hand():
    from mmcourse.train.metrics import confusion_counts

    pred, target = torch.tensor([0, 2, 2, 1]), torch.tensor([0, 2, 1, 1])
    counts = confusion_counts(pred, target, 3)
    assert torch.equal(counts, torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]]))
