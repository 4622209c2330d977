"""The conditional DCGAN: shapes at several sizes, the two losses, one alternating step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import Discriminator, Generator, discriminator_loss, gan_step, generator_loss


@pytest.mark.parametrize("size", [4, 8, 16, 32])
def test_shapes(size):
    G = Generator(z_dim=8, num_classes=3, size=size, channels=2, width=8)
    D = Discriminator(num_classes=3, size=size, channels=2, width=8)
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    x = G(z, y)
    assert x.shape == (5, 2, size, size) and x.abs().max() <= 1
    assert D(x, y).shape == (5,)


def test_minibatch_std_option():
    D = Discriminator(width=8, minibatch_std=True)
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    assert D(x, y).shape == (6,) and D(x[:1], y[:1]).shape == (1,)
    # a batch of identical images has zero spread: its logits differ from a varied batch's
    same = x[:1].expand(6, -1, -1, -1)
    assert not torch.allclose(D(same, y)[0], D(torch.cat([x[:1], x[1:]]), y)[0])


def test_sample_is_deterministic_and_keeps_the_mode():
    torch.manual_seed(0)
    G = Generator(width=8)
    G.train()
    y = torch.arange(10)
    a = G.sample(y, torch.Generator().manual_seed(1))
    b = G.sample(y, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert G.training and not a.requires_grad


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=1, max_size=8), st.lists(st.floats(-20, 20), min_size=1, max_size=8))
def test_losses_match_their_formulas(real, fake):
    r, f = torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64)
    d = torch.sigmoid
    expected_d = -torch.log(d(r)).mean() - torch.log(1 - d(f)).mean()
    torch.testing.assert_close(discriminator_loss(r, f), expected_d, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(generator_loss(f), -F.logsigmoid(f).mean())
    torch.testing.assert_close(generator_loss(f, saturating=True), F.logsigmoid(-f).mean())


def test_gan_step_moves_each_player_on_its_own_loss():
    torch.manual_seed(0)
    G, D = Generator(width=8), Discriminator(width=8)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.1)
    x, y = torch.rand(16, 1, 8, 8) * 2 - 1, torch.arange(16) % 10
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    out = gan_step(G, D, opt_g, opt_d, x, y, generator=torch.Generator().manual_seed(2))
    assert math.isfinite(out.d_loss) and math.isfinite(out.g_loss)
    assert all(p.requires_grad for p in D.parameters())  # unfrozen again

    # D moved by exactly one SGD step on its own loss, fakes from the old G (same z)
    z = torch.randn(16, G0.z_dim, generator=torch.Generator().manual_seed(2))
    fake = G0(z, y).detach()
    loss = discriminator_loss(D0(x, y), D0(fake, y))
    d_grads = torch.autograd.grad(loss, list(D0.parameters()))
    for p, p0, g in zip(D.parameters(), D0.parameters(), d_grads, strict=True):
        torch.testing.assert_close(p, p0 - 0.1 * g)
    # G moved by one step on the non-saturating loss through the updated, frozen D
    G1 = copy.deepcopy(G0)
    g_loss = generator_loss(D(G1(z, y), y))
    grads = torch.autograd.grad(g_loss, list(G1.parameters()))
    for p, p0, g in zip(G.parameters(), G0.parameters(), grads, strict=True):
        torch.testing.assert_close(p, p0 - 0.1 * g)
    for p, g in zip(D.parameters(), d_grads, strict=True):  # G's step added nothing to D's gradients
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: Generator(size=12), "power of two"),
        (lambda: Generator(z_dim=0), "z_dim"),
        (lambda: Generator(width=8)(torch.randn(2, 5), torch.tensor([0, 1])), r"\(B, 32\)"),
        (lambda: Generator(width=8)(torch.randn(2, 32), torch.tensor([0, 10])), r"0\.\.9"),
        (lambda: Discriminator(width=8)(torch.randn(2, 8, 8), torch.tensor([0, 1])), r"\(B, 1, 8, 8\)"),
        (lambda: Discriminator(width=8)(torch.randn(2, 1, 8, 8), torch.tensor([0.0, 1.0])), "integer labels"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
