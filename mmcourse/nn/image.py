"""A small convolutional image encoder: (B, C, H, W) images of any size from 4×4 up to features.

Three 3×3 convolution blocks (the first two followed by 2×2 max pooling) and adaptive average
pooling to a fixed ``grid × grid``, so the 8×8 course digits and 28×28 AV-MNIST images give
feature vectors of the same width. Works with ``channels_last`` models and inputs
(``model.to(memory_format=torch.channels_last)``), the fast layout for cuDNN and oneDNN.

The default normalization is GroupNorm: unlike BatchNorm it has no running statistics, so a
short training run behaves the same in ``train()`` and ``eval()`` mode, every image is
encoded independently of its batch, and DDP needs no synchronized statistics. BatchNorm
(``norm="batch"``) is there for long runs on large batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmcourse.nn.activation_checkpointing import checkpointed, recomputes
from mmcourse.nn.validate import positive_int

NORMS = ("group", "batch", "none")


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "group":
        # up to 8 groups of at least 2 channels: a 1×1 map still has 2 values per group
        return nn.GroupNorm(math.gcd(8, max(c // 2, 1)), c)
    if kind == "batch":
        return nn.BatchNorm2d(c)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """3×3 convolution (same padding) → normalization → ReLU (→ 2×2 max pooling if ``pool``)."""

    def __init__(self, c_in: int, c_out: int, pool: bool, norm: str = "group") -> None:
        layers: list[nn.Module] = [
            # a normalization layer brings its own bias, so the convolution needs none
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=norm == "none"),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))  # (H, W) -> (H // 2, W // 2)
        super().__init__(*layers)


class ImageEncoder(nn.Module):
    """Images (B, in_channels, H, W) → features (B, out_dim).

    Args:
        out_dim: width of the feature vector (a linear projection, no final activation, so
            the features suit a classifier head, a fusion layer or a contrastive loss).
        in_channels: channels of the input images (1 for grey digits).
        width: channels of the first block; the later blocks have ``2 * width``.
        grid: the adaptive pooling output is ``grid × grid`` per channel.
        dropout: dropout before the projection.
        norm: "group" (GroupNorm, the default), "batch" (BatchNorm) or "none".
        checkpoint_activations: keep only each block's input during training and recompute
            its activations in the backward pass (less memory, one more forward per block;
            see :mod:`mmcourse.nn.activation_checkpointing`). An attribute: set it any time.
    """

    min_size = 4  # two 2×2 poolings must leave at least one pixel

    def __init__(
        self,
        out_dim: int = 128,
        in_channels: int = 1,
        width: int = 32,
        grid: int = 2,
        dropout: float = 0.0,
        norm: str = "group",
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        self.out_dim = positive_int("out_dim", out_dim)
        self.in_channels = positive_int("in_channels", in_channels)
        positive_int("width", width)
        positive_int("grid", grid)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.features = nn.Sequential(
            ConvBlock(in_channels, width, pool=True, norm=norm),  # (B, w, H/2, W/2)
            ConvBlock(width, 2 * width, pool=True, norm=norm),  # (B, 2w, H/4, W/4)
            ConvBlock(2 * width, 2 * width, pool=False, norm=norm),  # (B, 2w, H/4, W/4)
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)  # (B, 2w, grid, grid) for any H, W
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * width * grid * grid, out_dim)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a float batch (B, in_channels, H, W), H, W >= 4."""
        expected = f"(B, {self.in_channels}, H, W)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected images as a tensor of shape {expected}, got {type(x)}")
        if not x.is_floating_point():
            raise TypeError(
                f"expected floating-point images, got dtype {x.dtype} "
                "(convert integer pixels with x.float() / 255)"
            )
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            hint = " (add the channel axis with x.unsqueeze(1))" if x.ndim == 3 else ""
            raise ValueError(f"expected images of shape {expected}, got {tuple(x.shape)}{hint}")
        h, w = x.shape[-2:]
        if h < self.min_size or w < self.min_size:
            raise ValueError(
                f"expected images of at least {self.min_size}×{self.min_size} pixels, got {h}×{w}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = x
        for block in self.features:  # (B, 2w, H/4, W/4) after the last
            h = checkpointed(block, h) if recomputes(self) else block(h)
        h = self.pool(h)  # (B, 2w, grid, grid)
        h = h.flatten(1)  # (B, 2w * grid * grid); a copy if h is channels_last
        return self.proj(self.dropout(h))  # (B, out_dim)
