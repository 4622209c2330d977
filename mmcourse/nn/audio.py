"""Audio front end (waveform -> log-mel or MFCC frames) and a small audio encoder.

The front end computes, for a padded batch of waveforms ``(B, L)`` with their true lengths:

    frames  -> Hann window -> |FFT|^2 -> mel filter bank -> 10 log10(.) -> [DCT-II]

with the same settings as ``torchaudio.transforms.MFCC`` (centered frames with reflect
padding, power spectrum, HTK mel scale, decibels clipped ``top_db`` below the maximum,
orthonormal DCT-II). Each clip is padded at its own end, so a clip gives the same features
alone and inside a padded batch. Frames past a clip's end are set to zero.

:class:`AudioEncoder` turns the features into one vector per clip: a small 2-D CNN over the
(mel, time) map, or a :class:`~mmcourse.nn.sequence.SequenceEncoder` over the frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from mmcourse.nn.activation_checkpointing import checkpointed, recomputes
from mmcourse.nn.sequence import SequenceEncoder, length_mask
from mmcourse.nn.validate import positive_int, value_checks_enabled

__all__ = ["AudioFrontEnd", "AudioEncoder", "add_noise", "hz_to_mel", "mel_to_hz", "snr_db"]


def _check_waveform(
    x: torch.Tensor, lengths: torch.Tensor | None, values: bool = True
) -> torch.Tensor:
    """Validate a batch ``(B, L)`` and its lengths; return lengths as int64 ``(B,)``.

    Shapes and dtypes are always checked (no cost). ``values``: also check that every length
    is in [1, L], which reads the lengths on the host (a device sync on a GPU).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected waveforms as a tensor of shape (B, L), got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"expected waveforms of shape (B, L), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected floating-point waveforms, got dtype {x.dtype}")
    B, L = x.shape
    if lengths is None:
        return torch.full((B,), L, dtype=torch.long, device=x.device)
    lengths = _check_lengths(lengths, B, L, values)
    return lengths.to(device=x.device)


def _check_lengths(
    lengths: torch.Tensor, B: int, T: int, values: bool, name: str = "L"
) -> torch.Tensor:
    """``lengths`` as int64 ``(B,)``; with ``values``, each in [1, T] (a host read)."""
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (B,):
        got = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"expected lengths of shape ({B},), got {got}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"expected integer lengths, got dtype {lengths.dtype}")
    lengths = lengths.long()
    if values and bool(((lengths < 1) | (lengths > T)).any()):
        raise ValueError(f"expected lengths in [1, {name} = {T}], got {lengths.tolist()}")
    return lengths


def _check_values(module: nn.Module) -> bool:
    """Whether ``module`` checks input values that need a host read: in eval mode, outside
    compiled code. A training step never waits for the device (nor breaks a compiled graph):
    its lengths come from ``collate``, which measured them, and are checked where a split is
    prepared (``mmcourse.trimodal`` computes each split's features once, in eval mode; ``fit``
    checks each split once and trusts it afterwards, see :func:`mmcourse.nn.validate.trusted_inputs`)."""
    return value_checks_enabled() and not module.training


