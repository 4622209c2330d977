"""A small conditional denoiser: noisy images, step and class in, predicted noise out.

An MLP on the flattened image with residual blocks. The step ``t`` enters as a sinusoidal
encoding (the table of the attention chapter, one row per step) and the class as a learned
embedding; their sum shifts every block's hidden units. Label ``num_classes`` is the extra
"no class" embedding that classifier-free guidance trains with and samples against.
For the 8x8 course digits it trains in seconds on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mmcourse.nn.positional import sinusoidal_encoding
from mmcourse.nn.validate import positive_int


class ResidualBlock(nn.Module):
    """h + W_2 SiLU(W_1 LN(h) + c): an MLP block whose input is shifted by the condition c."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.act(self.fc1(self.norm(h)) + c))  # (B, width)


class Denoiser(nn.Module):
    """eps_hat = Denoiser(x_t ``(B, *image_shape)``, t (B,) in 0..T-1, y (B,) in 0..num_classes).

    Args:
        image_shape: the shape of one image, e.g. (1, 8, 8).
        T: the number of diffusion steps (rows of the step encoding).
        num_classes: classes; label ``num_classes`` (= ``null_label``) means "no class".
        width: hidden units; depth: residual blocks.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 8, 8),
        T: int = 100,
        num_classes: int = 10,
        width: int = 256,
        depth: int = 3,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(positive_int("image_shape entries", int(s)) for s in image_shape)
        self.T = positive_int("T", T)
        self.num_classes = positive_int("num_classes", num_classes)
        positive_int("width", width)
        positive_int("depth", depth)
        self.null_label = num_classes
        n = math.prod(self.image_shape)
        self.register_buffer("t_table", sinusoidal_encoding(T, width), persistent=False)  # (T, w)
        self.t_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.y_embed = nn.Embedding(num_classes + 1, width)  # the last row: no class
        self.inp = nn.Linear(n, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n))
        nn.init.zeros_(self.out[1].weight)  # start by predicting eps = 0 (loss 1)
        nn.init.zeros_(self.out[1].bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        B = x.shape[0]
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"expected x of shape (B, {', '.join(map(str, self.image_shape))}), "
                f"got {tuple(x.shape)}"
            )
        if t.shape != (B,) or t.is_floating_point():
            raise ValueError(
                f"expected integer steps t of shape ({B},), got {t.dtype} {tuple(t.shape)}"
            )
        if y is None:
            y = torch.full((B,), self.null_label, device=x.device, dtype=torch.long)
        if y.shape != (B,) or y.is_floating_point():
            raise ValueError(
                f"expected integer labels y of shape ({B},), got {y.dtype} {tuple(y.shape)}"
            )
        if B and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"expected steps t in 0..{self.T - 1}")
        if B and (int(y.min()) < 0 or int(y.max()) > self.null_label):
            raise ValueError(
                f"expected labels y in 0..{self.num_classes - 1}, or {self.null_label} for no class"
            )
        c = self.t_mlp(self.t_table[t]) + self.y_embed(y)  # (B, width)
        h = self.inp(x.flatten(1))  # (B, width)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h).view(B, *self.image_shape)  # (B, *image_shape)
