"""Audio plots: the waveform over time, and a (log-power or log-mel) spectrogram."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_wave(wave: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a waveform of shape (L,), got {x.shape}")
    return x


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_waveform(
    wave: torch.Tensor | np.ndarray, sample_rate: int, ax: Any = None, title: str | None = None
) -> Any:
    """Amplitude over time in seconds; returns the axes."""
    x = _as_wave(wave)
    ax = _axes(ax, (6, 1.8))
    ax.plot(np.arange(len(x)) / sample_rate, x, lw=0.6, color="C0")
    ax.set_xlim(0, len(x) / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def spectrogram_db(wave: torch.Tensor | np.ndarray, n_fft: int = 256, hop: int = 80) -> np.ndarray:
    """Power spectrogram in dB, (n_fft // 2 + 1, frames), with a Hann window."""
    x = torch.as_tensor(_as_wave(wave))
    if len(x) < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
    spec = (
        torch.stft(
            x, n_fft, hop, window=torch.hann_window(n_fft, dtype=x.dtype), return_complex=True
        ).abs()
        ** 2
    )
    return (10 * torch.log10(spec + 1e-10)).numpy()


def plot_spectrogram(
    spec: torch.Tensor | np.ndarray | None = None,
    sample_rate: int = 8000,
    hop: int = 80,
    wave: torch.Tensor | np.ndarray | None = None,
    ax: Any = None,
    title: str | None = None,
    ylabel: str | None = None,
    dynamic_range_db: float = 80.0,
) -> Any:
    """Show ``spec`` (bins, frames) as an image with time in seconds on the x axis.

    Pass ``wave`` instead to plot its power spectrogram in dB (the y axis is then in Hz);
    a precomputed ``spec`` (e.g. log-mel bands) is shown with bin indices on the y axis.
    """
    if (spec is None) == (wave is None):
        raise ValueError("expected exactly one of spec (bins, frames) or wave (L,)")
    if wave is not None:
        s, top, ylabel = spectrogram_db(wave, hop=hop), sample_rate / 2, ylabel or "frequency (Hz)"
    else:
        if isinstance(spec, torch.Tensor):
            spec = spec.detach().to("cpu", torch.float64).numpy()
        s = np.asarray(spec, dtype=np.float64)
        if s.ndim != 2:
            raise ValueError(f"expected a spectrogram of shape (bins, frames), got {s.shape}")
        top, ylabel = s.shape[0], ylabel or "bin"
    ax = _axes(ax, (6, 2.2))
    vmax = float(s.max())
    im = ax.imshow(
        s,
        origin="lower",
        aspect="auto",
        cmap="magma",
        interpolation="nearest",  # one block per (bin, frame): honest, and small files
        vmin=vmax - dynamic_range_db,
        vmax=vmax,
        extent=(0, s.shape[1] * hop / sample_rate, 0, top),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.figure.colorbar(
        im, ax=ax, fraction=0.046, pad=0.02, label="dB" if wave is not None else None
    )
    if title:
        ax.set_title(title, fontsize=10)
    return ax