def time_mean(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis of ``h`` (..., T), counting only the first ``lengths`` steps."""
    keep = length_mask(lengths, h.shape[-1])  # (B, T)
    keep = keep.view(keep.shape[0], *([1] * (h.dim() - 2)), -1).to(h.dtype)  # (B, 1.., T)
    return (h * keep).sum(-1) / keep.sum(-1).clamp_min(1)


def hz_to_mel(f: torch.Tensor, scale: str = "htk") -> torch.Tensor:
    """Frequencies in Hz -> mel. ``"htk"``: 2595 log10(1 + f/700). ``"slaney"``: linear
    (f / (200/3)) below 1 kHz, logarithmic above (27 mel per factor 6.4)."""
    f = torch.as_tensor(f)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    if scale == "slaney":
        log_part = 15.0 + torch.log(f.clamp_min(1000.0) / 1000.0) * (27.0 / math.log(6.4))
        return torch.where(f < 1000.0, f * 3.0 / 200.0, log_part)
    raise ValueError(f"expected scale 'htk' or 'slaney', got {scale!r}")


def mel_to_hz(m: torch.Tensor, scale: str = "htk") -> torch.Tensor:
    """The inverse of :func:`hz_to_mel`."""
    m = torch.as_tensor(m)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if scale == "slaney":
        log_part = 1000.0 * torch.exp((m.clamp_min(15.0) - 15.0) * (math.log(6.4) / 27.0))
        return torch.where(m < 15.0, m * 200.0 / 3.0, log_part)
    raise ValueError(f"expected scale 'htk' or 'slaney', got {scale!r}")


def snr_db(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio 10 log10(P_signal / P_noise) over the last axis, P = mean(x^2)."""
    if signal.shape != noise.shape:
        raise ValueError(
            f"expected signal and noise of one shape, got {tuple(signal.shape)} and "
            f"{tuple(noise.shape)}"
        )
    return 10.0 * torch.log10(signal.square().mean(-1) / noise.square().mean(-1))


def add_noise(
    x: torch.Tensor,
    noise: torch.Tensor,
    snr: float | torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x + a * noise`` (B, L), ``a`` chosen per clip so that its SNR is ``snr`` dB.

    a = sqrt(P_x / (P_noise 10^(snr/10))), powers taken over each clip's first ``lengths``
    samples; nothing is added past a clip's end. ``snr``: a number or a (B,) tensor.
    """
    lengths = _check_waveform(x, lengths)
    if noise.shape != x.shape:
        raise ValueError(
            f"expected noise of shape {tuple(x.shape)} like x, got {tuple(noise.shape)}"
        )
    keep = length_mask(lengths, x.shape[1]).to(x.dtype)  # (B, L)
    n = keep.sum(-1)  # (B,)
    p_x = (x.square() * keep).sum(-1) / n  # (B,)
    p_noise = (noise.square() * keep).sum(-1) / n  # (B,)
    snr = torch.as_tensor(snr, dtype=x.dtype, device=x.device)
    a = torch.sqrt(p_x / (p_noise * 10.0 ** (snr / 10.0)))  # (B,)
    return x + a[:, None] * noise * keep


def summarize_frames(feats: torch.Tensor, lengths: torch.Tensor, frames: int = 16) -> torch.Tensor:
    """A fixed-size summary of each clip's own frames, for models that want one vector per clip.

    feats (B, F, T) with valid frame counts lengths (B,) -> (B, F * frames + 2F): the valid
    frames linearly resampled to ``frames`` steps, then the per-band mean and std over time.
    """
    if feats.dim() != 3:
        raise ValueError(f"expected feats of shape (B, F, T), got {tuple(feats.shape)}")
    if lengths.shape != feats.shape[:1] or int(lengths.min()) < 2 or int(lengths.max()) > feats.shape[2]:
        raise ValueError(
            f"expected lengths (B,) = ({feats.shape[0]},) in [2, {feats.shape[2]}], "
            f"got {tuple(lengths.shape)} with values {lengths.tolist()}"
        )
    if frames < 1:
        raise ValueError(f"expected a positive number of frames, got {frames}")
    out = []
    for f, t in zip(feats, lengths.tolist(), strict=True):
        f = f[:, :t]  # (F, t): this clip's own frames, no padding
        fixed = F.interpolate(f[None], size=frames, mode="linear", align_corners=True)[0]  # (F, K)
        out.append(torch.cat([fixed.flatten(), f.mean(1), f.std(1)]))  # (F * K + 2F,)
    return torch.stack(out)


class AudioFrontEnd(nn.Module):
    """Waveforms ``(B, L)`` -> features ``(B, n_features, T)`` and frame lengths ``(B,)``.

    ``n_mfcc=None`` gives log-mel features in decibels (``n_mels`` of them); an integer gives
    that many MFCCs (DCT-II of the log-mel). ``normalize`` subtracts each clip's mean and
    divides by its standard deviation, per feature, over the clip's own frames. SpecAugment
    (``freq_mask``/``time_mask`` > 0: the largest mask widths; ``n_masks`` of each, drawn per
    clip over the padded length) is applied in training mode only. The defaults suit the 8 kHz
    course audio: 32 ms frames (``n_fft=256``), a 16 ms hop, 32 mel bands.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop_length: int = 128,
        n_mels: int = 32,
        n_mfcc: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: bool = True,
        freq_mask: int = 0,
        time_mask: int = 0,
        n_masks: int = 1,
    ) -> None:
        super().__init__()
        if n_fft < 2 or n_fft % 2:
            raise ValueError(f"expected an even n_fft >= 2, got {n_fft}")
        if not 1 <= hop_length <= n_fft:
            raise ValueError(f"expected 1 <= hop_length <= n_fft = {n_fft}, got {hop_length}")
        if n_mfcc is not None and not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"expected 1 <= n_mfcc <= n_mels = {n_mels}, got {n_mfcc}")
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.n_mels, self.n_mfcc, self.top_db, self.normalize = n_mels, n_mfcc, top_db, normalize
        self.n_features = n_mels if n_mfcc is None else n_mfcc
        f_max = sample_rate / 2 if f_max is None else f_max
        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk"
        )  # (n_freqs, n_mels)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", fb, persistent=False)
        if n_mfcc is not None:
            dct = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")  # (n_mels, n_mfcc)
            self.register_buffer("dct", dct, persistent=False)
        self.masks = nn.ModuleList()
        for _ in range(n_masks):
            if freq_mask > 0:
                self.masks.append(torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True))
            if time_mask > 0:
                self.masks.append(torchaudio.transforms.TimeMasking(time_mask, iid_masks=True))

    @property
    def augments(self) -> bool:
        """Whether training mode draws random masks (SpecAugment); if not, the features of a
        clip are the same in every epoch and may be computed once."""
        return len(self.masks) > 0

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of centered frames of a clip of ``lengths`` samples: 1 + L // hop."""
        return 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")

    def _frames_input(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each clip reflect-padded by n_fft/2 at both of its own ends: (B, L + n_fft)."""
        p = self.n_fft // 2
        L = x.shape[1]
        s = torch.arange(-p, L + p, device=x.device)[None, :]  # (1, L + 2p) source index
        n = lengths[:, None]  # (B, 1)
        s = s.abs()  # reflect at the start
        s = torch.where(s >= n, 2 * (n - 1) - s, s)  # reflect at the clip's end
        s = s.clamp(min=0).minimum(n - 1)  # clips shorter than n_fft/2, and frames past the end
        return x.gather(1, s)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = _check_waveform(x, lengths, values=_check_values(self))
        # features in float32 (or float64) even under autocast: powers overflow float16
        with torch.autocast(x.device.type, enabled=False):
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()
            return self._features(x, lengths)

    def _features(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.window.to(x.dtype)
        xp = self._frames_input(x, lengths)  # (B, L + n_fft)
        spec = torch.stft(
            xp, self.n_fft, self.hop_length, window=window, center=False, return_complex=True
        )  # (B, n_freqs, T)
        power = spec.real.square() + spec.imag.square()  # (B, n_freqs, T)
        mel = torch.einsum("bft,fm->bmt", power, self.fbank.to(x.dtype))  # (B, n_mels, T)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))  # (B, n_mels, T)
        n_frames = self.frame_lengths(lengths)  # (B,)
        T = db.shape[-1]
        valid = length_mask(n_frames, T)  # (B, T)
        if self.top_db is not None:
            peak = db.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2))  # (B,)
            db = torch.maximum(db, (peak - self.top_db)[:, None, None])
        feats = db if self.n_mfcc is None else torch.einsum("bmt,mk->bkt", db, self.dct.to(x.dtype))
        if self.normalize:
            mu = time_mean(feats, n_frames)[..., None]  # (B, F, 1)
            var = time_mean((feats - mu).square(), n_frames)[..., None]  # (B, F, 1)
            feats = (feats - mu) / (var + 1e-5).sqrt()
        feats = feats * valid[:, None, :].to(feats.dtype)  # zero past each clip's end
        if self.training and len(self.masks):
            f = feats[:, None]  # (B, 1, F, T): one mask per clip
            for mask in self.masks:
                f = mask(f)
            feats = f[:, 0]
        return feats, n_frames


class _ConvBlock(nn.Sequential):
    """3x3 convolution (no bias: BatchNorm adds it), BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )


