"""The fusion chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcourse import check

# --- right answers -----------------------------------------------------------------------


def renormalized_gating(s, z, present):
    g = s.softmax(1) * present[:, :, None]  # zero the missing gates ...
    g = g / g.sum(1, keepdim=True)  # ... and renormalize: the same as a softmax over the present
    return (g * torch.tanh(z)).sum(1)


def lowrank_factors(W, R):
    A, B = [], []
    for d in range(W.shape[2]):
        U, S, Vh = torch.linalg.svd(W[:, :, d])
        A.append(U[:, :R] * S[:R])  # (P, R)
        B.append(Vh[:R].T)  # (Q, R)
    return torch.stack(A, -1).permute(1, 0, 2), torch.stack(B, -1).permute(1, 0, 2)


def fit_late_weights(y, labels):
    a = torch.zeros(y.shape[0], dtype=y.dtype, requires_grad=True)
    opt = torch.optim.Adam([a], lr=0.1)
    for _ in range(400):
        loss = F.cross_entropy(torch.einsum("m,mnc->nc", a.softmax(0), y), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return a.detach().softmax(0)


def test_right_answers_pass():
    assert check.renormalized_gating(renormalized_gating).startswith("✓")
    assert check.lowrank_factors(lowrank_factors).startswith("✓")
    assert check.fit_late_weights(fit_late_weights).startswith("✓")


def test_checkers_are_listed():
    for name in ("renormalized_gating", "lowrank_factors", "fit_late_weights"):
        assert name in check.EXERCISES
    for old in ("outer_with_ones", "softmax_weighted_sum", "average_probabilities"):
        assert old not in check.EXERCISES


# --- typical mistakes, each named in the message ----------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda s, z, p: (s.softmax(1) * p[:, :, None] * torch.tanh(z)).sum(1), "no longer sum to one"),
        (lambda s, z, p: (s.softmax(1) * torch.tanh(z)).sum(1), "still take part"),
        (lambda s, z, p: (s.masked_fill(~p[:, :, None], float("-inf")).softmax(1) * z).sum(1), "tanh"),
    ],
)
def test_renormalized_gating_names_the_mistake(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.renormalized_gating(wrong)


def test_renormalized_gating_checks_gradients():
    def detached(s, z, p):
        return renormalized_gating(s.detach(), z, p)  # no gradient reaches the gate scores

    with pytest.raises(check.CheckFailure, match="gradient"):
        check.renormalized_gating(detached)


def test_lowrank_factors_names_the_mistake():
    def one_svd(W, R):  # one SVD of the (P, Q * D) flattening: outputs share their factors
        P, Q, D = W.shape
        U, S, Vh = torch.linalg.svd(W.reshape(P, Q * D), full_matrices=False)
        A = (U[:, :R] * S[:R]).T[:, :, None].expand(R, P, D) / D**0.5
        return A, Vh[:R].reshape(R, Q, D) * D**0.5

    def transposed(W, R):  # factors of the slices' transposes, swapped back wrongly
        A, B = lowrank_factors(W.transpose(0, 1), R)
        return A[:, : W.shape[0]], B[:, : W.shape[1]]

    def no_s(W, R):
        A, B = lowrank_factors(W, R)
        return A / A.norm(dim=1, keepdim=True), B

    with pytest.raises(check.CheckFailure, match="flattened"):
        check.lowrank_factors(one_svd)
    with pytest.raises(check.CheckFailure, match="singular values are missing"):
        check.lowrank_factors(no_s)
    with pytest.raises(check.CheckFailure, match="shape|best rank"):
        check.lowrank_factors(transposed)
    with pytest.raises(check.CheckFailure, match=r"shape \(2, "):
        check.lowrank_factors(lambda W, R: (torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)))
    with pytest.raises(check.CheckFailure, match="pair of tensors"):
        check.lowrank_factors(lambda W, R: W)


def test_lowrank_factors_smallest_singular_values():
    def smallest(W, R):
        A, B = [], []
        for d in range(W.shape[2]):
            U, S, Vh = torch.linalg.svd(W[:, :, d], full_matrices=False)
            A.append(U[:, -R:] * S[-R:])
            B.append(Vh[-R:].T)
        return torch.stack(A, -1).permute(1, 0, 2), torch.stack(B, -1).permute(1, 0, 2)

    with pytest.raises(check.CheckFailure, match="smallest"):
        check.lowrank_factors(smallest)


def test_fit_late_weights_names_the_mistake():
    def uniform(y, labels):
        return torch.full((y.shape[0],), 1 / y.shape[0], dtype=y.dtype)

    def raw(y, labels):  # the free parameters, not the weights
        return fit_late_weights(y, labels).log()

    def too_few_steps(y, labels):
        a = torch.zeros(y.shape[0], dtype=y.dtype, requires_grad=True)
        opt = torch.optim.SGD([a], lr=0.01)
        for _ in range(3):
            loss = F.cross_entropy(torch.einsum("m,mnc->nc", a.softmax(0), y), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return a.detach().softmax(0)

    with pytest.raises(check.CheckFailure, match="uniform starting weights"):
        check.fit_late_weights(uniform)
    with pytest.raises(check.CheckFailure, match="softmax"):
        check.fit_late_weights(raw)
    with pytest.raises(check.CheckFailure, match="stops falling"):
        check.fit_late_weights(too_few_steps)
    with pytest.raises(check.CheckFailure, match=r"shape \(\d,\)"):
        check.fit_late_weights(lambda y, labels: torch.ones(1))
