"""The fast-path chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from mmcourse import check
from mmcourse.check.fastpath import HostReadGuard

# --- right answers -----------------------------------------------------------------------


def atomic_save(obj, path):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def scaled_sgd_step(params, grads, scale, tracker, lr, growth_interval):
    found = torch.stack([~torch.isfinite(g).all() for g in grads]).any()
    new = [torch.where(found, p, p - lr * (g / scale)) for p, g in zip(params, grads, strict=True)]
    grow = ~found & (tracker + 1 >= growth_interval)
    scale = torch.where(found, scale * 0.5, torch.where(grow, scale * 2.0, scale))
    tracker = torch.where(found | grow, torch.zeros_like(tracker), tracker + 1)
    return new, scale, tracker


def calibration_tally(probs, y, n_bins):
    conf, pred = probs.max(dim=1)
    b = (conf * n_bins).long().clamp(max=n_bins - 1)

    def add(values, dtype):
        return torch.zeros(n_bins, dtype=dtype).scatter_add_(0, b, values)

    return add(torch.ones_like(b), torch.long), add(conf, probs.dtype), add((pred == y).long(), torch.long)


def test_right_answers_pass():
    assert check.atomic_save(atomic_save).startswith("✓")
    assert check.scaled_sgd_step(scaled_sgd_step).startswith("✓")
    assert check.calibration_tally(calibration_tally).startswith("✓")


def test_checkers_are_listed():
    for name in ("atomic_save", "scaled_sgd_step", "calibration_tally"):
        assert name in check.EXERCISES and check.checker_for(name) is getattr(check, name)
    for old in ("amp_policy", "count_parameters"):  # exercises that repeated the chapter's code
        assert old not in check.EXERCISES


# --- atomic_save ------------------------------------------------------------------------------


def save_in_place(obj, path):
    torch.save(obj, path)


def save_swallowing_errors(obj, path):
    try:
        atomic_save(obj, path)
    except Exception:
        pass


def save_leaving_temporaries(obj, path):
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_through_another_folder(obj, path):
    fd, tmp = tempfile.mkstemp()  # the system's temporary folder: maybe another file system
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (save_in_place, "written in place"),
        (save_swallowing_errors, "error was swallowed"),
        (save_leaving_temporaries, "temporary files left behind"),
        (save_through_another_folder, "must lie in the folder of"),
    ],
)
def test_atomic_save_names_the_mistake(wrong, message):
    with pytest.raises(check.CheckFailure, match=message):
        check.atomic_save(wrong)


# --- scaled_sgd_step --------------------------------------------------------------------------


def step_with(**mistake):
    """The right step with one mistake switched on."""

    def step(params, grads, scale, tracker, lr, growth_interval):
        def bad(g):
            return g.isinf().any() if mistake.get("isinf") else ~g.isfinite().all()

        found = torch.stack([bad(g) for g in grads]).any()
        new = []
        for p, g in zip(params, grads, strict=True):
            skip = bad(g) if mistake.get("per_tensor") else found
            update = lr * g if mistake.get("no_unscale") else lr * (g / scale)
            new.append(torch.where(skip, p, p - update))
        grow = ~found & (tracker + 1 >= growth_interval)
        if mistake.get("late_growth"):
            grow = ~found & (tracker >= growth_interval)
        down = 1.0 if mistake.get("no_backoff") else 0.5
        scale = torch.where(found, scale * down, torch.where(grow, scale * 2.0, scale))
        zero = torch.zeros_like(tracker)
        if mistake.get("keep_count_on_skip"):
            tracker = torch.where(found, tracker, torch.where(grow, zero, tracker + 1))
        elif mistake.get("keep_count_on_growth"):
            tracker = torch.where(found, zero, tracker + 1)
        else:
            tracker = torch.where(found | grow, zero, tracker + 1)
        return new, scale, tracker

    return step


@pytest.mark.parametrize(
    ("mistake", "hint"),
    [
        ("no_unscale", "divide them by the scale"),
        ("per_tensor", "skips the whole step"),
        ("isinf", "nan is an overflow too"),
        ("no_backoff", "halves the scale"),
        ("keep_count_on_skip", "restarts the count of good steps"),
        ("late_growth", "growth_interval-th good step"),
        ("keep_count_on_growth", "after the scale grows"),
    ],
)
def test_scaled_sgd_step_names_the_mistake(mistake, hint):
    with pytest.raises(check.CheckFailure, match=hint):
        check.scaled_sgd_step(step_with(**{mistake: True}))


def step_deciding_on_the_host(params, grads, scale, tracker, lr, growth_interval):
    if any(not torch.isfinite(g).all() for g in grads):  # bool(tensor): a host read
        return params, scale * 0.5, torch.zeros_like(tracker)
    return scaled_sgd_step(params, grads, scale, tracker, lr, growth_interval)


def test_scaled_sgd_step_refuses_host_reads():
    with pytest.raises(check.CheckFailure, match=r"reads a tensor's value on the host \(bool"):
        check.scaled_sgd_step(step_deciding_on_the_host)


def test_the_right_rule_is_gradscalers_over_many_steps():
    """Chained over steps with overflows, the solution follows torch.amp.GradScaler exactly."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    params = [p.detach().clone() for p in net.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scale, tracker = torch.tensor(2.0**8), torch.tensor(0, dtype=torch.int32)
    for step in range(12):
        loss = net(torch.randn(4, 3)).square().mean() * (float("inf") if step in (4, 5, 9) else 1)
        opt.zero_grad()
        scaler.scale(loss).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        scaler.step(opt)
        scaler.update()
        params, scale, tracker = scaled_sgd_step(params, grads, scale, tracker, 0.1, 3)
        for mine, theirs in zip(params, net.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs.detach())
        assert scale.item() == scaler.get_scale()
    assert scaler.get_scale() != 2.0**8  # the scale did move: backed off and grew again


