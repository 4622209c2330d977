"""The conditional denoiser: shapes, the null label, a zero start, clear errors."""

from __future__ import annotations

import pytest
import torch

from mmcourse.nn import Denoiser, NoiseSchedule, diffusion_loss


def test_shapes_and_zero_start():
    model = Denoiser(image_shape=(1, 8, 8), T=50, num_classes=10, width=32, depth=2)
    x, t, y = torch.randn(5, 1, 8, 8), torch.randint(0, 50, (5,)), torch.randint(0, 10, (5,))
    out = model(x, t, y)
    assert out.shape == (5, 1, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))  # the output layer starts at zero: loss 1
    assert model.null_label == 10
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((5,), 10)))  # y=None: no class


def test_conditioning_changes_the_prediction_after_a_step():
    torch.manual_seed(0)
    model = Denoiser(image_shape=(4,), T=10, num_classes=3, width=16, depth=1)
    s = NoiseSchedule.make("linear", 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x0, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loss = diffusion_loss(model, s, x0, y, generator=torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    x, t = torch.randn(2, 4), torch.tensor([3, 3])
    assert not torch.allclose(model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1])))
    assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([9, 9])))


def test_deterministic_under_a_seed():
    torch.manual_seed(1)
    a = Denoiser(T=20, width=16)
    torch.manual_seed(1)
    b = Denoiser(T=20, width=16)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long)), r"\(B, 1, 8, 8\)"),
        (lambda m: m(torch.zeros(2, 1, 8, 8), torch.zeros(2)), "integer steps"),
        (lambda m: m(torch.zeros(2, 1, 8, 8), torch.tensor([0, 20])), r"0\.\.19"),
        (lambda m: m(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), torch.tensor([0, 11])), "no class"),
        (lambda m: m(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long)), "labels"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(Denoiser(T=20, width=8, depth=1))


def test_constructor_errors():
    with pytest.raises(ValueError, match="width"):
        Denoiser(width=0)
    with pytest.raises(ValueError, match="T"):
        Denoiser(T=-1)
