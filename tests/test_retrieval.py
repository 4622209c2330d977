"""Retrieval metrics and prototype classification against brute-force references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn.retrieval import (
    chance_recall_at_k,
    classify_by_prototype,
    knn_classify,
    prototypes,
    recall_at_k,
)


def _recall_loop(sim, q, g, k):
    hits = 0
    for i in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda j: -sim[i, j].item())[:k]
        hits += any(g[j] == q[i] for j in order)
    return hits / sim.shape[0]


@settings(max_examples=40, deadline=None)
@given(Q=st.integers(1, 10), G=st.integers(1, 12), C=st.integers(1, 4), k=st.integers(1, 12),
       seed=st.integers(0, 10_000))
def test_recall_matches_a_loop(Q, G, C, k, seed):
    k = min(k, G)
    gen = torch.Generator().manual_seed(seed)
    sim = torch.randn(Q, G, generator=gen, dtype=torch.float64)
    q, g = torch.randint(0, C, (Q,), generator=gen), torch.randint(0, C, (G,), generator=gen)
    assert math.isclose(recall_at_k(sim, q, g, k), _recall_loop(sim, q, g, k))


def test_instance_level_recall_and_perfect_ranking():
    labels = torch.arange(6)
    assert recall_at_k(torch.eye(6), labels, labels, 1) == 1.0
    shifted = torch.eye(6).roll(1, dims=1)  # query i is most similar to item i + 1
    assert recall_at_k(shifted, labels, labels, 1) == 0.0
    assert recall_at_k(shifted, labels, labels, 6) == 1.0


def _chance_by_simulation(q, g, k, trials=4000):
    gen = torch.Generator().manual_seed(0)
    hits = 0.0
    for _ in range(trials):
        hits += recall_at_k(torch.rand(len(q), len(g), generator=gen), q, g, k)
    return hits / trials


@pytest.mark.parametrize("k", [1, 3, 5])
def test_chance_level_matches_random_rankings(k):
    q = torch.tensor([0, 1, 2, 2])
    g = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])
    assert abs(chance_recall_at_k(q, g, k) - _chance_by_simulation(q, g, k)) < 0.02


def test_chance_level_closed_form():
    g = torch.arange(10).repeat(5)  # 50 items, 5 per class
    q = torch.arange(10)
    assert math.isclose(chance_recall_at_k(q, g, 1), 0.1)
    expected = 1 - math.comb(45, 5) / math.comb(50, 5)
    assert math.isclose(chance_recall_at_k(q, g, 5), expected)
    assert chance_recall_at_k(torch.tensor([11]), g, 5) == 0.0  # no item of class 11: never a hit


def test_prototypes_are_normalized_class_means():
    emb = torch.tensor([[2.0, 0.0], [0.0, 5.0], [0.0, 1.0], [3.0, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    p = prototypes(emb, labels, 2)
    s = 0.5 ** 0.5
    torch.testing.assert_close(p[0], torch.tensor([s, s], dtype=torch.float64))
    mean1 = (torch.tensor([0.0, 1.0]) + torch.tensor([s, s])) / 2
    torch.testing.assert_close(p[1], (mean1 / mean1.norm()).double())
    torch.testing.assert_close(p.norm(dim=1), torch.ones(2, dtype=torch.float64))


def test_nearest_prototype_recovers_clusters():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=gen) * 5
    labels = torch.arange(4).repeat(20)
    emb = centers[labels] + torch.randn(80, 16, generator=gen)
    protos = prototypes(emb, labels, 4)
    assert (classify_by_prototype(emb, protos) == labels).all()


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\(Q, G\)"):
        recall_at_k(torch.randn(3), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="k in"):
        recall_at_k(torch.randn(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"gallery_labels of shape \(3,\)"):
        recall_at_k(torch.randn(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="integer"):
        recall_at_k(torch.randn(2, 3), torch.zeros(2), torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="classes \\[2\\]"):
        prototypes(torch.randn(3, 2), torch.tensor([0, 1, 1]), 3)
    with pytest.raises(ValueError, match="same d"):
        classify_by_prototype(torch.randn(3, 2), torch.randn(4, 3))


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_knn_matches_scikit_learn(k):
    from sklearn.neighbors import KNeighborsClassifier

    gen = torch.Generator().manual_seed(k)
    labels = torch.randint(0, 5, (80,), generator=gen)
    centers = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    gallery = centers[labels] + 0.8 * torch.randn(80, 6, generator=gen, dtype=torch.float64)
    query = centers[torch.randint(0, 5, (30,), generator=gen)] + torch.randn(30, 6, generator=gen, dtype=torch.float64)
    unit = lambda x: torch.nn.functional.normalize(x, dim=1).numpy()  # noqa: E731
    expected = KNeighborsClassifier(n_neighbors=k).fit(unit(gallery), labels.numpy()).predict(unit(query))
    assert knn_classify(query, gallery, labels, k).tolist() == expected.tolist()


def test_knn_neighbours_are_per_query_and_ties_go_to_the_smallest_label():
    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([3, 3, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_classify(query, gallery, labels, 2).tolist() == [3, 1]  # each its own neighbours
    assert knn_classify(query, gallery, labels, 4).tolist() == [1, 1]  # a 2-2 tie: label 1
    assert knn_classify(query, gallery, labels, 1, num_classes=7).tolist() == [3, 1]


def test_knn_bad_inputs():
    with pytest.raises(ValueError, match="k in"):
        knn_classify(torch.randn(2, 3), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="same d"):
        knn_classify(torch.randn(2, 3), torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"gallery_labels of shape \(4,\)"):
        knn_classify(torch.randn(2, 3), torch.randn(4, 3), torch.zeros(3, dtype=torch.long), 1)
