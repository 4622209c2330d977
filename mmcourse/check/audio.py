"""Checkers for the audio-features chapter: windows, the Slaney mel scale, noise at an SNR."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcourse.check.comparison import compare, random_cases
from mmcourse.nn.audio import add_noise as add_noise_reference
from mmcourse.nn.audio import hz_to_mel


def _hann_reference(N: int, periodic: bool) -> torch.Tensor:
    return torch.hann_window(N, periodic=periodic, dtype=torch.float64)


def hann_window(fn: Callable[[int, bool], torch.Tensor]) -> str:
    """The Hann window of length N >= 2, float64, periodic or symmetric (as torch's)."""
    cases = [(N, periodic) for periodic in (True, False) for N in (2, 3, 4, 8, 25, 64, 256, 400)]
    return compare(fn, _hann_reference, cases, name="hann_window", atol=1e-12, rtol=1e-10)


def _slaney_reference(f: torch.Tensor) -> torch.Tensor:
    return hz_to_mel(f, scale="slaney")


def hz_to_mel_slaney(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Slaney mel of a tensor of frequencies in Hz, any shape; values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor]:
        shape = tuple(int(s) for s in torch.randint(1, 6, (2,), generator=gen))
        f = torch.rand(shape, generator=gen, dtype=torch.float64) * 8000.0
        return (f.requires_grad_(),)

    edges = torch.tensor([0.0, 200.0, 999.0, 1000.0, 1001.0, 6400.0], dtype=torch.float64)
    cases = [(edges.requires_grad_(),), *random_cases(make)]
    return compare(
        fn, _slaney_reference, cases, name="hz_to_mel_slaney", atol=1e-9, rtol=1e-9, grad=True
    )


def add_noise(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """x + a * noise (B, L), ``a`` chosen per clip so that the clip's SNR is snr_db decibels."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        B, L = (int(v) for v in torch.randint(1, 6, (2,), generator=gen))
        x = torch.randn(B, 10 * L, generator=gen, dtype=torch.float64)
        x = x * torch.rand(B, 1, generator=gen, dtype=torch.float64).add(0.1)  # varied loudness
        noise = torch.randn(B, 10 * L, generator=gen, dtype=torch.float64) * 3
        snr_db = float(torch.empty(1).uniform_(-10, 30, generator=gen))
        return x.requires_grad_(), noise, snr_db

    return compare(
        fn,
        add_noise_reference,
        random_cases(make),
        name="add_noise",
        atol=1e-9,
        rtol=1e-7,
        grad=True,
    )
