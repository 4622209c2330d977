"""The contrastive chapter's checkers: they pass right answers, fail the usual mistakes with a
hint that names them, and their references agree with independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from mmcourse import check
from mmcourse.check.contrastive import _knn_loo, _lora_from_delta, _supcon
from mmcourse.nn import info_nce

# --- right answers -----------------------------------------------------------------------


def recall_at_k(sim, query_labels, gallery_labels, k):
    top = sim.topk(k, dim=1).indices
    return (gallery_labels[top] == query_labels[:, None]).any(1).double().mean().item()


def supervised_info_nce(a, b, labels, tau):
    S = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    pos = (labels[:, None] == labels[None, :]).to(S.dtype)
    pos = pos / pos.sum(1, keepdim=True)  # symmetric, so the columns have the same weights
    rows = -(pos * S.log_softmax(1)).sum(1).mean()
    cols = -(pos * S.T.log_softmax(1)).sum(1).mean()
    return (rows + cols) / 2


def knn_leave_one_out(z, labels, k):
    dist = torch.cdist(z, z)
    dist.fill_diagonal_(float("inf"))
    near = dist.topk(k, dim=1, largest=False).indices
    votes = F.one_hot(labels[near], int(labels.max()) + 1).sum(1)
    return votes.argmax(1)


def lora_from_delta(W0, W1, r, alpha):
    U, s, Vh = torch.linalg.svd(W1 - W0, full_matrices=False)
    return U[:, :r] * s[:r] * (r / alpha), Vh[:r]


def test_right_answers_pass():
    assert check.recall_at_k(recall_at_k).startswith("✓")
    assert check.supervised_info_nce(supervised_info_nce).startswith("✓")
    assert check.knn_leave_one_out(knn_leave_one_out).startswith("✓")
    assert check.lora_from_delta(lora_from_delta).startswith("✓")


def test_checkers_are_listed():
    for name in ("recall_at_k", "supervised_info_nce", "knn_leave_one_out", "lora_from_delta"):
        assert name in check.EXERCISES and check.checker_for(name) is getattr(check, name)


# --- the usual mistakes are named ----------------------------------------------------------


def _fails_with(checker, fn, *words):
    with pytest.raises(check.CheckFailure) as failure:
        checker(fn)
    for w in words:
        assert w in str(failure.value), str(failure.value)


def test_recall_ranked_the_wrong_way():
    _fails_with(check.recall_at_k, lambda s, q, g, k: recall_at_k(-s, q, g, k), "least")


def test_supervised_info_nce_mistakes():
    def diagonal_only(a, b, labels, tau):
        return info_nce(a, b, tau)

    def summed(a, b, labels, tau):
        S = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
        pos = (labels[:, None] == labels[None, :]).to(S.dtype)
        return (-(pos * S.log_softmax(1)).sum(1).mean() - (pos * S.T.log_softmax(1)).sum(1).mean()) / 2

    def one_way(a, b, labels, tau):
        S = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
        pos = (labels[:, None] == labels[None, :]).to(S.dtype)
        return -(pos / pos.sum(1, keepdim=True) * S.log_softmax(1)).sum(1).mean()

    def unnormalized(a, b, labels, tau):
        S = a @ b.T / tau
        pos = (labels[:, None] == labels[None, :]).to(S.dtype)
        pos = pos / pos.sum(1, keepdim=True)
        return (-(pos * S.log_softmax(1)).sum(1).mean() - (pos * S.T.log_softmax(1)).sum(1).mean()) / 2

    def detached(a, b, labels, tau):
        return supervised_info_nce(a.detach(), b.detach(), labels, tau)

    _fails_with(check.supervised_info_nce, diagonal_only, "plain InfoNCE")
    _fails_with(check.supervised_info_nce, summed, "average them")
    _fails_with(check.supervised_info_nce, one_way, "only one direction")
    _fails_with(check.supervised_info_nce, unnormalized, "not normalized")
    _fails_with(check.supervised_info_nce, detached, "not connected")


def test_knn_mistakes():
    def with_self(z, labels, k):
        near = torch.cdist(z, z).topk(k, dim=1, largest=False).indices
        return F.one_hot(labels[near], int(labels.max()) + 1).sum(1).argmax(1)

    def pooled(z, labels, k):  # the articles' k-NN: every distance in one sorted list
        d = torch.cdist(z, z).fill_diagonal_(float("inf")).flatten()
        near = d.argsort()[:k] % len(labels)
        return torch.bincount(labels[near], minlength=int(labels.max()) + 1).argmax().repeat(len(labels))

    def as_float(z, labels, k):
        return knn_leave_one_out(z, labels, k).double()

    _fails_with(check.knn_leave_one_out, with_self, "counts itself")
    _fails_with(check.knn_leave_one_out, pooled, "sorted together")
    _fails_with(check.knn_leave_one_out, as_float, "dtype")


def test_lora_from_delta_mistakes():
    def smallest(W0, W1, r, alpha):
        U, s, Vh = torch.linalg.svd(W1 - W0, full_matrices=False)
        return U[:, -r:] * s[-r:] * (r / alpha), Vh[-r:]

    def unscaled(W0, W1, r, alpha):
        U, s, Vh = torch.linalg.svd(W1 - W0, full_matrices=False)
        return U[:, :r] * s[:r], Vh[:r]

    def transposed(W0, W1, r, alpha):
        B, A = lora_from_delta(W0, W1, r, alpha)
        return A, B

    def of_w1(W0, W1, r, alpha):
        return lora_from_delta(torch.zeros_like(W1), W1, r, alpha)

    _fails_with(check.lora_from_delta, smallest, "smallest")
    _fails_with(check.lora_from_delta, unscaled, "alpha / r")
    _fails_with(check.lora_from_delta, transposed, "should have shape")
    _fails_with(check.lora_from_delta, of_w1, "differ")


# --- the references against independent computations --------------------------------------


def test_supervised_info_nce_is_info_nce_when_every_label_differs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_supcon(a, b, torch.arange(7), 0.3), info_nce(a, b, 0.3))


def test_supervised_info_nce_written_out():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels, tau = torch.tensor([0, 1, 0, 2, 1, 0]), 0.5
    an, bn = F.normalize(a, dim=1), F.normalize(b, dim=1)
    total = 0.0
    for S in (an @ bn.T / tau, bn @ an.T / tau):
        for i in range(6):
            pos = [j for j in range(6) if labels[j] == labels[i]]
            total -= sum(S[i, j] - torch.logsumexp(S[i], 0) for j in pos) / len(pos) / 6
    torch.testing.assert_close(_supcon(a, b, labels, tau), total / 2)


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_knn_reference_matches_scikit_learn_leave_one_out(k):
    g = torch.Generator().manual_seed(k)
    labels = torch.randint(0, 4, (60,), generator=g)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64)[labels] + torch.randn(60, 3, generator=g, dtype=torch.float64)
    knn = KNeighborsClassifier(n_neighbors=k).fit(z.numpy(), labels.numpy())
    near = knn.kneighbors(return_distance=False)  # no X: each point's neighbours without itself
    votes = np.stack([np.bincount(labels.numpy()[row], minlength=4) for row in near])
    assert np.array_equal(_knn_loo(z, labels, k).numpy(), votes.argmax(1))


def test_lora_reference_is_the_best_rank_r_approximation():
    g = torch.Generator().manual_seed(2)
    W0 = torch.randn(6, 5, generator=g, dtype=torch.float64)
    low = torch.randn(6, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_lora_from_delta(W0, W0 + low, 2, 8.0), low)  # exact when rank 2
    W1 = W0 + torch.randn(6, 5, generator=g, dtype=torch.float64)
    best = _lora_from_delta(W0, W1, 2, 8.0)
    assert torch.linalg.matrix_rank(best) == 2
    s = torch.linalg.svdvals(W1 - W0)
    torch.testing.assert_close(torch.dist(W1 - W0, best), s[2:].square().sum().sqrt())  # Eckart-Young
    U, _, Vh = torch.linalg.svd(best, full_matrices=False)
    B, A = U[:, :2] * s[:2], Vh[:2]
    for _ in range(20):  # nearby rank-2 matrices are all farther away
        other = (B + 0.1 * torch.randn(B.shape, generator=g, dtype=torch.float64)) @ (
            A + 0.1 * torch.randn(A.shape, generator=g, dtype=torch.float64))
        assert torch.dist(W1 - W0, best) <= torch.dist(W1 - W0, other)
