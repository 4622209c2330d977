"""The learning chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcourse import check

# --- right answers -----------------------------------------------------------------------


def debiased_ema(x, beta):
    m, out = torch.zeros((), dtype=x.dtype), []
    for t in range(1, len(x) + 1):
        m = beta * m + (1 - beta) * x[t - 1]
        out.append(m / (1 - beta**t))
    return torch.stack(out)


def clip_grad_norm(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * scale for g in grads], total


def accumulation_step(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()
    optimizer.step()


def batchnorm_backward(dy, x, gamma, eps=1e-5):
    inv_std = 1 / torch.sqrt(x.var(0, correction=0) + eps)
    x_hat = (x - x.mean(0)) * inv_std
    dx_hat = dy * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(0) - x_hat * (dx_hat * x_hat).mean(0))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def test_right_answers_pass():
    assert check.debiased_ema(debiased_ema).startswith("✓")
    assert check.clip_grad_norm(clip_grad_norm).startswith("✓")
    assert check.accumulation_step(accumulation_step).startswith("✓")
    assert check.batchnorm_backward(batchnorm_backward).startswith("✓")


def test_checkers_are_listed():
    for name in ("debiased_ema", "clip_grad_norm", "accumulation_step", "batchnorm_backward"):
        assert name in check.EXERCISES and check.checker_for(name) is getattr(check, name)


# --- exercise 1: the usual mistakes are named --------------------------------------------


def ema_without_correction(x, beta):
    m, out = torch.zeros((), dtype=x.dtype), []
    for value in x:
        m = beta * m + (1 - beta) * value
        out.append(m)
    return torch.stack(out)


def ema_off_by_one(x, beta):
    m, out = torch.zeros((), dtype=x.dtype), []
    for t, value in enumerate(x):  # t from 0: divides by 1 - beta**0 = 0 first
        m = beta * m + (1 - beta) * value
        out.append(m / (1 - beta**t))
    return torch.stack(out)


def ema_started_at_first_value(x, beta):
    m, out = x[0], []
    for value in x:
        m = beta * m + (1 - beta) * value
        out.append(m)
    return torch.stack(out)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (ema_without_correction, "no bias correction"),
        (ema_off_by_one, r"beta\*\*\(t - 1\)"),
        (ema_started_at_first_value, "starts at x_1"),
    ],
)
def test_ema_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.debiased_ema(wrong)


def test_unknown_ema_mistake_fails_without_a_false_hint():
    with pytest.raises(check.CheckFailure) as failure:
        check.debiased_ema(lambda x, beta: debiased_ema(x, beta) + 0.1)
    assert "differ" in str(failure.value) and "Hint" not in str(failure.value)


# --- exercise 2 --------------------------------------------------------------------------


def clip_each_tensor(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads], total


def clip_always(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * max_norm / (total + 1e-6) for g in grads], total


def clip_values(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g.clamp(-max_norm, max_norm) for g in grads], total


def clip_in_place(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale)
    return grads, total


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (clip_each_tensor, "each tensor is clipped"),
        (clip_always, "only ever shrinks"),
        (clip_values, "clip_grad_value_"),
        (clip_in_place, "in place"),
    ],
)
def test_clipping_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.clip_grad_norm(wrong)


def test_clipping_without_the_total_norm_fails_clearly():
    with pytest.raises(check.CheckFailure, match="must return a pair"):
        check.clip_grad_norm(lambda grads, max_norm: clip_grad_norm(grads, max_norm)[0])


# --- exercise 3 --------------------------------------------------------------------------


def accumulate_mean_of_means(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        (F.cross_entropy(model(xb), yb) / len(sizes)).backward()
    optimizer.step()


def accumulate_sum_of_means(model, optimizer, x, y, sizes):
    optimizer.zero_grad()
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        F.cross_entropy(model(xb), yb).backward()
    optimizer.step()


def accumulate_without_zero_grad(model, optimizer, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()
    optimizer.step()


def accumulate_with_a_step_each(model, optimizer, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        optimizer.zero_grad()
        (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()
        optimizer.step()


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (accumulate_mean_of_means, "equal weights"),
        (accumulate_sum_of_means, "len\\(sizes\\) times too large"),
        (accumulate_without_zero_grad, "zero_grad"),
        (accumulate_with_a_step_each, "steps after every micro-batch"),
    ],
)
def test_accumulation_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint) as failure:
        check.accumulation_step(wrong)
    assert "parameters after your step" in str(failure.value)


def test_accumulation_that_never_steps_fails():
    def no_step(model, optimizer, x, y, sizes):
        optimizer.zero_grad()
        for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
            (F.cross_entropy(model(xb), yb, reduction="sum") / len(y)).backward()

    with pytest.raises(check.CheckFailure, match="entries differ"):
        check.accumulation_step(no_step)


def test_accumulation_on_the_whole_batch_at_once_fails():
    """The same parameters, but without accumulating: the checker sees the whole batch go in."""

    def whole_batch(model, optimizer, x, y, sizes):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    with pytest.raises(check.CheckFailure, match="only one micro-batch .* at a time"):
        check.accumulation_step(whole_batch)


# --- exercise 4 --------------------------------------------------------------------------


def bn_backward_constant_stats(dy, x, gamma, eps=1e-5):
    inv_std = 1 / torch.sqrt(x.var(0, correction=0) + eps)
    return dy * gamma * inv_std, (dy * (x - x.mean(0)) * inv_std).sum(0), dy.sum(0)


def bn_backward_unbiased(dy, x, gamma, eps=1e-5):
    inv_std = 1 / torch.sqrt(x.var(0) + eps)  # divisor N - 1
    x_hat = (x - x.mean(0)) * inv_std
    dx_hat = dy * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(0) - x_hat * (dx_hat * x_hat).mean(0))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


@pytest.mark.parametrize(
    "wrong, hint",
    [(bn_backward_constant_stats, "treated as constants"), (bn_backward_unbiased, "divisor N - 1")],
)
def test_batchnorm_mistakes_are_named(wrong, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.batchnorm_backward(wrong)


def test_batchnorm_with_swapped_outputs_names_the_item():
    def swapped(dy, x, gamma, eps=1e-5):
        dx, dgamma, dbeta = batchnorm_backward(dy, x, gamma, eps)
        return dx, dbeta, dgamma

    with pytest.raises(check.CheckFailure, match="item 1"):
        check.batchnorm_backward(swapped)


def test_stubs_say_not_written_yet():
    def stub(*args):
        raise NotImplementedError("write your solution here")

    for name in ("debiased_ema", "clip_grad_norm", "accumulation_step", "batchnorm_backward"):
        with pytest.raises(check.CheckFailure, match="not written yet"):
            getattr(check, name)(stub)
