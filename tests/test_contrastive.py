"""InfoNCE: its reference values, its cross-entropy formulation, the learnable temperature."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn.contrastive import InfoNCE, info_nce, similarity


def _reference(a, b, tau):
    """Written out term by term: -1/2N sum_i [log p(b_i | a_i) + log p(a_i | b_i)]."""
    N = a.shape[0]
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(N):
        row = torch.stack([a[i] @ b[j] / tau for j in range(N)])
        col = torch.stack([a[j] @ b[i] / tau for j in range(N)])
        total = total - (row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0))
    return total / (2 * N)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 8), d=st.integers(1, 6), tau=st.floats(0.05, 2.0), seed=st.integers(0, 1000))
def test_matches_the_written_out_formula(N, d, tau, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(N, d, generator=g, dtype=torch.float64)
    b = torch.randn(N, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(info_nce(a, b, tau), _reference(a, b, tau))


def test_random_embeddings_give_about_log_n():
    g = torch.Generator().manual_seed(0)
    N = 256
    a, b = torch.randn(N, 64, generator=g), torch.randn(N, 64, generator=g)
    assert abs(info_nce(a, b, temperature=1.0).item() - math.log(N)) < 0.05


def test_perfect_pairs_with_low_temperature_give_near_zero():
    a = torch.eye(8)
    assert info_nce(a, a.clone(), temperature=0.01).item() < 1e-6


def test_symmetric_and_cross_entropy_formulation():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    torch.testing.assert_close(info_nce(a, b), info_nce(b, a))
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.07
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(info_nce(a, b, 0.07), expected)


def test_learnable_temperature_gets_a_gradient_and_is_clamped():
    loss_fn = InfoNCE(0.07)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    loss_fn(a, b).backward()
    assert loss_fn.log_scale.grad is not None
    with torch.no_grad():
        loss_fn.log_scale.fill_(10.0)
    assert math.isclose(loss_fn.temperature.item(), 0.01, rel_tol=1e-5)


def test_fixed_temperature_is_a_buffer_that_training_leaves_alone():
    learnable = InfoNCE(0.5)
    assert [n for n, _ in learnable.named_parameters()] == ["log_scale"]
    fixed = InfoNCE(0.5, learnable=False)
    assert list(fixed.parameters()) == []  # nothing for an optimizer to update
    assert "log_scale" in dict(fixed.named_buffers())  # but saved with the state dict
    assert "log_scale" in fixed.state_dict()
    a = torch.randn(5, 3, requires_grad=True)
    fixed(a, torch.randn(5, 3)).backward()
    assert a.grad is not None and fixed.log_scale.grad is None
    assert not fixed.log_scale.requires_grad
    assert math.isclose(fixed.temperature.item(), 0.5, rel_tol=1e-6)


def test_bad_inputs_name_the_expected_shapes():
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        info_nce(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="same d"):
        similarity(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="positive temperature"):
        InfoNCE(0.0)


@pytest.mark.parametrize("tau", [0.0, -0.5, torch.tensor(0.0), torch.tensor(-1.0)])
def test_non_positive_temperature_is_refused(tau):
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="expected a positive temperature"):
        info_nce(a, b, tau)
