"""The sample judge: recognized, per-class diversity and nearest-training-image distance."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.judge import class_diversity, judge, nearest_distance, table, to_unit


def brute_diversity(x, y, c):
    xs = [v.flatten() for v, label in zip(x, y, strict=True) if label == c]
    pairs = [torch.linalg.vector_norm(a - b) for a, b in itertools.combinations(xs, 2)]
    return float(torch.stack(pairs).mean()) if pairs else float("nan")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 9), seed=st.integers(0, 1000))
def test_against_brute_force(n, m, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen)
    ref = torch.rand(m, 1, 2, 3, generator=gen, dtype=torch.float64)
    div = class_diversity(x, y, 3)
    for c in range(3):
        expected = brute_diversity(x, y, c)
        assert (div[c].isnan() and expected != expected) or abs(float(div[c]) - expected) < 1e-9
    near = nearest_distance(x, ref, chunk=5)
    for i in range(n):
        expected = min(float(torch.linalg.vector_norm(x[i] - r)) for r in ref)
        assert abs(float(near[i]) - expected) < 1e-9


class Oracle(torch.nn.Module):
    """A 'classifier' that reads the class from the first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 10).long().clamp(0, 9), 10).float()


def test_judge_sees_through_the_usual_cheats():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat_interleave(5)
    train = torch.rand(50, 1, 4, 4, generator=gen)
    train[:, 0, 0, 0] = (y + 0.5) / 10  # the class sits in the first pixel
    copies = judge(train, y, Oracle(), train, reference=(train, y))
    assert copies.recognized == 1.0 and copies.nearest_train == 0.0
    assert abs(copies.diversity_ratio - 1.0) < 1e-9
    one_each = judge(train[::5][y], y, Oracle(), train)
    assert one_each.diversity == 0.0 and one_each.diversity_ratio is None
    wrong = judge(train, (y + 1) % 10, Oracle(), train)
    assert wrong.recognized == 0.0 and torch.equal(wrong.per_class_recognized, torch.zeros(10, dtype=torch.float64))
    text = table({"copies": copies, "one each": one_each})
    assert text.count("\n") == 3 and "copies" in text and "100.0" in text


def test_to_unit():
    torch.testing.assert_close(to_unit(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: judge(torch.rand(4, 1, 2, 2) * 2 - 1, torch.zeros(4, dtype=torch.long), Oracle(), torch.rand(3, 1, 2, 2)), r"\[0, 1\]"),
        (lambda: judge(torch.rand(4, 1, 2, 2), torch.zeros(3, dtype=torch.long), Oracle(), torch.rand(3, 1, 2, 2)), "one per image"),
        (lambda: judge(torch.rand(4, 1, 2, 2), torch.full((4,), 10), Oracle(), torch.rand(3, 1, 2, 2)), r"0\.\.9"),
        (lambda: judge(torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long), Oracle(), torch.rand(3, 1, 2, 2)), "at least one"),
        (lambda: nearest_distance(torch.rand(2, 4), torch.rand(2, 5)), "values each"),
        (lambda: class_diversity(torch.arange(4), torch.zeros(4, dtype=torch.long), 2), "float tensor"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
