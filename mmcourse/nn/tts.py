"""A small text-to-speech for the ten digit words: word -> log-mel spectrogram -> waveform.

Speech synthesis (TTS) goes from text to sound; recognition (ASR) goes the other way. This one
is the smallest that works on the course data. :class:`DigitTTS` predicts every frame of a
log-mel spectrogram from the digit, an optional voice, and the frame's relative position
tau = t / (T - 1) in the word (a few sines and cosines of tau), with a small MLP trained by
mean squared error. Its output for a digit is therefore the conditional mean of that frame
over the training clips: a smooth, average pronunciation. The length T of a word is the median
frame count of that digit in training. :func:`mel_templates` is the baseline that needs no
training at all: the per-digit mean of time-normalized spectrograms.

:func:`mel_to_waveform` turns a log-mel spectrogram back into sound: undo the decibels, undo
the mel filter bank by least squares (``torchaudio.transforms.InverseMelScale``), and find a
phase with Griffin-Lim (``torchaudio.transforms.GriffinLim``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from mmcourse.nn.audio import AudioFrontEnd
from mmcourse.nn.validate import positive_int

__all__ = ["DigitTTS", "mel_templates", "mel_to_waveform", "time_positions"]


def time_positions(n_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n_frames,) relative positions tau = t / (T - 1) in [0, 1] (0 for a single frame)."""
    positive_int("n_frames", n_frames)
    return torch.linspace(0.0, 1.0, n_frames, device=device) if n_frames > 1 else torch.zeros(
        1, device=device
    )


def _check_feats(feats: torch.Tensor, lengths: torch.Tensor) -> None:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 3:
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise ValueError(f"expected log-mel features of shape (B, n_mels, T), got {got}")
    B, _, T = feats.shape
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (B,):
        raise ValueError(f"expected lengths of shape ({B},), got {getattr(lengths, 'shape', lengths)}")
    if bool(((lengths < 2) | (lengths > T)).any()):
        raise ValueError(f"expected frame lengths in [2, {T}], got {lengths.tolist()}")


def mel_templates(
    feats: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, n_classes: int, size: int = 32
) -> torch.Tensor:
    """Per-class mean of time-normalized spectrograms: (B, n_mels, T) -> (n_classes, n_mels, size).

    Each clip's own ``lengths[b]`` frames are resampled linearly to ``size`` frames first, so
    that the start, middle and end of every word line up before averaging.
    """
    _check_feats(feats, lengths)
    if labels.shape != lengths.shape:
        raise ValueError(f"expected labels of shape {tuple(lengths.shape)}, got {tuple(labels.shape)}")
    if bool(((labels < 0) | (labels >= n_classes)).any()):
        raise ValueError(f"expected labels in [0, {n_classes - 1}]")
    fixed = torch.stack(
        [
            F.interpolate(f[None, :, :t], size=size, mode="linear", align_corners=True)[0]
            for f, t in zip(feats, lengths.tolist(), strict=True)
        ]
    )  # (B, n_mels, size)
    out = torch.zeros(n_classes, feats.shape[1], size, dtype=feats.dtype, device=feats.device)
    counts = torch.bincount(labels, minlength=n_classes).to(feats.dtype)  # (n_classes,)
    if bool((counts == 0).any()):
        raise ValueError(f"every class needs at least one clip; counts {counts.tolist()}")
    out.index_add_(0, labels, fixed)
    return out / counts[:, None, None]


