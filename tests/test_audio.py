"""mmcourse.nn.audio: the front end against a from-scratch MFCC and torchaudio, the encoder,
mel/Hz conversions and noise at a given SNR."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from mmcourse.nn import AudioEncoder, AudioFrontEnd
from mmcourse.nn.audio import add_noise, hz_to_mel, mel_to_hz, snr_db

SR, N_FFT, HOP, N_MELS, N_MFCC = 8000, 256, 128, 32, 13


# ---------------------------------------------------------------- a from-scratch reference
def reference_mfcc(
    x: torch.Tensor,
    n_mfcc: int | None = N_MFCC,
    sr: int = SR,
    n_fft: int = N_FFT,
    hop: int = HOP,
    n_mels: int = N_MELS,
    top_db: float = 80.0,
) -> torch.Tensor:
    """One clip (L,) float64 -> (n_mfcc or n_mels, T): every step written out by hand."""
    p = n_fft // 2
    xp = torch.cat([x[1 : p + 1].flip(0), x, x[-p - 1 : -1].flip(0)])  # reflect padding
    frames = xp.unfold(0, n_fft, hop)  # (T, n_fft)
    n = torch.arange(n_fft, dtype=x.dtype)
    w = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)  # periodic Hann
    k = torch.arange(n_fft // 2 + 1, dtype=x.dtype)[:, None]  # (K, 1)
    angle = 2 * math.pi * k * n / n_fft  # (K, n_fft)
    re, im = (frames * w) @ torch.cos(angle).T, -(frames * w) @ torch.sin(angle).T  # (T, K)
    power = re**2 + im**2  # (T, K)
    mel = lambda f: 2595 * torch.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    f_pts = hz(torch.linspace(0, float(mel(torch.tensor(sr / 2.0))), n_mels + 2, dtype=x.dtype))
    freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1, dtype=x.dtype)  # (K,)
    lo, mid, hi = f_pts[:-2], f_pts[1:-1], f_pts[2:]  # (M,)
    rise = (freqs[:, None] - lo) / (mid - lo)
    fall = (hi - freqs[:, None]) / (hi - mid)
    fb = torch.minimum(rise, fall).clamp_min(0)  # (K, M) triangles
    db = 10 * torch.log10((power @ fb).clamp_min(1e-10)).T  # (M, T)
    db = torch.maximum(db, db.max() - top_db)
    if n_mfcc is None:
        return db
    m = torch.arange(n_mels, dtype=x.dtype)
    q = torch.arange(n_mfcc, dtype=x.dtype)[:, None]
    dct = torch.cos(math.pi / n_mels * (m + 0.5) * q) * math.sqrt(2 / n_mels)  # (n_mfcc, M)
    dct[0] /= math.sqrt(2)
    return dct @ db  # (n_mfcc, T)


def _clips(B: int = 3, L: int = 4000, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(L, dtype=dtype) / SR
    f0 = 200 + 600 * torch.rand(B, 1, generator=gen, dtype=dtype)
    x = torch.sin(2 * math.pi * f0 * t) * torch.hann_window(L, dtype=dtype)  # tones
    x = x + 0.05 * torch.randn(B, L, generator=gen, dtype=dtype)
    lengths = torch.tensor([L, 3 * L // 4 + 1, L // 3])[:B]
    return x * (torch.arange(L) < lengths[:, None]), lengths  # zero-padded like collate


# ---------------------------------------------------------------- front end
@pytest.mark.parametrize("n_mfcc", [N_MFCC, None])
def test_front_end_equals_scratch_reference(n_mfcc):
    # float64 throughout except torchaudio's filter bank, built in float32: its small weights
    # near a triangle's foot carry relative errors up to ~1e-4, hence 1e-3 dB (values: +-100 dB)
    fe = AudioFrontEnd(n_mfcc=n_mfcc, normalize=False).double()
    x, lengths = _clips()
    feats, n_frames = fe(x, lengths)
    for b in range(len(x)):
        ref = reference_mfcc(x[b, : lengths[b]], n_mfcc)
        torch.testing.assert_close(feats[b, :, : n_frames[b]], ref, atol=1e-3, rtol=0)


def test_front_end_equals_torchaudio_mfcc_float32():
    fe = AudioFrontEnd(n_mfcc=N_MFCC, normalize=False)
    ta = torchaudio.transforms.MFCC(
        SR, n_mfcc=N_MFCC, melkwargs={"n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS}
    )
    x, lengths = _clips(dtype=torch.float32)
    feats, n_frames = fe(x, lengths)
    for b in range(len(x)):
        ref = ta(x[b, : lengths[b]])
        torch.testing.assert_close(feats[b, :, : n_frames[b]], ref, atol=1e-3, rtol=1e-5)


def test_front_end_shapes_and_frame_lengths():
    fe = AudioFrontEnd(n_mels=32, n_mfcc=None)
    x, lengths = _clips(dtype=torch.float32)
    feats, n_frames = fe(x, lengths)
    assert feats.shape == (3, 32, 1 + 4000 // HOP)
    assert n_frames.tolist() == [1 + int(n) // HOP for n in lengths]
    for b in range(3):  # as many frames as torch.stft gives the unpadded clip
        spec = torch.stft(x[b, : lengths[b]], N_FFT, HOP, window=fe.window, return_complex=True)
        assert spec.shape[-1] == n_frames[b]
        assert (feats[b, :, n_frames[b] :] == 0).all()  # zero past the end


def test_padded_batch_equals_each_clip_alone():
    fe = AudioFrontEnd(n_mfcc=N_MFCC).double()
    x, lengths = _clips()
    feats, n_frames = fe(x, lengths)
    for b in range(3):
        alone, n_alone = fe(x[b : b + 1, : lengths[b]])
        assert n_alone.item() == n_frames[b]
        torch.testing.assert_close(feats[b, :, : n_frames[b]], alone[0], atol=1e-10, rtol=1e-10)


def test_normalize_gives_zero_mean_unit_variance_per_clip():
    fe = AudioFrontEnd(n_mfcc=N_MFCC, normalize=True).double()
    x, lengths = _clips()
    feats, n_frames = fe(x, lengths)
    for b in range(3):
        valid = feats[b, :, : n_frames[b]]
        torch.testing.assert_close(valid.mean(-1), torch.zeros(N_MFCC, dtype=torch.float64))
        torch.testing.assert_close(
            valid.var(-1, unbiased=False),
            torch.ones(N_MFCC, dtype=torch.float64),
            atol=1e-3,
            rtol=0,
        )


def test_spec_augment_only_in_training_mode():
    fe = AudioFrontEnd(freq_mask=8, time_mask=10, n_masks=2)
    plain = AudioFrontEnd()
    x, lengths = _clips(dtype=torch.float32)
    fe.eval()
    a, _ = fe(x, lengths)
    torch.testing.assert_close(a, plain(x, lengths)[0])  # eval: no masks, deterministic
    fe.train()
    torch.manual_seed(0)
    b, _ = fe(x, lengths)
    changed = b != a
    assert changed.any(), "training mode should mask some bins"
    assert (b[changed] == 0).all(), "masked bins are set to 0 (the mean after normalization)"
    assert not torch.equal(b, fe(x, lengths)[0]), "masks are random draws"


def test_front_end_stays_float32_under_autocast():
    fe = AudioFrontEnd(n_mfcc=N_MFCC)
    x, lengths = _clips(dtype=torch.float32)
    plain, _ = fe(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = fe(x, lengths)
        y = AudioEncoder(out_dim=8, front_end=fe)(x, lengths)
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, plain)
    assert torch.isfinite(y).all()
    half, _ = fe(x.half(), lengths)  # half-precision waveforms are computed in float32
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, fe(x.half().float(), lengths)[0])


class NoHostReads(TorchDispatchMode):
    """Any read of a tensor's values by the host (``item``, ``bool``, ``int``: a device sync
    on a GPU) raises inside the block."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("a tensor value was read on the host")
        return func(*args, **(kwargs or {}))


