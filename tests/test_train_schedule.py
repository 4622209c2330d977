"""Learning-rate schedules against torch's own, and gradient clipping."""

import math

import pytest
import torch
from test_train import blobs, mlp, one_thread  # noqa: F401 (autouse fixture)

from mmcourse.train import fit
from mmcourse.train.schedule import LRFactor, make_schedule


def lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def opt(lr=0.1):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


@pytest.mark.parametrize("total", [10, 37, 100])
def test_cosine_equals_torch_cosine_annealing(total):
    ours = make_schedule("cosine", opt(), total_steps=total)
    o = opt()
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total)
    assert lrs(ours, total) == pytest.approx(lrs(ref, total), abs=1e-12)


@pytest.mark.parametrize(("total", "warmup"), [(20, 0), (50, 10), (101, 30)])
def test_onecycle_equals_torch_onecycle(total, warmup):
    ours = make_schedule("onecycle", opt(), total_steps=total, warmup_steps=warmup)
    o = opt()
    pct = warmup / total if warmup else 0.3
    ref = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=total, pct_start=pct,
                                              cycle_momentum=False)
    assert lrs(ours, total) == pytest.approx(lrs(ref, total), rel=1e-9, abs=1e-14)


def test_warmup_is_linear_then_the_schedule():
    f = LRFactor("cosine", total_steps=100, warmup_steps=10)
    assert [f(t) for t in range(10)] == pytest.approx([(t + 1) / 10 for t in range(10)])
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    c = LRFactor("constant", total_steps=100, warmup_steps=4)
    assert [c(t) for t in (0, 3, 4, 99)] == [0.25, 1.0, 1.0, 1.0]


def test_schedule_errors():
    with pytest.raises(ValueError, match="schedule must be one of"):
        LRFactor("step", 10)
    with pytest.raises(ValueError, match="expected 0 <= warmup_steps <= total_steps"):
        LRFactor("cosine", 10, 11)
    with pytest.raises(TypeError, match="expected schedule to be a name or a callable"):
        make_schedule(3, opt(), total_steps=10)
    assert make_schedule(None, opt(), total_steps=10) is None


def test_fit_steps_the_schedule_per_batch():
    # 240 samples / 40 = 6 steps per epoch, 3 epochs; 1 warm-up epoch
    h = fit(mlp(), blobs(), epochs=3, lr=0.1, batch_size=40, schedule="cosine", warmup=1,
            device="cpu")
    f = LRFactor("cosine", total_steps=18, warmup_steps=6)
    assert h.lr == pytest.approx([0.1 * f(0), 0.1 * f(6), 0.1 * f(12)])
    h = fit(mlp(), blobs(), epochs=2, lr=0.1, batch_size=40, schedule=lambda t: 0.5 ** t,
            device="cpu")
    assert h.lr == pytest.approx([0.1, 0.1 * 0.5**6])
    with pytest.raises(ValueError, match="warmup must be a number of epochs"):
        fit(mlp(), blobs(), epochs=2, warmup=3, device="cpu")


def test_grad_clip_bounds_the_step():
    """One full-batch SGD step with lr=1: the update is the clipped gradient, norm <= c."""
    data = blobs()
    for clip in (None, 0.05):
        model = mlp()
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        sgd = torch.optim.SGD(model.parameters(), lr=1.0)
        fit(model, data, epochs=1, batch_size=240, optimizer=sgd, grad_clip=clip, device="cpu")
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        step = (after - before).norm().item()
        if clip is None:
            assert step > 0.1
        else:
            assert step == pytest.approx(clip, rel=1e-4)
    with pytest.raises(ValueError, match="grad_clip must be a positive number"):
        fit(mlp(), data, epochs=1, grad_clip=-1, device="cpu")
    assert not math.isnan(step)