class DigitTTS(nn.Module):
    """(digit, voice, tau) -> one log-mel frame; :meth:`synthesize` makes whole words.

    ``n_voices`` > 0 adds a voice embedding (index ``n_voices`` is "any voice", learned from
    the frames whose voice was hidden during training). ``durations`` (n_digits,) holds the
    frames per word; ``mean``/``std`` scale the targets (set both with :meth:`set_statistics`).
    ``front_end`` computes the spectrograms it learns from (log-mel in dB, not normalized, 80 dB
    below each clip's peak at most); :meth:`speak` inverts them with the same settings.
    """

    def __init__(
        self,
        n_mels: int = 40,
        n_digits: int = 10,
        n_voices: int = 0,
        width: int = 128,
        n_freqs: int = 6,
        words: Sequence[str] | None = None,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop_length: int = 64,
    ) -> None:
        super().__init__()
        for name, value in [("n_mels", n_mels), ("n_digits", n_digits), ("width", width),
                            ("n_freqs", n_freqs)]:
            positive_int(name, value)
        if isinstance(n_voices, bool) or not isinstance(n_voices, int) or n_voices < 0:
            raise ValueError(f"expected n_voices to be an int >= 0, got {n_voices!r}")
        if words is not None and len(words) != n_digits:
            raise ValueError(f"expected {n_digits} words, got {len(words)}")
        self.n_mels, self.n_digits, self.n_voices = n_mels, n_digits, n_voices
        self.words = tuple(words) if words is not None else None
        self.digit = nn.Embedding(n_digits, width)
        self.voice = nn.Embedding(n_voices + 1, width) if n_voices else None
        self.time = nn.Linear(2 * n_freqs, width)
        self.mlp = nn.Sequential(
            nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, n_mels)
        )
        self.front_end = AudioFrontEnd(
            sample_rate, n_fft, hop_length, n_mels, top_db=80.0, normalize=False
        )
        self.register_buffer("freqs", math.pi * torch.arange(1, n_freqs + 1).float())
        self.register_buffer("durations", torch.full((n_digits,), 32, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    @torch.no_grad()
    def set_statistics(self, feats: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> None:
        """Durations (median frames per digit) and per-band mean/std from training clips."""
        _check_feats(feats, lengths)
        for d in range(self.n_digits):
            mine = lengths[labels == d]
            if len(mine) == 0:
                raise ValueError(f"no training clip of digit {d}")
            self.durations[d] = mine.median()
        valid = torch.arange(feats.shape[2], device=feats.device)[None, :] < lengths[:, None]
        frames = feats.transpose(1, 2)[valid]  # (N, n_mels)
        self.mean.copy_(frames.mean(0))
        self.std.copy_(frames.std(0).clamp_min(1e-3))

    def digits_of(self, what: torch.Tensor | Sequence[int | str]) -> torch.Tensor:
        """Digits (B,) from a tensor, or a list of ints or words (``words`` given)."""
        if isinstance(what, torch.Tensor):
            digits = what.long()
        else:
            out = []
            for w in what:
                if isinstance(w, str):
                    if self.words is None or w not in self.words:
                        known = ", ".join(self.words) if self.words else "none (words=None)"
                        raise ValueError(f"unknown word {w!r}; known words: {known}")
                    out.append(self.words.index(w))
                else:
                    out.append(int(w))
            digits = torch.tensor(out, dtype=torch.long)
        if digits.dim() != 1 or bool(((digits < 0) | (digits >= self.n_digits)).any()):
            raise ValueError(f"expected digits in [0, {self.n_digits - 1}] of shape (B,), got {digits.tolist()}")
        return digits.to(self.durations.device)

    def forward(
        self, digits: torch.Tensor, tau: torch.Tensor, voices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """digits (B,), tau (B, T) in [0, 1], voices (B,) or None -> log-mel (B, n_mels, T)."""
        if tau.dim() != 2 or tau.shape[0] != digits.shape[0]:
            raise ValueError(f"expected tau of shape ({digits.shape[0]}, T), got {tuple(tau.shape)}")
        angle = tau[:, :, None] * self.freqs  # (B, T, n_freqs)
        h = self.time(torch.cat([angle.sin(), angle.cos()], dim=-1))  # (B, T, width)
        h = h + self.digit(digits)[:, None, :]
        if self.voice is not None:
            if voices is None:
                voices = torch.full_like(digits, self.n_voices)  # "any voice"
            h = h + self.voice(voices)[:, None, :]
        elif voices is not None:
            raise ValueError("this model has no voices (n_voices=0); pass voices=None")
        y = self.mlp(h) * self.std + self.mean  # (B, T, n_mels) in dB
        return y.transpose(1, 2)  # (B, n_mels, T)

    @torch.no_grad()
    def synthesize(
        self, digits: torch.Tensor | Sequence[int | str], voices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole words: log-mel (B, n_mels, T_max) padded with the floor, and frame counts (B,)."""
        digits = self.digits_of(digits)
        n = self.durations[digits]  # (B,)
        T = int(n.max())
        tau = torch.arange(T, device=n.device)[None, :] / (n[:, None] - 1).clamp_min(1)
        mel = self(digits, tau.clamp(max=1.0), voices)  # (B, n_mels, T)
        past = torch.arange(T, device=n.device)[None, None, :] >= n[:, None, None]
        return mel.masked_fill(past, float(mel.min())), n

    @torch.no_grad()
    def speak(
        self,
        digits: torch.Tensor | Sequence[int | str],
        voices: torch.Tensor | None = None,
        n_iter: int = 16,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Words -> waveforms (B, L_max), zero past each end, and lengths in samples (B,)."""
        mel, n = self.synthesize(digits, voices)  # (B, n_mels, T), (B,)
        fe = self.front_end
        wave = mel_to_waveform(mel, fe.sample_rate, fe.n_fft, fe.hop_length, n_iter)  # (B, L)
        lengths = (n - 1) * fe.hop_length  # (B,)
        keep = torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None]
        return wave * keep, lengths


def mel_to_waveform(
    log_mel: torch.Tensor,
    sample_rate: int = 8000,
    n_fft: int = 256,
    hop_length: int = 64,
    n_iter: int = 16,
    length: int | None = None,
) -> torch.Tensor:
    """Log-mel in dB (power) (..., n_mels, T) -> waveform (..., L), peak-normalized to 0.5.

    dB -> power -> least-squares inverse of the HTK mel filter bank (negative values clipped)
    -> Griffin-Lim phase reconstruction with ``n_iter`` iterations (random initial phase:
    seed torch for a reproducible result).
    """
    if log_mel.dim() < 2:
        raise ValueError(f"expected log-mel of shape (..., n_mels, T), got {tuple(log_mel.shape)}")
    positive_int("n_iter", n_iter)
    n_mels = log_mel.shape[-2]
    power = 10.0 ** (log_mel / 10.0)  # (..., n_mels, T)
    inverse = torchaudio.transforms.InverseMelScale(
        n_fft // 2 + 1, n_mels, sample_rate, mel_scale="htk"
    ).to(log_mel.device)
    spec = inverse(power.float())  # (..., n_freqs, T)
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=n_fft, hop_length=hop_length, power=2.0, n_iter=n_iter, length=length
    ).to(log_mel.device)
    wave = griffin_lim(spec)  # (..., L)
    peak = wave.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
    return 0.5 * wave / peak
