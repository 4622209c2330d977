"""The diffusion module: schedule, forward closed form, loss, guidance and both samplers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import (
    NoiseSchedule,
    ancestral_sample,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    diffusion_loss,
    guide,
    guided,
    predict_x0,
)
from mmcourse.nn.diffusion import cosine_betas, linear_betas


def oracle_for(x0: torch.Tensor, schedule: NoiseSchedule):
    """A perfect noise predictor when the data is the single batch ``x0``."""

    def eps_model(x, t, y):
        ab = schedule.alpha_bar[t].view(-1, *[1] * (x.ndim - 1))
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    return eps_model


class Recorder:
    """A fake model that predicts zero noise and records the steps it is called at."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def __call__(self, x, t, y):
        assert (t == t[0]).all()
        self.steps.append(int(t[0]))
        return torch.zeros_like(x)


# --- the schedule --------------------------------------------------------------------------


def test_schedule_constants():
    betas = linear_betas(10, 0.01, 0.2)
    s = NoiseSchedule(betas)
    assert s.T == 10 and s.betas.dtype == torch.float32
    torch.testing.assert_close(s.alpha_bar, torch.cumprod(1 - betas, 0).float())
    torch.testing.assert_close(s.alpha_bar_prev[0], torch.tensor(1.0))
    torch.testing.assert_close(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
    torch.testing.assert_close(s.snr(), s.alpha_bar / (1 - s.alpha_bar))


def test_make_linear_and_cosine():
    lin = NoiseSchedule.make("linear", 100)
    torch.testing.assert_close(lin.betas[[0, -1]], torch.tensor([1e-3, 0.2]))
    cos = NoiseSchedule.make("cosine", 100)
    u = torch.tensor([0.5], dtype=torch.float64)
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(cos.alpha_bar[49].double(), f[0], atol=1e-5, rtol=1e-4)
    assert (cos.betas <= 0.999).all() and (cos.alpha_bar.diff() < 0).all()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NoiseSchedule.make("quadratic", 10), "linear"),
        (lambda: NoiseSchedule.make("linear", 0), "positive int"),
        (lambda: NoiseSchedule(torch.tensor([0.1, 1.0])), r"\(0, 1\)"),
        (lambda: NoiseSchedule(torch.zeros(2, 2) + 0.1), r"\(T,\)"),
        (lambda: linear_betas(10, 0.2, 0.1), "beta_1 <= beta_T"),
        (lambda: cosine_betas(10, max_beta=1.0), "max_beta"),
    ],
)
def test_schedule_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_closed_form_equals_iterating_with_the_same_draws(T, seed):
    gen = torch.Generator().manual_seed(seed)
    betas = 1e-3 + 0.3 * torch.rand(T, generator=gen, dtype=torch.float64)
    alphas = 1 - betas
    x0 = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(T, 3, 5, generator=gen, dtype=torch.float64)
    x, total = x0, torch.zeros_like(x0)  # total: the accumulated noise, one coefficient per draw
    for t in range(T):
        x = alphas[t].sqrt() * x + betas[t].sqrt() * eps[t]
        total = alphas[t].sqrt() * total + betas[t].sqrt() * eps[t]
    alpha_bar = torch.cumprod(alphas, 0)
    # x_T = sqrt(alpha_bar) x0 + (a combination of the draws with variance 1 - alpha_bar)
    torch.testing.assert_close(x, alpha_bar[-1].sqrt() * x0 + total)
    coef_sq = torch.stack(
        [betas[s] * torch.prod(alphas[s + 1 :]) for s in range(T)]
    ).sum()  # the variance of that combination
    torch.testing.assert_close(coef_sq, 1 - alpha_bar[-1])
    # so the package's q_sample, given the normalized noise, returns the same x_T
    s = NoiseSchedule(betas)
    eps_bar = (total / (1 - alpha_bar[-1]).sqrt()).float()
    got = s.q_sample(x0.float(), torch.full((3,), T - 1), eps_bar)
    torch.testing.assert_close(got, x.float(), atol=1e-5, rtol=1e-4)


