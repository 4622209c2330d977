"""WaveNet: a stack of gated, dilated causal convolutions with a softmax over the next sample.

Each block reads h (B, C, T) and, optionally, a label c (global conditioning):

    z = W * h + V[c]                      (B, 2C, T) causal conv, kernel k, dilation d
    a = tanh(z_f) * sigmoid(z_g)          (B, C, T)  gated activation (z = [z_f; z_g])
    h <- h + W_res a,    skip += W_skip a (1x1 convolutions; skip: (B, S, T))

and the head turns ReLU(skip) into Q logits per time step (1x1, ReLU, 1x1). Samples are
mu-law classes 0..Q-1; the network sees each as its companded value 2k/mu - 1 and predicts
the class of the *next* sample: ``logits[:, :, t]`` is the distribution of ``codes[:, t + 1]``.

Generation feeds each sampled class back in. :meth:`WaveNet.new_cache` and
:meth:`WaveNet.step` keep one :class:`~mmcourse.nn.causal_conv.ConvQueue` per layer (the
inputs that layer's convolution will read again), so a step costs one column per layer
instead of a pass over the whole past; :meth:`WaveNet.generate` with ``cache=False`` is the
reference that recomputes everything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.causal_conv import CausalConv1d, ConvQueue, receptive_field
from mmcourse.nn.sampling import check_temperature, sample
from mmcourse.nn.validate import positive_int

__all__ = ["WaveNet", "WaveNetBlock", "WaveNetCache", "bits_per_sample"]


def bits_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log2-likelihood of ``targets`` (B, T) under ``logits`` (B, Q, T)."""
    if logits.dim() != 3 or targets.shape != (logits.shape[0], logits.shape[2]):
        raise ValueError(
            f"expected logits (B, Q, T) and targets (B, T), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    return F.cross_entropy(logits, targets) / math.log(2)


def _pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to one time step: (B, C_in) -> (B, C_out)."""
    return F.linear(x, conv.weight[:, :, 0], conv.bias)


class WaveNetBlock(nn.Module):
    """Gated dilated causal convolution with residual and skip outputs."""

    def __init__(
        self,
        channels: int,
        skip_channels: int,
        dilation: int,
        kernel_size: int = 2,
        n_labels: int = 0,
    ) -> None:
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)
        self.label = nn.Embedding(n_labels, 2 * channels) if n_labels else None  # V[c]
        self.res = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """tanh(z_f) * sigmoid(z_g), splitting the channel axis (dim 1) in two halves."""
        z_f, z_g = z.chunk(2, dim=1)
        return torch.tanh(z_f) * torch.sigmoid(z_g)

    def forward(
        self, h: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, C, T), labels (B,) -> new h (B, C, T) and skip (B, S, T)."""
        z = self.conv(h)  # (B, 2C, T)
        if self.label is not None:
            z = z + self.label(labels)[:, :, None]  # (B, 2C, 1): the same at every step
        a = self.gate(z)  # (B, C, T)
        return h + self.res(a), self.skip(a)

    def step(
        self, taps: torch.Tensor, label_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: taps (B, C, k) (the newest last) -> new h (B, C) and skip (B, S)."""
        z = self.conv.step(taps)  # (B, 2C)
        if label_bias is not None:
            z = z + label_bias
        a = self.gate(z)  # (B, C)
        return taps[:, :, -1] + _pointwise(self.res, a), _pointwise(self.skip, a)


@dataclass
class WaveNetCache:
    """Per-layer queues of past inputs and the per-block label biases of one generation run."""

    input_queue: ConvQueue
    queues: list[ConvQueue]
    label_biases: list[torch.Tensor | None]


class WaveNet(nn.Module):
    """Mu-law classes (B, T) (+ labels (B,)) -> logits (B, Q, T) over each next class.

    ``dilations``: one block each (default 1, 2, ..., 128: a receptive field of 257 samples,
    32 ms at 8 kHz, counting the input convolution). ``n_labels`` > 0 adds global conditioning
    on a label in 0..n_labels-1.
    """

    def __init__(
        self,
        quantization_channels: int = 256,
        channels: int = 32,
        skip_channels: int = 64,
        dilations: Sequence[int] = tuple(2**i for i in range(8)),
        kernel_size: int = 2,
        n_labels: int = 0,
    ) -> None:
        super().__init__()
        for name, value in [
            ("quantization_channels", quantization_channels),
            ("channels", channels),
            ("skip_channels", skip_channels),
            ("kernel_size", kernel_size),
        ]:
            positive_int(name, value)
        if quantization_channels < 2:
            raise ValueError(f"expected quantization_channels >= 2, got {quantization_channels}")
        if isinstance(n_labels, bool) or not isinstance(n_labels, int) or n_labels < 0:
            raise ValueError(f"expected n_labels to be an int >= 0, got {n_labels!r}")
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("expected at least one dilation")
        self.quantization_channels, self.n_labels = quantization_channels, n_labels
        self.receptive_field = receptive_field(kernel_size, (1, *dilations))
        self.input = CausalConv1d(1, channels, kernel_size, 1)
        self.blocks = nn.ModuleList(
            WaveNetBlock(channels, skip_channels, d, kernel_size, n_labels) for d in dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, quantization_channels, 1),
        )

    @property
    def silence(self) -> int:
        """The class of a zero sample: the first input of every generated clip."""
        return self.quantization_channels // 2

    def _as_input(self, codes: torch.Tensor) -> torch.Tensor:
        """Classes -> companded values 2k/mu - 1, as float in the model's dtype."""
        mu = self.quantization_channels - 1
        return codes.to(self.input.weight.dtype) * (2.0 / mu) - 1.0

    def _check_codes(self, codes: torch.Tensor, dims: int) -> None:
        if not isinstance(codes, torch.Tensor) or codes.dim() != dims or codes.is_floating_point():
            shape = "(B, T)" if dims == 2 else "(B,)"
            got = (
                f"{tuple(codes.shape)}, {codes.dtype}"
                if isinstance(codes, torch.Tensor)
                else type(codes).__name__
            )
            raise ValueError(f"expected integer mu-law classes of shape {shape}, got {got}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.quantization_channels):
            raise ValueError(
                f"expected classes in [0, {self.quantization_channels - 1}], got "
                f"[{codes.min().item()}, {codes.max().item()}]"
            )

    def _check_labels(self, labels: torch.Tensor | None, B: int) -> None:
        if self.n_labels == 0:
            if labels is not None:
                raise ValueError("this WaveNet has no labels (n_labels=0); pass labels=None")
            return
        if not isinstance(labels, torch.Tensor) or labels.shape != (B,) or labels.is_floating_point():
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else labels
            raise ValueError(f"expected integer labels of shape ({B},), got {got}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.n_labels):
            raise ValueError(f"expected labels in [0, {self.n_labels - 1}], got {labels.tolist()}")

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self._check_codes(codes, 2)
        self._check_labels(labels, codes.shape[0])
        h = self.input(self._as_input(codes)[:, None, :])  # (B, C, T)
        skip = 0
        for block in self.blocks:
            h, s = block(h, labels)  # (B, C, T), (B, S, T)
            skip = skip + s
        return self.head(skip)  # (B, Q, T)

    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy (nats) of each next class given the past: codes (B, T) -> scalar."""
        logits = self(codes[:, :-1], labels)  # (B, Q, T - 1)
        return F.cross_entropy(logits, codes[:, 1:])

    # --- generation -------------------------------------------------------------------------

    def new_cache(self, batch_size: int, labels: torch.Tensor | None = None) -> WaveNetCache:
        """Empty queues (zeros, like the left padding) for ``batch_size`` clips."""
        self._check_labels(labels, batch_size)
        return WaveNetCache(
            input_queue=self.input.new_queue(batch_size),
            queues=[block.conv.new_queue(batch_size) for block in self.blocks],
            label_biases=[
                block.label(labels) if block.label is not None else None for block in self.blocks
            ],
        )

    def step(self, codes: torch.Tensor, cache: WaveNetCache) -> torch.Tensor:
        """Feed one class per clip (B,); return the logits of the next one (B, Q)."""
        self._check_codes(codes, 1)
        cache.input_queue.push(self._as_input(codes)[:, None])  # (B, 1)
        h = self.input.step(cache.input_queue.taps())  # (B, C)
        skip = 0
        for block, queue, bias in zip(self.blocks, cache.queues, cache.label_biases, strict=True):
            queue.push(h)
            h, s = block.step(queue.taps(), bias)  # (B, C), (B, S)
            skip = skip + s
        return self.head(skip[:, :, None])[:, :, 0]  # (B, Q)

    @torch.inference_mode()
    def generate(
        self,
        n_samples: int,
        labels: torch.Tensor | None = None,
        *,
        batch_size: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        cache: bool = True,
    ) -> torch.Tensor:
        """Sample ``n_samples`` classes per clip, each from the softmax given all before it.

        Every clip starts from one silent sample. ``labels`` (B,) picks the label of each clip
        (conditioned models); unconditioned models take ``batch_size``. ``cache=False``
        recomputes the whole network over the growing clip at every step: the slow reference.
        Returns (B, n_samples) int64.
        """
        positive_int("n_samples", n_samples)
        check_temperature(temperature)
        if labels is not None:
            B = labels.shape[0] if isinstance(labels, torch.Tensor) and labels.dim() == 1 else -1
        else:
            B = batch_size if batch_size is not None else 1
        if isinstance(B, bool) or not isinstance(B, int) or B < 1:
            raise ValueError(f"expected labels of shape (B,) or a positive batch_size, got {labels!r}")
        self._check_labels(labels, B)
        device = self.input.weight.device
        codes = torch.full((B, n_samples + 1), self.silence, dtype=torch.long, device=device)
        state = self.new_cache(B, labels) if cache else None
        for t in range(n_samples):
            if state is not None:
                logits = self.step(codes[:, t], state)  # (B, Q)
            else:
                logits = self(codes[:, : t + 1], labels)[:, :, -1]  # (B, Q): all over again
            codes[:, t + 1] = sample(logits, temperature=temperature, generator=generator)
        return codes[:, 1:]
