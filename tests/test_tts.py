"""The digit text-to-speech: templates, the frame regression, Griffin-Lim, words, errors."""

from __future__ import annotations

import math

import pytest
import torch

from mmcourse.nn import DigitTTS, mel_templates, mel_to_waveform
from mmcourse.nn.tts import time_positions

WORDS = ("zero", "one", "two")


def test_templates_average_time_normalized_clips() -> None:
    a = torch.arange(12.0).reshape(1, 2, 6)  # a ramp over 6 frames
    b = torch.zeros(1, 2, 9)
    b[0, :, :3] = torch.arange(12.0).reshape(2, 6)[:, ::2]  # the same ramp at half the frames
    feats = torch.cat([torch.nn.functional.pad(a, (0, 3)), b])  # (2, 2, 9)
    t = mel_templates(feats, torch.tensor([6, 3]), torch.tensor([0, 0]), n_classes=1, size=6)
    assert t.shape == (1, 2, 6)
    fixed_b = torch.nn.functional.interpolate(b[:, :, :3], size=6, mode="linear", align_corners=True)
    torch.testing.assert_close(t[0], (a[0] + fixed_b[0]) / 2)
    with pytest.raises(ValueError, match="at least one clip"):
        mel_templates(feats, torch.tensor([6, 3]), torch.tensor([1, 1]), n_classes=2)


def test_time_positions() -> None:
    torch.testing.assert_close(time_positions(5), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert time_positions(1).tolist() == [0.0]
    with pytest.raises(ValueError, match="n_frames"):
        time_positions(0)


def test_mse_training_learns_the_conditional_mean() -> None:
    # two clips of one digit, constant at +10 dB and -10 dB: the MSE optimum is 0 dB everywhere
    torch.manual_seed(0)
    tts = DigitTTS(n_mels=3, n_digits=1, width=16)
    tau = time_positions(8).expand(64, 8)  # the same inputs for both targets
    digits = torch.zeros(64, dtype=torch.long)
    target = torch.where(torch.arange(64) % 2 == 0, 10.0, -10.0)[:, None, None].expand(64, 3, 8)
    opt = torch.optim.Adam(tts.parameters(), lr=1e-2)
    for _ in range(150):
        loss = (tts(digits, tau) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tts(digits[:2], tau[:2])
    assert out.abs().max().item() < 0.5  # neither +10 nor -10: their mean
    assert loss.item() == pytest.approx(100.0, rel=0.01)  # what is left: the variance


def test_statistics_synthesis_and_words() -> None:
    torch.manual_seed(0)
    tts = DigitTTS(n_mels=4, n_digits=3, n_voices=2, width=8, words=WORDS)
    feats = torch.randn(6, 4, 20) * 5 - 30
    lengths = torch.tensor([10, 12, 14, 8, 20, 20])
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    tts.set_statistics(feats, lengths, labels)
    assert tts.durations.tolist() == [12, 8, 20]
    mel, n = tts.synthesize(["two", "zero", 1])
    assert n.tolist() == [20, 12, 8] and mel.shape == (3, 4, 20)
    assert bool((mel[1, :, 12:] == mel.min()).all())  # padded with the floor past the end
    voiced, _ = tts.synthesize([0, 0], voices=torch.tensor([0, 1]))
    assert not torch.allclose(voiced[0], voiced[1])
    wave, length = tts.speak(["one"], n_iter=2)
    assert length.tolist() == [(8 - 1) * 64] and wave.shape[1] >= length.item()
    with pytest.raises(ValueError, match="unknown word 'three'"):
        tts.synthesize(["three"])
    with pytest.raises(ValueError, match=r"digits in \[0, 2\]"):
        tts.synthesize([5])
    with pytest.raises(ValueError, match="no voices"):
        DigitTTS(n_mels=4, n_digits=3)(torch.tensor([0]), torch.zeros(1, 3), torch.tensor([0]))


def test_griffin_lim_gives_back_a_tone() -> None:
    torch.manual_seed(0)
    sr, f0 = 8000, 1000.0
    t = torch.arange(4000) / sr
    tone = 0.3 * torch.sin(2 * math.pi * f0 * t)
    tts = DigitTTS(n_mels=40)
    feats, _ = tts.front_end(tone[None])
    wave = mel_to_waveform(feats[0], n_iter=8)  # (L,)
    spectrum = torch.fft.rfft(wave).abs()
    peak_hz = spectrum.argmax().item() * sr / len(wave)
    assert abs(peak_hz - f0) < 60  # one mel band wide at 1 kHz
    assert wave.abs().max().item() == pytest.approx(0.5)


def test_bad_arguments_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_mels"):
        DigitTTS(n_mels=0)
    with pytest.raises(ValueError, match="3 words"):
        DigitTTS(n_digits=3, words=("a", "b"))
    with pytest.raises(ValueError, match="n_iter"):
        mel_to_waveform(torch.zeros(4, 5), n_iter=0)
    with pytest.raises(ValueError, match=r"frame lengths in \[2, 5\]"):
        mel_templates(torch.zeros(1, 2, 5), torch.tensor([6]), torch.tensor([0]), 1)
