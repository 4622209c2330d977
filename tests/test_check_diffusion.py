"""The image-generation chapter's checkers pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from mmcourse import check


def q_sample_from(x_s, alpha_bar, s, t, eps):
    r = alpha_bar[t] / alpha_bar[s]
    return r.sqrt() * x_s + (1 - r).sqrt() * eps


def ddim_step_eta(x, eps, ab, ab_next, eta, z, shrink=True, noise=True):
    sigma = eta * ((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)).sqrt()
    x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    direction = (1 - ab_next - (sigma**2 if shrink else 0)).sqrt() * eps
    return ab_next.sqrt() * x0 + direction + (sigma * z if noise else 0)


def composed_guidance(u, c, s):
    return u + (s.view(-1, *[1] * u.ndim) * (c - u)).sum(0)


def test_right_answers_pass():
    assert check.q_sample_from(q_sample_from).startswith("✓")
    assert check.ddim_step_eta(ddim_step_eta).startswith("✓")
    assert check.composed_guidance(composed_guidance).startswith("✓")


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x, ab, s, t, e: ab[t].sqrt() * x + (1 - ab[t]).sqrt() * e, "treats x_s as the clean image"),
        (lambda x, ab, s, t, e: (ab[t] / ab[s]).sqrt() * x + (1 - ab[t]).sqrt() * e, "variance 1 - alpha_bar"),
        (lambda x, ab, s, t, e: ab[t] / ab[s] * x + (1 - ab[t] / ab[s]) * e, "no square roots"),
    ],
)
def test_q_sample_from_mistakes(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.q_sample_from(wrong)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda *a: ddim_step_eta(*a, shrink=False), "must shrink"),
        (lambda *a: ddim_step_eta(*a, noise=False), "sigma z is missing"),
    ],
)
def test_ddim_step_eta_mistakes(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.ddim_step_eta(wrong)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * c).sum(0), "must be subtracted"),
        (lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * (c - u)).mean(0), "summed, not averaged"),
        (lambda u, c, s: u + (s.view(-1, *[1] * u.ndim) * (u - c)).sum(0), "roles are swapped"),
    ],
)
def test_composed_guidance_mistakes(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.composed_guidance(wrong)


def test_an_unknown_mistake_fails_without_a_false_hint():
    with pytest.raises(check.CheckFailure) as info:
        check.composed_guidance(lambda u, c, s: u * 0)
    assert "Hint" not in str(info.value)


def test_a_detached_answer_fails_on_gradients():
    with pytest.raises(check.CheckFailure, match="gradient"):
        check.q_sample_from(lambda *a: q_sample_from(*a).detach())


def test_stubs_are_reported_as_unwritten():
    def stub(*args):
        raise NotImplementedError

    for checker in (check.q_sample_from, check.ddim_step_eta, check.composed_guidance):
        with pytest.raises(check.CheckFailure, match="not written yet"):
            checker(stub)
    assert torch.is_tensor(torch.zeros(1))
