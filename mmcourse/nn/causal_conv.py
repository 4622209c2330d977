"""Dilated causal convolution, and the queue that lets it run one time step at a time.

A 1-D convolution with kernel size k and dilation d reads the inputs x[t - j d], j = 0..k-1,
when it pads (k - 1) d zeros on the left only:

    y[t] = b + sum_j W[:, :, k-1-j] x[t - j d]            (B, C_out, T) from (B, C_in, T)

so y[t] never sees the future. A stack of such layers sees 1 + sum_l (k_l - 1) d_l past samples
(its receptive field); with k = 2 and dilations 1, 2, 4, ..., 2^(L-1) that is 2^L.

Generating sample by sample, a layer needs only its last (k - 1) d + 1 inputs: :class:`ConvQueue`
keeps them in a ring buffer, and :meth:`CausalConv1d.step` computes y[t] from the k of them
it reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.validate import positive_int

__all__ = ["CausalConv1d", "ConvQueue", "receptive_field"]


def receptive_field(kernel_sizes: int | Sequence[int], dilations: Sequence[int]) -> int:
    """Inputs one output of a stack of causal convolutions sees: 1 + sum_l (k_l - 1) d_l.

    ``kernel_sizes``: one size for every layer, or one per layer.
    """
    dilations = [positive_int("every dilation", d) for d in dilations]
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(dilations)
    kernel_sizes = [positive_int("every kernel size", k) for k in kernel_sizes]
    if len(kernel_sizes) != len(dilations):
        raise ValueError(
            f"expected one kernel size per dilation, got {len(kernel_sizes)} kernel sizes "
            f"and {len(dilations)} dilations"
        )
    return 1 + sum((k - 1) * d for k, d in zip(kernel_sizes, dilations, strict=True))


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` padded (k - 1) d on the left only: (B, C_in, T) -> (B, C_out, T)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        positive_int("kernel_size", kernel_size)
        positive_int("dilation", dilation)
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_pad = (kernel_size - 1) * dilation

    def new_queue(self, batch_size: int) -> ConvQueue:
        """An empty (all-zero) queue of this layer's past inputs, for step-by-step use."""
        return ConvQueue(
            batch_size,
            self.in_channels,
            self.kernel_size[0],
            self.dilation[0],
            device=self.weight.device,
            dtype=self.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected x of shape (B, {self.in_channels}, T), got {tuple(x.shape)}"
            )
        return super().forward(F.pad(x, (self.left_pad, 0)))  # (B, C_out, T)

    def step(self, taps: torch.Tensor) -> torch.Tensor:
        """One output from the k inputs it reads, (B, C_in, k) = x[t-(k-1)d], ..., x[t] -> (B, C_out)."""
        k = self.kernel_size[0]
        if taps.dim() != 3 or taps.shape[1:] != (self.in_channels, k):
            raise ValueError(
                f"expected taps of shape (B, {self.in_channels}, {k}), got {tuple(taps.shape)}"
            )
        # sum over (c, j) of W[o, c, j] taps[b, c, j]: one matrix product
        return F.linear(taps.flatten(1), self.weight.flatten(1), self.bias)  # (B, C_out)


class ConvQueue:
    """The last (k - 1) d + 1 inputs of one causal convolution, per batch item: a ring buffer.

    ``push(x_t)`` stores one step (B, C); ``taps()`` returns the k inputs the convolution reads
    at the newest step, x[t-(k-1)d], ..., x[t] as (B, C, k); ``window()`` all stored steps,
    oldest first. It starts filled with zeros, the same zeros that left padding supplies.
    """

    def __init__(
        self,
        batch_size: int,
        channels: int,
        kernel_size: int = 2,
        dilation: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        positive_int("batch_size", batch_size)
        positive_int("channels", channels)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.dilation = positive_int("dilation", dilation)
        self.size = (kernel_size - 1) * dilation + 1
        self.buffer = torch.zeros(batch_size, channels, self.size, device=device, dtype=dtype)
        self.pos = 0  # where the next step goes, i.e. the oldest stored step

    def push(self, x: torch.Tensor) -> None:
        """Store the newest step (B, C), dropping the oldest."""
        if x.shape != self.buffer.shape[:2]:
            raise ValueError(
                f"expected one step of shape {tuple(self.buffer.shape[:2])}, got {tuple(x.shape)}"
            )
        self.buffer[:, :, self.pos] = x
        self.pos = (self.pos + 1) % self.size

    def taps(self) -> torch.Tensor:
        """(B, C, k): the stored steps t - (k-1) d, ..., t - d, t (t the newest)."""
        idx = [(self.pos + j * self.dilation) % self.size for j in range(self.kernel_size)]
        return self.buffer[:, :, idx]

    def window(self) -> torch.Tensor:
        """(B, C, (k - 1) d + 1), oldest step first, newest last."""
        return torch.roll(self.buffer, -self.pos, dims=2)
