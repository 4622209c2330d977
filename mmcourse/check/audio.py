"""Checkers for the audio-features chapter: the inverse STFT by overlap-add, the Slaney mel
scale, and the frequency response of a filter (the DFT of its impulse response)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcourse.check.comparison import Passed, compare, random_cases
from mmcourse.check.hints import compare_with_hints
from mmcourse.nn.audio import hz_to_mel

F64 = torch.float64


# --- the inverse STFT by overlap-add ---------------------------------------------------------


def istft_reference(S: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
                    length: int) -> torch.Tensor:
    """(B, n_fft // 2 + 1, T) complex -> (B, length): ``torch.istft`` with centred frames."""
    return torch.istft(S, n_fft, hop, window=window, center=True, length=length)


def _overlap_add(S: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int,
                 envelope_power: int | None = 2, trim: bool = True) -> torch.Tensor:
    """Overlap-add of the windowed inverse DFTs, divided by the window envelope Σ_t w^p(n - tH)."""
    frames = torch.fft.irfft(S.transpose(1, 2), n=n_fft) * window  # (B, T, n_fft)
    B, T, _ = frames.shape
    total = n_fft + hop * (T - 1)
    y = torch.zeros(B, total, dtype=frames.dtype)
    env = torch.zeros(total, dtype=frames.dtype)
    for t in range(T):
        y[:, t * hop : t * hop + n_fft] += frames[:, t]
        if envelope_power:
            env[t * hop : t * hop + n_fft] += window**envelope_power
    if envelope_power:
        y = y / env.clamp_min(1e-11)
    start = n_fft // 2 if trim else 0
    return y[:, start : start + length]


def istft(fn: Callable[..., torch.Tensor]) -> Passed:
    """``fn(S, n_fft, hop, window, length) -> (B, length)``, equal to ``torch.istft``."""

    def make(gen: torch.Generator) -> tuple:
        n_fft = [16, 32, 64][int(torch.randint(0, 3, (), generator=gen))]
        hop = n_fft // [2, 4][int(torch.randint(0, 2, (), generator=gen))]
        kind = int(torch.randint(0, 2, (), generator=gen))
        window = (torch.hann_window if kind == 0 else torch.hamming_window)(n_fft, dtype=F64)
        B = int(torch.randint(1, 4, (), generator=gen))
        length = n_fft + int(torch.randint(0, 5 * n_fft, (), generator=gen))
        x = torch.randn(B, length, generator=gen, dtype=F64)
        S = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
        return S, n_fft, hop, window, length

    variants = {
        "the overlap-added frames are not divided by the window envelope "
        "Σ_t w²(n - tH), so every sample is scaled by how many windows cover it":
            lambda *a: _overlap_add(*a, envelope_power=None),
        "the envelope sums the window, Σ_t w(n - tH); the frames were windowed twice (once "
        "in the STFT, once before adding), so divide by Σ_t w²(n - tH)":
            lambda *a: _overlap_add(*a, envelope_power=1),
        "the centre padding is still there: the STFT padded n_fft // 2 samples in front, "
        "so the signal starts at sample n_fft // 2 of the overlap-add":
            lambda *a: _overlap_add(*a, trim=False),
    }
    return compare_with_hints(fn, istft_reference, random_cases(make, n=20), variants, "istft",
                              atol=1e-9, rtol=1e-7)


# --- the Slaney mel scale ------------------------------------------------------------------------


def _slaney_reference(f: torch.Tensor) -> torch.Tensor:
    return hz_to_mel(f, scale="slaney")


def hz_to_mel_slaney(fn: Callable[[torch.Tensor], torch.Tensor]) -> Passed:
    """Slaney mel of a tensor of frequencies in Hz, any shape; values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor]:
        shape = tuple(int(s) for s in torch.randint(1, 6, (2,), generator=gen))
        f = torch.rand(shape, generator=gen, dtype=F64) * 8000.0
        return (f.requires_grad_(),)

    edges = torch.tensor([0.0, 200.0, 999.0, 1000.0, 1001.0, 6400.0], dtype=F64)
    cases = [(edges.requires_grad_(),), *random_cases(make)]
    return compare(
        fn, _slaney_reference, cases, name="hz_to_mel_slaney", atol=1e-9, rtol=1e-9, grad=True
    )


# --- the frequency response of an FIR filter ---------------------------------------------------


def fir_response_db_reference(b: torch.Tensor, n_fft: int) -> torch.Tensor:
    """20 log10 |H(f_k)| at the n_fft // 2 + 1 bin frequencies f_k = k f_s / n_fft, with
    H(f) = Σ_n b[n] exp(-2πi f n / f_s), the DFT of the impulse response ``b`` (taps,)."""
    H = torch.fft.rfft(b, n=n_fft)  # (n_fft // 2 + 1,) complex
    return 20.0 * torch.log10(H.abs())


def fir_response_db(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Passed:
    """``fn(b, n_fft) -> (n_fft // 2 + 1,)`` gains in dB; values and gradients."""

    def make(gen: torch.Generator) -> tuple[torch.Tensor, int]:
        n_fft = [8, 16, 64, 256][int(torch.randint(0, 4, (), generator=gen))]
        taps = int(torch.randint(1, min(n_fft, 12) + 1, (), generator=gen))
        b = torch.randn(taps, generator=gen, dtype=F64)
        b[0] = b[0].sign() * (b.abs().sum() + 0.5)  # a dominant first tap: no zero on the grid
        return b.requires_grad_(), n_fft

    alpha = 0.97
    cases = [(torch.tensor([1.0, -alpha], dtype=F64).requires_grad_(), 256), *random_cases(make)]
    variants = {
        "10 log10 is for powers; |H| is an amplitude, so its decibels are 20 log10 |H|":
            lambda b, n: 10.0 * torch.log10(torch.fft.rfft(b, n=n).abs()),
    }
    return compare_with_hints(fn, fir_response_db_reference, cases, variants, "fir_response_db",
                              grad=True, atol=1e-8, rtol=1e-7)
