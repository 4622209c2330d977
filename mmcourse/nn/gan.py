"""A class-conditional DCGAN for small images, and the two losses of the GAN game.

The generator G(z, y) maps noise and a class to an image; the discriminator D(x, y) gives a
logit: high for "a real image of class y". They play

    min_G max_D  E_data[log D(x, y)] + E_z[log(1 - D(G(z, y), y))],

in alternating steps (``discriminator_loss`` for D, ``generator_loss`` for G; see
``gan_step``). The generator's loss is the non-saturating one, -log D(G(z)), whose gradient
stays large while D still rejects the fakes.

DCGAN (Radford et al.): transposed convolutions that double the size, BatchNorm and ReLU in the
generator, strided convolutions and LeakyReLU in the discriminator, tanh output in [-1, 1].
The discriminator is conditioned by projection (Miyato & Koyama): its logit is
psi(phi(x)) + <embed(y), phi(x)>.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.validate import positive_int


def _check_size(size: int) -> int:
    positive_int("size", size)
    if size < 4 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 4 (e.g. 8 or 32), got {size}")
    return size


def _check_labels(y: torch.Tensor, B: int, num_classes: int) -> None:
    if not isinstance(y, torch.Tensor) or y.shape != (B,) or y.is_floating_point():
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"expected integer labels y of shape ({B},), got {got}")
    if B and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"expected labels y in 0..{num_classes - 1}")


class Generator(nn.Module):
    """G(z (B, z_dim), y (B,)) -> images (B, channels, size, size) in [-1, 1].

    A linear layer makes a (4 width, 2, 2) map from [z; embed(y)]; each transposed convolution
    (kernel 4, stride 2, padding 1) doubles the side until it reaches ``size``.
    """

    def __init__(
        self,
        z_dim: int = 32,
        num_classes: int = 10,
        size: int = 8,
        channels: int = 1,
        width: int = 32,
    ) -> None:
        super().__init__()
        self.z_dim = positive_int("z_dim", z_dim)
        self.num_classes = positive_int("num_classes", num_classes)
        self.size = _check_size(size)
        self.channels = positive_int("channels", channels)
        positive_int("width", width)
        self.embed = nn.Embedding(num_classes, z_dim)
        c = 4 * width
        self.fc = nn.Sequential(nn.Linear(2 * z_dim, c * 4), nn.BatchNorm1d(c * 4), nn.ReLU())
        layers: list[nn.Module] = []
        side = 2
        while side < size // 2:  # (B, c, s, s) -> (B, c / 2, 2 s, 2 s)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(),
            ]
            c, side = max(c // 2, 1), side * 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]  # the last doubling
        self.net = nn.Sequential(*layers)
        self._c0 = 4 * width

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        B = z.shape[0]
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        _check_labels(y, B, self.num_classes)
        h = self.fc(torch.cat([z, self.embed(y)], dim=1))  # (B, 4 width * 4)
        return self.net(h.view(B, self._c0, 2, 2))  # (B, channels, size, size)

    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of the classes ``y`` (B,) from fresh noise, in eval mode, without gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                dev = self.embed.weight.device
                z = torch.randn(len(y), self.z_dim, generator=generator, device=dev)
                return self(z, y.to(dev))
        finally:
            self.train(was_training)


class Discriminator(nn.Module):
    """D(x (B, channels, size, size), y (B,)) -> logits (B,): high means "real, of class y".

    Strided convolutions (kernel 4, stride 2, padding 1) halve the side down to 2x2, giving the
    features phi(x); the logit is w . phi(x) + b + embed(y) . phi(x) (projection conditioning).
    """

    def __init__(
        self,
        num_classes: int = 10,
        size: int = 8,
        channels: int = 1,
        width: int = 32,
        minibatch_std: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = positive_int("num_classes", num_classes)
        self.size = _check_size(size)
        self.channels = positive_int("channels", channels)
        positive_int("width", width)
        layers: list[nn.Module] = []
        c_in, c, side = channels, width, size
        while side > 2:  # (B, c_in, s, s) -> (B, c, s / 2, s / 2)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, c, side = c, 2 * c, side // 2
        self.minibatch_std = minibatch_std
        self.features = nn.Sequential(*layers)  # (B, c_in, 2, 2)
        n = (c_in + minibatch_std) * 4
        self.psi = nn.Linear(n, 1)
        self.embed = nn.Embedding(num_classes, n)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (self.channels, self.size, self.size)
        if x.ndim != 4 or x.shape[1:] != shape:
            raise ValueError(
                f"expected images of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        _check_labels(y, x.shape[0], self.num_classes)
        h = self.features(x)  # (B, C, 2, 2)
        if self.minibatch_std:  # how much the batch varies, as one more channel
            s = h.std(dim=0, correction=0).mean() if len(h) > 1 else h.new_zeros(())
            h = torch.cat([h, s.expand(len(h), 1, *h.shape[2:])], dim=1)  # (B, C + 1, 2, 2)
        phi = h.flatten(1)  # (B, F)
        return self.psi(phi).squeeze(1) + (self.embed(y) * phi).sum(1)  # (B,)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], averaged: binary cross-entropy, real 1 and fake 0."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """The generator's loss on D's logits for its fakes.

    Non-saturating (default): -log D(G(z)) = BCE(fake, 1). Saturating: log(1 - D(G(z))), the
    minimax objective itself, whose gradient vanishes when D confidently rejects the fakes.
    """
    if saturating:
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class GANStep:
    """The two losses of one alternating step, as floats."""

    d_loss: float
    g_loss: float


def gan_step(
    G: Generator,
    D: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x_real: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator | None = None,
) -> GANStep:
    """One round of the game: a step of D on real (1) and fake (0) images, then one of G.

    D's step sees the fakes detached (G is not updated); G's step back-propagates through D,
    whose parameters are frozen (``requires_grad_(False)``) so that only G moves.
    """
    B = x_real.shape[0]
    z = torch.randn(B, G.z_dim, generator=generator, device=x_real.device)
    x_fake = G(z, y)  # (B, C, H, W)

    # 1. discriminator: real -> 1, fake -> 0; the fakes are constants here
    d_loss = discriminator_loss(D(x_real, y), D(x_fake.detach(), y))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # 2. generator: make D say "real" for the fakes; D is frozen
    D.requires_grad_(False)
    try:
        g_loss = generator_loss(D(x_fake, y))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return GANStep(d_loss.item(), g_loss.item())