def test_q_sample_statistics():
    s = NoiseSchedule.make("linear", 50)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20_000, 1), 0.7)
    t = torch.full((20_000,), 24)
    x_t = s.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    ab = s.alpha_bar[24]
    assert abs(float(x_t.mean()) - 0.7 * float(ab.sqrt())) < 0.03
    assert abs(float(x_t.var()) - float(1 - ab)) < 0.03


def test_q_sample_errors():
    s = NoiseSchedule.make("linear", 10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        s.q_sample(x, torch.tensor([0, 10]), x)
    with pytest.raises(TypeError, match="integer steps"):
        s.q_sample(x, torch.tensor([0.0, 1.0]), x)
    with pytest.raises(ValueError, match="same shape"):
        s.q_sample(x, torch.tensor([0, 1]), torch.zeros(2, 4))


# --- the loss and guidance -----------------------------------------------------------------


def test_loss_is_deterministic_and_matches_the_formula():
    s = NoiseSchedule.make("linear", 20)
    x0, y = torch.randn(8, 1, 2, 2), torch.arange(8) % 3

    def model(x, t, y):
        return 0.5 * x + 0.01 * t.view(-1, 1, 1, 1) + 0.1 * y.view(-1, 1, 1, 1)

    a = diffusion_loss(model, s, x0, y, p_uncond=0.5, null_label=3, generator=torch.Generator().manual_seed(1))
    b = diffusion_loss(model, s, x0, y, p_uncond=0.5, null_label=3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    gen = torch.Generator().manual_seed(1)
    t = torch.randint(0, 20, (8,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    drop = torch.rand(8, generator=gen) < 0.5
    yy = torch.where(drop, 3, y)
    torch.testing.assert_close(a, (model(s.q_sample(x0, t, eps), t, yy) - eps).pow(2).mean())


def test_loss_errors():
    s = NoiseSchedule.make("linear", 5)
    x0, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="probability"):
        diffusion_loss(lambda x, t, y: x, s, x0, y, p_uncond=1.5, null_label=1)
    with pytest.raises(ValueError, match="null_label"):
        diffusion_loss(lambda x, t, y: x, s, x0, y, p_uncond=0.1)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0, 10), seed=st.integers(0, 1000))
def test_guide_is_an_affine_combination(scale, seed):
    gen = torch.Generator().manual_seed(seed)
    u, c = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    g = guide(u, c, scale)
    torch.testing.assert_close(g, (1 - scale) * u + scale * c)
    torch.testing.assert_close(guide(u, c, 0.0), u)
    torch.testing.assert_close(guide(u, c, 1.0), c)


def test_guided_batches_both_predictions():
    calls = []

    def model(x, t, y):
        calls.append(len(x))
        return x * (y.view(-1, 1) + 1)

    x, t, y = torch.ones(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2])
    out = guided(model, 2.0, null_label=9)(x, t, y)
    torch.testing.assert_close(out, guide(x * 10, x * (y.view(-1, 1) + 1), 2.0))
    assert calls == [6]  # one batched call
    torch.testing.assert_close(guided(model, 1.0, 9)(x, t, y), model(x, t, y))
    with pytest.raises(ValueError, match="guidance scale"):
        guided(model, -1.0, 9)
    with pytest.raises(ValueError, match="guidance scale"):
        guided(model, float("nan"), 9)


# --- samplers ------------------------------------------------------------------------------


def test_ancestral_first_and_last_steps():
    s = NoiseSchedule.make("linear", 12)
    rec = Recorder()
    y = torch.zeros(4, dtype=torch.long)
    x, path = ancestral_sample(rec, s, y, (2, 3), generator=torch.Generator().manual_seed(0), trajectory=True)
    assert rec.steps == list(range(11, -1, -1))  # first call at t = T-1, last at t = 0
    assert len(path) == 13 and x.shape == (4, 2, 3)
    # the start is x_T ~ N(0, I) drawn first from the generator
    torch.testing.assert_close(path[0], torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0)))
    # the last step adds no noise: from x_1 with eps = 0 it returns x0_hat = x_1 / sqrt(ab_0)
    torch.testing.assert_close(path[-1], path[-2] / s.alpha_bar[0].sqrt())


def test_ancestral_with_a_perfect_model_returns_the_data():
    s = NoiseSchedule.make("linear", 30)
    x0 = torch.rand(5, 1, 3, 3) * 2 - 1
    x = ancestral_sample(oracle_for(x0, s), s, torch.zeros(5, dtype=torch.long), (1, 3, 3),
                         generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=1e-4)