def no_host_reads(monkeypatch):
    """NoHostReads, with ``Tensor.tolist`` (which reads memory without dispatch) patched too."""

    def tolist(self):
        raise AssertionError("a tensor was read with tolist()")

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    return NoHostReads()


def test_the_guard_catches_host_reads(monkeypatch):
    lengths = torch.tensor([3, 4])
    for read in (lambda: bool((lengths > 1).all()), lambda: lengths.max().item(),
                 lambda: int(lengths[0]), lambda: lengths.tolist()):
        with no_host_reads(monkeypatch), pytest.raises(AssertionError, match="read"):
            read()


@pytest.mark.parametrize("strided_stem", [False, True])
def test_a_training_step_reads_no_value_on_the_host(monkeypatch, strided_stem):
    """The checks that need the lengths' values (a device sync) are left out of training."""
    torch.manual_seed(0)
    enc = AudioEncoder(out_dim=8, strided_stem=strided_stem).train()
    x, lengths = _clips(dtype=torch.float32)
    feats, frames = enc.front_end(x, lengths)
    with no_host_reads(monkeypatch):
        enc(x, lengths).square().sum().backward()
        enc(feats, frames).square().sum().backward()  # cached features


def test_encoder_compiles_without_graph_breaks():
    import torch._dynamo

    torch.manual_seed(0)
    enc = AudioEncoder(out_dim=8, front_end=AudioFrontEnd(normalize=False), strided_stem=True)
    x, lengths = _clips(dtype=torch.float32)
    feats, frames = enc.front_end(x, lengths)
    for mode in ("train", "eval"):
        getattr(enc, mode)()
        for args in ((x, lengths), (feats, frames)):
            torch._dynamo.reset()
            explained = torch._dynamo.explain(enc)(*args)
            assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()