class AudioEncoder(nn.Module):
    """Waveforms ``(B, L)`` (+ lengths) -> one feature vector per clip ``(B, out_dim)``.

    ``backbone="cnn"``: blocks of (3x3 conv, BatchNorm, ReLU, 2x2 max-pool) over the
    (feature, time) map, then the mean and the max over each clip's valid time steps.
    ``strided_stem=True``: the first block halves the map with a stride-2 convolution instead
    of a max-pool, computing a quarter of the positions where the map is largest (the same
    output shape; on a CPU it cuts the encoder's training step by about a third).
    Steps past a clip's end are zeroed after every block, so in eval mode a clip gives the
    same vector alone and inside a padded batch.
    ``backbone="sequence"``: a ``SequenceEncoder`` (``mmcourse.nn.sequence``) over the frames;
    ``sequence_kwargs`` go to it (``hidden_dim`` defaults to ``out_dim``; a linear layer maps
    its output to ``out_dim`` when the widths differ, e.g. when bidirectional).
    ``checkpoint_activations=True``: keep only each CNN block's input (or the frames given to
    the sequence encoder) during training and recompute the activations in the backward pass
    (less memory, one more forward; BatchNorm's running statistics are updated once; see
    :mod:`mmcourse.nn.activation_checkpointing`). An attribute: set it any time.
    """

    def __init__(
        self,
        out_dim: int = 64,
        front_end: AudioFrontEnd | None = None,
        backbone: str = "cnn",
        channels: tuple[int, ...] = (8, 16, 32, 64),
        dropout: float = 0.1,
        strided_stem: bool = False,
        checkpoint_activations: bool = False,
        **sequence_kwargs,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        positive_int("out_dim", out_dim)
        if backbone not in ("cnn", "sequence"):
            raise ValueError(f"expected backbone 'cnn' or 'sequence', got {backbone!r}")
        if front_end is not None and not isinstance(front_end, AudioFrontEnd):
            raise TypeError(f"expected an AudioFrontEnd, got {type(front_end).__name__}")
        self.front_end = front_end if front_end is not None else AudioFrontEnd()
        self.out_dim, self.backbone = out_dim, backbone
        n_feat = self.front_end.n_features
        if backbone == "cnn":
            if not channels or min(channels) < 1:
                raise ValueError(f"expected positive CNN channel counts, got {channels!r}")
            c_in = (1, *channels[:-1])
            self.strides = (2 if strided_stem else 1,) + (1,) * (len(channels) - 1)
            self.blocks = nn.ModuleList(
                _ConvBlock(a, b, s) for a, b, s in zip(c_in, channels, self.strides, strict=True)
            )
            f = n_feat
            for _ in channels:
                f = (f + 1) // 2  # ceil-mode pooling keeps the last odd row
            width = 2 * channels[-1] * f  # mean and max over time of (C, F') maps
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, out_dim))
        else:
            hidden = sequence_kwargs.pop("hidden_dim", out_dim)
            self.body = SequenceEncoder(n_feat, hidden, **sequence_kwargs)
            d = self.body.out_dim
            self.head = nn.Identity() if d == out_dim else nn.Linear(d, out_dim)

    def check_input(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Raise a clear error unless ``x`` is valid input: waveforms ``(B, L)`` with lengths in
        [1, L], or front-end features ``(B, n_features, T)`` with lengths in [1, T]."""
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            self._feature_lengths(x, lengths, values=True)
        else:
            _check_waveform(x, lengths)

    def _feature_lengths(
        self, x: torch.Tensor, lengths: torch.Tensor | None, values: bool
    ) -> torch.Tensor:
        """Check features ``(B, n_features, T)``; their frame counts as int64 ``(B,)``."""
        B, n_feat, T = x.shape
        if n_feat != self.front_end.n_features:
            raise ValueError(
                f"expected waveforms of shape (B, L) or features of shape "
                f"(B, {self.front_end.n_features}, T), got {tuple(x.shape)}"
            )
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        return _check_lengths(lengths, B, T, values, "T").to(x.device)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Waveforms ``(B, L)`` with lengths in samples, or this encoder's front-end features
        ``(B, n_features, T)`` with lengths in frames (e.g. computed once for a whole split by
        :meth:`AudioFrontEnd.forward`: it has no learned parameters) -> ``(B, out_dim)``."""
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            return self.encode(x, self._feature_lengths(x, lengths, _check_values(self)))
        return self.encode(*self.front_end(x, lengths))

    @staticmethod
    def _stage(
        block: nn.Module, stride: int, h: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One CNN block, then each clip zeroed past its end, then 2x2 max-pooling (stride 1):
        (B, C_in, F, T) -> (B, C, ceil(F/2), ceil(T/2)), with the valid steps ``t`` updated."""
        # a stride-2 block reads only zeros past the end (the padding of a clip alone)
        h = block(h)  # (B, C, F, T), or (B, C, ceil(F/2), ceil(T/2)) with stride 2
        if stride == 2:
            t = torch.div(t + 1, 2, rounding_mode="floor")  # ceil(t / 2)
        h = h * length_mask(t, h.shape[-1])[:, None, None, :].to(h.dtype)  # zero past the end
        if stride == 1:
            h = F.max_pool2d(h, 2, ceil_mode=True)  # (B, C, ceil(F/2), ceil(T/2))
            t = torch.div(t + 1, 2, rounding_mode="floor")  # ceil(t / 2)
        return h, t

    def encode(self, feats: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Features ``(B, F, T)`` with valid frame counts ``t`` ``(B,)`` -> ``(B, out_dim)``."""
        recompute = recomputes(self)
        if self.backbone == "sequence":
            frames = feats.transpose(1, 2)  # (B, T, F)
            h = checkpointed(self.body, frames, t) if recompute else self.body(frames, t)
            return self.head(h)  # (B, out_dim)
        h = feats[:, None]  # (B, 1, F, T)
        for block, stride in zip(self.blocks, self.strides, strict=True):
            if recompute:
                h, t = checkpointed(self._stage, block, stride, h, t, module=block)
            else:
                h, t = self._stage(block, stride, h, t)  # (B, C, ceil(F/2), ceil(T/2))
        B, C, Fp, Tp = h.shape
        h = h.reshape(B, C * Fp, Tp)  # (B, C*F', T')
        keep = length_mask(t, Tp)  # (B, T')
        h_max = h.masked_fill(~keep[:, None, :], float("-inf")).amax(-1)  # (B, C*F')
        pooled = torch.cat([time_mean(h, t), h_max], dim=1)  # (B, 2*C*F')
        return self.head(pooled)  # (B, out_dim)