# --- calibration_tally ------------------------------------------------------------------------


def tally_with_bincount(probs, y, n_bins):
    conf, pred = probs.max(dim=1)
    b = (conf * n_bins).long().clamp(max=n_bins - 1)
    counts = torch.bincount(b, minlength=n_bins)
    return counts, calibration_tally(probs, y, n_bins)[1], calibration_tally(probs, y, n_bins)[2]


def tally_by_masks(probs, y, n_bins):
    conf, pred = probs.max(dim=1)
    b = (conf * n_bins).long().clamp(max=n_bins - 1)
    total = torch.stack([conf[b == i].sum() for i in range(n_bins)])  # boolean indexing
    return calibration_tally(probs, y, n_bins)[0], total, calibration_tally(probs, y, n_bins)[2]


def tally_with_item(probs, y, n_bins):
    out = calibration_tally(probs, y, n_bins)
    assert out[0].sum().item() == len(y)
    return out


def tally_unclamped(probs, y, n_bins):
    conf, pred = probs.max(dim=1)
    b = (conf * n_bins).long()  # conf == 1 gives n_bins, one past the end

    def add(values, dtype):
        return torch.zeros(n_bins, dtype=dtype).scatter_add_(0, b, values)

    return add(torch.ones_like(b), torch.long), add(conf, probs.dtype), add((pred == y).long(), torch.long)


def tally_of_true_class(probs, y, n_bins):
    conf = probs.gather(1, y[:, None])[:, 0]  # the true label's probability
    return _tally_of(conf, probs.argmax(1), y, n_bins)


def _tally_of(conf, pred, y, n_bins):
    b = (conf * n_bins).long().clamp(max=n_bins - 1)

    def add(values, dtype):
        return torch.zeros(n_bins, dtype=dtype).scatter_add_(0, b, values)

    return add(torch.ones_like(b), torch.long), add(conf, conf.dtype), add((pred == y).long(), torch.long)


def tally_rounded(probs, y, n_bins):
    conf, pred = probs.max(dim=1)
    b = (conf * n_bins).round().long().clamp(max=n_bins - 1)

    def add(values, dtype):
        return torch.zeros(n_bins, dtype=dtype).scatter_add_(0, b, values)

    return add(torch.ones_like(b), torch.long), add(conf, probs.dtype), add((pred == y).long(), torch.long)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (tally_with_bincount, "uses torch.bincount, whose output size depends on the values"),
        (tally_by_masks, "indexing with a boolean mask"),
        (tally_with_item, r"host \(Tensor.item\(\)\)"),
        (tally_unclamped, "clamp the bin index to n_bins - 1"),
        (tally_of_true_class, "not the true label's"),
        (tally_rounded, "do not round it"),
    ],
)
def test_calibration_tally_names_the_mistake(wrong, message):
    with pytest.raises(check.CheckFailure, match=message):
        check.calibration_tally(wrong)


def test_guard_is_off_outside_its_block():
    x = torch.ones(3)
    with pytest.raises(check.CheckFailure, match="printing a tensor"), HostReadGuard("f"):
        repr(x)
    assert x.sum().item() == 3.0 and bool(x.any())