def test_front_end_bad_input():
    fe = AudioFrontEnd().eval()  # the checks of length values run outside training
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        fe(torch.zeros(4000))
    with pytest.raises(TypeError, match="floating-point"):
        fe(torch.zeros(2, 4000, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"lengths of shape \(2,\)"):
        fe(torch.zeros(2, 4000), torch.tensor([4000]))
    with pytest.raises(ValueError, match=r"lengths in \[1, L = 4000\], got \[4000, 4001\]"):
        fe(torch.zeros(2, 4000), torch.tensor([4000, 4001]))
    with pytest.raises(ValueError, match="lengths in"):
        fe(torch.zeros(2, 4000), torch.tensor([0, 4000]))
    with pytest.raises(TypeError, match="integer lengths"):
        fe(torch.zeros(2, 4000), torch.tensor([4000.0, 10.0]))
    with pytest.raises(ValueError, match="n_fft >= 2, got 255"):
        AudioFrontEnd(n_fft=255)
    with pytest.raises(ValueError, match="n_mfcc"):
        AudioFrontEnd(n_mels=20, n_mfcc=30)


# ---------------------------------------------------------------- encoder
def _encoder(kind: str, out_dim: int) -> AudioEncoder:
    """"cnn", "sequence", or "strided": the CNN whose first block is a stride-2 convolution."""
    if kind == "strided":
        return AudioEncoder(out_dim=out_dim, strided_stem=True)
    return AudioEncoder(out_dim=out_dim, backbone=kind)


@pytest.mark.parametrize("backbone", ["cnn", "sequence", "strided"])
def test_encoder_reads_its_front_ends_features(backbone):
    """enc(x, lengths) == enc(*front_end(x, lengths)): the features may be computed once."""
    torch.manual_seed(0)
    enc = _encoder(backbone, out_dim=8).double().eval()
    x, lengths = _clips()
    feats, frames = enc.front_end(x, lengths)
    torch.testing.assert_close(enc(feats, frames), enc(x, lengths), atol=0, rtol=0)
    torch.testing.assert_close(enc(enc.front_end(x)[0]), enc(x), atol=0, rtol=0)  # every frame
    enc.train()  # the same in training mode (the CNN's BatchNorm sees the same input)
    torch.manual_seed(1)
    a = enc(feats, frames)
    torch.manual_seed(1)
    torch.testing.assert_close(a, enc(x, lengths), atol=0, rtol=0)


def test_encoder_feature_input_is_checked():
    enc = AudioEncoder(out_dim=8).eval()
    with pytest.raises(ValueError, match=r"features of shape \(B, 32, T\), got \(2, 13, 40\)"):
        enc(torch.zeros(2, 13, 40))
    with pytest.raises(ValueError, match=r"lengths in \[1, T = 40\], got \[40, 41\]"):
        enc(torch.zeros(2, 32, 40), torch.tensor([40, 41]))
    with pytest.raises(ValueError, match=r"lengths of shape \(2,\)"):
        enc(torch.zeros(2, 32, 40), torch.tensor([40]))


def test_strided_stem_halves_the_map_like_the_pool():
    torch.manual_seed(0)
    plain, strided = AudioEncoder(out_dim=8), AudioEncoder(out_dim=8, strided_stem=True)
    assert plain.head[1].in_features == strided.head[1].in_features  # the same (C, F') at the end
    assert strided.blocks[0][0].stride == (2, 2) and plain.blocks[0][0].stride == (1, 1)
    assert all(b[0].stride == (1, 1) for b in strided.blocks[1:])


def test_front_end_says_whether_it_augments():
    assert not AudioFrontEnd().augments
    assert AudioFrontEnd(freq_mask=4).augments and AudioFrontEnd(time_mask=4).augments


@pytest.mark.parametrize("backbone", ["cnn", "sequence", "strided"])
def test_encoder_shapes_and_gradients(backbone):
    torch.manual_seed(0)
    enc = _encoder(backbone, out_dim=24)
    x, lengths = _clips(dtype=torch.float32)
    y = enc(x, lengths)
    assert y.shape == (3, 24)
    y.square().sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert enc(x[:, :40]).shape == (3, 24)  # a clip of one frame still works


@pytest.mark.parametrize("backbone", ["cnn", "sequence", "strided"])
def test_encoder_ignores_padding_in_eval_mode(backbone):
    torch.manual_seed(0)
    enc = _encoder(backbone, out_dim=16).double().eval()
    x, lengths = _clips()
    y = enc(x, lengths)
    for b in range(3):
        alone = enc(x[b : b + 1, : lengths[b]])[0]
        torch.testing.assert_close(y[b], alone, atol=1e-9, rtol=1e-9)
    x_noisy_pad = x + 5 * (torch.arange(x.shape[1]) >= lengths[:, None])  # garbage padding
    torch.testing.assert_close(enc(x_noisy_pad, lengths), y, atol=1e-9, rtol=1e-9)


def test_encoder_learns_to_separate_two_tones():
    torch.manual_seed(0)
    t = torch.arange(1600) / SR
    f0 = torch.cat([torch.full((12,), 300.0), torch.full((12,), 1500.0)])[:, None]
    x = torch.sin(2 * math.pi * f0 * t + torch.rand(24, 1) * 6) + 0.3 * torch.randn(24, 1600)
    y = torch.cat([torch.zeros(12), torch.ones(12)]).long()
    model = torch.nn.Sequential(AudioEncoder(out_dim=8, channels=(8, 16)), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()  # BatchNorm's running statistics must have followed too
    assert (model(x).argmax(-1) == y).all()


def test_encoder_bad_input():
    with pytest.raises(ValueError, match="out_dim"):
        AudioEncoder(out_dim=0)
    with pytest.raises(ValueError, match="backbone"):
        AudioEncoder(backbone="rnn")
    with pytest.raises(TypeError, match="AudioFrontEnd"):
        AudioEncoder(front_end=torch.nn.Identity())
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        AudioEncoder()(torch.zeros(1, 1, 4000))


# ---------------------------------------------------------------- mel scale and SNR
@settings(max_examples=50, deadline=None)
@given(f=st.floats(0.0, 20000.0), scale=st.sampled_from(["htk", "slaney"]))
def test_mel_hz_round_trip(f, scale):
    f_t = torch.tensor(f, dtype=torch.float64)
    assert mel_to_hz(hz_to_mel(f_t, scale), scale).item() == pytest.approx(f, abs=1e-7)


@settings(max_examples=50, deadline=None)
@given(
    f1=st.floats(0.0, 20000.0), df=st.floats(1e-3, 5000.0), scale=st.sampled_from(["htk", "slaney"])
)
def test_mel_scale_is_increasing(f1, df, scale):
    m = hz_to_mel(torch.tensor([f1, f1 + df], dtype=torch.float64), scale)
    assert m[1] > m[0]


def test_mel_scale_anchor_points():
    htk = hz_to_mel(torch.tensor([0.0, 700.0, 1000.0], dtype=torch.float64))
    torch.testing.assert_close(
        htk,
        torch.tensor([0.0, 2595 * math.log10(2), 999.9856], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )
    slaney = hz_to_mel(torch.tensor([0.0, 500.0, 1000.0, 6400.0], dtype=torch.float64), "slaney")
    torch.testing.assert_close(slaney, torch.tensor([0.0, 7.5, 15.0, 42.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="htk"):
        hz_to_mel(torch.tensor(1.0), "bark")


def test_mel_scale_matches_torchaudio_filter_bank_edges():
    # the filter bank's triangles peak at mel_to_hz of evenly spaced mels
    for scale in ("htk", "slaney"):
        fb = torchaudio.functional.melscale_fbanks(4001, 0.0, 4000.0, 10, SR, mel_scale=scale)
        peaks = fb.argmax(0).double()  # 1 Hz per bin
        mels = torch.linspace(0, float(hz_to_mel(torch.tensor(4000.0), scale)), 12)[1:-1]
        torch.testing.assert_close(peaks, mel_to_hz(mels.double(), scale).round(), atol=1.0, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    snr=st.floats(-20.0, 40.0),
    seed=st.integers(0, 2**16),
    gain=st.floats(1e-3, 1e3),
)
def test_add_noise_reaches_the_asked_snr(snr, seed, gain):
    gen = torch.Generator().manual_seed(seed)
    x = gain * torch.randn(3, 800, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 800, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([800, 500, 37])
    x = x * (torch.arange(800) < lengths[:, None])
    y = add_noise(x, noise, snr, lengths)
    for b in range(3):
        n = lengths[b]
        assert snr_db(x[b, :n], y[b, :n] - x[b, :n]).item() == pytest.approx(snr, abs=1e-6)
        assert (y[b, n:] == 0).all()  # nothing added past the clip's end
    # scaling the clean signal scales the noisy one: SNR is relative
    torch.testing.assert_close(add_noise(2 * x, noise, snr, lengths), 2 * y)


def test_add_noise_per_clip_snr_and_errors():
    x = torch.randn(2, 100, dtype=torch.float64)
    noise = torch.randn(2, 100, dtype=torch.float64)
    y = add_noise(x, noise, torch.tensor([0.0, 20.0], dtype=torch.float64))
    torch.testing.assert_close(snr_db(x, y - x), torch.tensor([0.0, 20.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="noise of shape"):
        add_noise(x, noise[:, :50], 10.0)
    with pytest.raises(ValueError, match="one shape"):
        snr_db(x, noise[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_front_end_and_encoder_on_cuda_match_cpu():
    x, lengths = _clips(dtype=torch.float32)
    fe = AudioFrontEnd(n_mfcc=N_MFCC)
    cpu_feats, cpu_frames = fe(x, lengths)
    gpu_feats, gpu_frames = fe.cuda()(x.cuda(), lengths.cuda())
    assert gpu_frames.device.type == "cuda"
    torch.testing.assert_close(gpu_frames.cpu(), cpu_frames)
    torch.testing.assert_close(gpu_feats.cpu(), cpu_feats, atol=1e-3, rtol=1e-4)
    torch.manual_seed(0)
    enc = AudioEncoder(out_dim=16).eval()
    y_cpu = enc(x, lengths)
    y_gpu = enc.cuda()(x.cuda(), lengths.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-3, rtol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # the trainer's mixed precision
        y_amp = enc(x.cuda(), lengths.cuda())
    assert y_amp.shape == (3, 16) and torch.isfinite(y_amp).all()


def test_summarize_frames_uses_only_each_clips_own_frames():
    from mmcourse.nn.audio import summarize_frames

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 4, 10, generator=g, dtype=torch.float64)
    lengths = torch.tensor([10, 6, 2])
    out = summarize_frames(feats, lengths, frames=5)
    assert out.shape == (3, 4 * 5 + 8)
    for b, t in enumerate(lengths.tolist()):
        alone = summarize_frames(feats[b : b + 1, :, :t], torch.tensor([t]), frames=5)
        torch.testing.assert_close(out[b : b + 1], alone)  # padding never leaks in
        own = feats[b, :, :t]
        torch.testing.assert_close(out[b, 20:24], own.mean(1))
        torch.testing.assert_close(out[b, 24:], own.std(1))
        torch.testing.assert_close(out[b, :20].view(4, 5)[:, [0, -1]], own[:, [0, -1]])  # ends kept
    with pytest.raises(ValueError, match=r"expected lengths \(B,\)"):
        summarize_frames(feats, torch.tensor([10, 11, 3]))
    with pytest.raises(ValueError, match=r"\(B, F, T\)"):
        summarize_frames(feats[0], lengths)