def test_samplers_are_deterministic_under_a_seed():
    s = NoiseSchedule.make("cosine", 15)

    def model(x, t, y):
        return torch.tanh(x) * 0.3 + 0.01 * t.view(-1, 1)

    y = torch.arange(6)
    for sample in (
        lambda g: ancestral_sample(model, s, y, (4,), clip=1.0, generator=g),
        lambda g: ddim_sample(model, s, y, (4,), 5, clip=1.0, generator=g),
    ):
        a, b = sample(torch.Generator().manual_seed(3)), sample(torch.Generator().manual_seed(3))
        torch.testing.assert_close(a, b)
        assert not torch.equal(a, sample(torch.Generator().manual_seed(4)))


def test_clip_bounds_the_estimate():
    s = NoiseSchedule.make("linear", 10)
    big = lambda x, t, y: -10 * torch.ones_like(x)  # noqa: E731 (predicts a huge x0)
    x = ddim_sample(big, s, torch.zeros(3, dtype=torch.long), (2,), 10, clip=1.0,
                    generator=torch.Generator().manual_seed(0))
    assert x.abs().max() <= 1 + 1e-5


def test_ddim_timesteps():
    torch.testing.assert_close(ddim_timesteps(100, 1), torch.tensor([99]))
    ts = ddim_timesteps(100, 20)
    assert len(ts) == 20 and ts[0] == 99 and ts[-1] == 0 and (ts.diff() < 0).all()
    torch.testing.assert_close(ddim_timesteps(7, 7), torch.arange(6, -1, -1))
    for T, steps in ((10, 0), (10, 11), (0, 1)):
        with pytest.raises(ValueError):
            ddim_timesteps(T, steps)


@settings(max_examples=20, deadline=None)
@given(steps=st.integers(1, 25), seed=st.integers(0, 1000))
def test_ddim_with_a_perfect_model_lands_on_the_data(steps, seed):
    s = NoiseSchedule.make("linear", 25)
    x0 = torch.rand(4, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    rec_model = oracle_for(x0, s)
    x = ddim_sample(rec_model, s, torch.zeros(4, dtype=torch.long), (3,), steps,
                    generator=torch.Generator().manual_seed(seed))
    # float32: x0_hat divides by sqrt(alpha_bar), which is small for a single jump from t = T-1
    torch.testing.assert_close(x, x0, atol=1e-3, rtol=1e-3)


def test_ddim_visits_its_timesteps_and_only_the_start_is_random():
    s = NoiseSchedule.make("linear", 50)
    rec = Recorder()
    y = torch.zeros(2, dtype=torch.long)
    _, path = ddim_sample(rec, s, y, (3,), 6, generator=torch.Generator().manual_seed(0), trajectory=True)
    assert rec.steps == ddim_timesteps(50, 6).tolist() and len(path) == 7
    # eps = 0 everywhere: each jump rescales by sqrt(ab_next / ab); the last lands on ab = 1
    ab = s.alpha_bar[49]
    torch.testing.assert_close(path[-1], path[0] / ab.sqrt(), atol=1e-4, rtol=1e-4)


def test_ddim_step_and_predict_x0():
    ab, ab_next = torch.tensor(0.3), torch.tensor(0.8)
    x0, eps = torch.randn(2, 4), torch.randn(2, 4)
    x = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(predict_x0(x, eps, ab), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim_step(x, eps, ab, ab_next), ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps)
    torch.testing.assert_close(ddim_step(x, eps, ab, torch.tensor(1.0)), x0, atol=1e-5, rtol=1e-5)


def test_sampler_errors():
    s = NoiseSchedule.make("linear", 10)
    model = lambda x, t, y: x  # noqa: E731
    with pytest.raises(ValueError, match="labels y"):
        ancestral_sample(model, s, torch.zeros(3), (2,))
    with pytest.raises(ValueError, match="clip"):
        ancestral_sample(model, s, torch.zeros(3, dtype=torch.long), (2,), clip=0.0)
    with pytest.raises(ValueError, match="at most T"):
        ddim_sample(model, s, torch.zeros(3, dtype=torch.long), (2,), 11)
