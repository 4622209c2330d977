"""mu-law companding and quantization: 8 bits that spend their steps where speech lives.

Companding maps a sample x in [-1, 1] to

    y = sign(x) ln(1 + mu |x|) / ln(1 + mu),        mu = Q - 1 (255 for Q = 256 classes)

which stretches quiet samples and squeezes loud ones; y is then quantized uniformly to one of
Q classes, k = floor((y + 1) / 2 * mu + 1/2). Decoding takes the centre of class k,
y_k = 2k / mu - 1, and expands it back: x = sign(y) ((1 + mu)^|y| - 1) / mu. Both match
``torchaudio.functional.mu_law_encoding`` / ``mu_law_decoding``.
"""

from __future__ import annotations

import torch

from mmcourse.nn.validate import positive_int

__all__ = [
    "mu_law_bin_edges",
    "mu_law_compand",
    "mu_law_decode",
    "mu_law_encode",
    "mu_law_expand",
    "quantize_linear",
]


def _check_channels(quantization_channels: int) -> float:
    if (
        isinstance(quantization_channels, bool)
        or not isinstance(quantization_channels, int)
        or quantization_channels < 2
    ):
        raise ValueError(
            f"expected quantization_channels to be an int >= 2, got {quantization_channels!r}"
        )
    return float(quantization_channels - 1)


def _check_samples(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"expected {name} as a floating-point tensor, got {got}")
    if x.numel() and bool((x.abs() > 1).any()):
        raise ValueError(
            f"expected {name} in [-1, 1], got values up to {x.abs().max().item():.3g} "
            "(scale the waveform first)"
        )


def mu_law_compand(x: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """x in [-1, 1] -> y = sign(x) ln(1 + mu|x|) / ln(1 + mu) in [-1, 1], same shape."""
    mu = torch.tensor(_check_channels(quantization_channels), dtype=x.dtype if isinstance(x, torch.Tensor) else None)
    _check_samples(x)
    return torch.sign(x) * torch.log1p(mu * x.abs()) / torch.log1p(mu)


def mu_law_expand(y: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """The inverse of :func:`mu_law_compand`: y in [-1, 1] -> x = sign(y) ((1+mu)^|y| - 1) / mu."""
    mu = torch.tensor(_check_channels(quantization_channels), dtype=y.dtype if isinstance(y, torch.Tensor) else None)
    _check_samples(y, "y")
    return torch.sign(y) * (torch.exp(y.abs() * torch.log1p(mu)) - 1.0) / mu


def mu_law_encode(x: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Samples in [-1, 1] (any shape) -> int64 classes 0..Q-1 (as torchaudio's encoding)."""
    mu = _check_channels(quantization_channels)
    y = mu_law_compand(x, quantization_channels)
    return torch.floor((y + 1) / 2 * mu + 0.5).long()


def mu_law_decode(k: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Classes 0..Q-1 (any shape, int) -> samples in [-1, 1] (float32 unless k is float)."""
    mu = _check_channels(quantization_channels)
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"expected classes as a tensor, got {type(k).__name__}")
    if k.numel() and bool(((k < 0) | (k > mu)).any()):
        raise ValueError(
            f"expected classes in [0, {int(mu)}], got values in "
            f"[{k.min().item()}, {k.max().item()}]"
        )
    y = k.float() if not k.is_floating_point() else k
    return mu_law_expand(2 * y / mu - 1, quantization_channels)


def mu_law_bin_edges(
    quantization_channels: int = 256, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(Q + 1,) amplitudes: class k holds the samples x with edges[k] <= x < edges[k + 1].

    In the companded domain the edges sit halfway between class centres, (2k - 1)/mu - 1,
    clipped to [-1, 1]; expanding them gives the edges in amplitude.
    """
    mu = _check_channels(quantization_channels)
    k = torch.arange(quantization_channels + 1, dtype=dtype)  # (Q + 1,)
    y = ((2 * k - 1) / mu - 1).clamp(-1, 1)
    edges = mu_law_expand(y, quantization_channels)
    edges[0], edges[-1] = -1.0, 1.0  # exactly, not 1 + rounding error
    return edges


def quantize_linear(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform quantization of x in [-1, 1] to 2**bits levels: round(x / step) * step, step = 2 / 2**bits,
    clipped to the representable range [-1, 1 - step]."""
    positive_int("bits", bits)
    _check_samples(x)
    step = 2.0 / 2**bits
    return (torch.round(x / step) * step).clamp(-1.0, 1.0 - step)
