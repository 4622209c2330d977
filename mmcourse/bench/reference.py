r"""From-scratch reference versions of the four kernels the benchmark times.

Each is written from elementary tensor operations (matmul, slicing, exp, sums), the way the
chapters derive it, and is tested to equal its PyTorch/torchaudio counterpart in values and
gradients:

- :func:`attention`  ~ ``F.scaled_dot_product_attention``
- :func:`conv2d`     ~ ``F.conv2d`` / ``nn.Conv2d``
- :func:`lstm`       ~ ``nn.LSTM`` (one layer, ``batch_first=True``)
- :func:`mfcc`       ~ ``torchaudio.transforms.MFCC(log_mels=True)``
"""

from __future__ import annotations

import math

import torch


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x - max) / sum exp(x - max): the max shift keeps exp from overflowing."""
    z = x - x.amax(dim=dim, keepdim=True)
    e = z.exp()
    return e / e.sum(dim=dim, keepdim=True)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    r"""softmax(q k^T / \sqrt{d_k}) v; ``mask`` (broadcast to (B, H, T_q, T_k)) True = attend."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"expected q, k, v of shape (B, H, T, d_k), got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T_q, T_k)
    if causal:
        t_q, t_k = scores.shape[-2:]
        keep = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=-1) @ v  # (B, H, T_q, d_v)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    r"""Cross-correlation: Y[b,o,i,j] = b[o] + \sum_{c,u,v} W[o,c,u,v] X[b,c,i s+u,j s+v].

    Built as im2col: one strided slice of the (zero-padded) input per kernel offset (u, v),
    stacked into patches, then a single contraction with the weights.
    """
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f"expected x of shape (B, C, H, W) and weight (C_out, C, k_h, k_w), got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but weight expects {weight.shape[1]}")
    if padding:
        b, c, h, w = x.shape
        padded = x.new_zeros(b, c, h + 2 * padding, w + 2 * padding)
        padded[:, :, padding : padding + h, padding : padding + w] = x
        x = padded
    k_h, k_w = weight.shape[-2:]
    h_out = (x.shape[2] - k_h) // stride + 1
    w_out = (x.shape[3] - k_w) // stride + 1
    patches = torch.stack(
        [
            x[:, :, u : u + stride * (h_out - 1) + 1 : stride, v : v + stride * (w_out - 1) + 1 : stride]
            for u in range(k_h)
            for v in range(k_w)
        ],
        dim=2,
    )  # (B, C, k_h*k_w, H_out, W_out)
    y = torch.einsum("bckij,ock->boij", patches, weight.flatten(2))  # (B, C_out, H_out, W_out)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def lstm(
    x: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    r"""One LSTM layer over x (B, T, D) with PyTorch's weight layout (gates i, f, g, o).

    i, f, o = sigma(.), g = tanh(.) of x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh (split in 4);
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).  Returns (h for every t, (h_T, c_T)).
    """
    if x.ndim != 3:
        raise ValueError(f"expected x of shape (B, T, D), got {tuple(x.shape)}")
    b, t_len, _ = x.shape
    hidden = w_hh.shape[1]
    if w_ih.shape != (4 * hidden, x.shape[2]):
        raise ValueError(
            f"expected w_ih of shape (4*H, D) = {(4 * hidden, x.shape[2])}, got {tuple(w_ih.shape)}"
        )
    if state is None:
        h = x.new_zeros(b, hidden)
        c = x.new_zeros(b, hidden)
    else:
        h, c = state
    x_proj = x @ w_ih.T + b_ih  # (B, T, 4H): the input part of every step at once
    outputs = []
    for t in range(t_len):
        z = x_proj[:, t] + h @ w_hh.T + b_hh  # (B, 4H)
        i, f, g, o = z.chunk(4, dim=1)  # each (B, H)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        outputs.append(h)
    return torch.stack(outputs, dim=1), (h, c)  # (B, T, H)


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: m = 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters, equally spaced on the mel scale, peak 1."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)  # (F,)
    edges = mel_to_hz(torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2,
                                     dtype=torch.float64))  # (M + 2,) in Hz
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (M,) each
    rising = (freqs[:, None] - left) / (centre - left)  # (F, M)
    falling = (right - freqs[:, None]) / (right - centre)  # (F, M)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    r"""(n_mels, n_mfcc) orthonormal DCT-II: D[m, k] = s_k \cos(\pi k (m + 1/2) / M)."""
    m = torch.arange(n_mels, dtype=torch.float64)[:, None]
    k = torch.arange(n_mfcc, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * k * (m + 0.5) / n_mels) * math.sqrt(2.0 / n_mels)
    d[:, 0] /= math.sqrt(2.0)
    return d


def power_spectrogram(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|DFT|^2 of Hann-windowed frames, centred (reflect padding): (B, L) -> (B, n_fft//2+1, T)."""
    pad = n_fft // 2
    x = torch.cat([x[:, 1 : pad + 1].flip(-1), x, x[:, -pad - 1 : -1].flip(-1)], dim=-1)
    frames = x.unfold(-1, n_fft, hop)  # (B, T, n_fft)
    n = torch.arange(n_fft, dtype=torch.float64, device=x.device)
    window = (0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)).to(x.dtype)  # periodic Hann
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=x.device)
    angle = 2 * math.pi * n[:, None] * k[None, :] / n_fft  # (n_fft, F)
    frames = frames * window
    re = frames @ torch.cos(angle).to(x.dtype)  # (B, T, F)
    im = frames @ torch.sin(angle).to(x.dtype)
    return (re**2 + im**2).transpose(1, 2)  # (B, F, T)


def mfcc(
    x: torch.Tensor,
    sample_rate: int,
    n_mfcc: int = 13,
    n_fft: int = 256,
    hop: int = 128,
    n_mels: int = 40,
) -> torch.Tensor:
    """MFCC = DCT-II of the log mel energies: (B, L) -> (B, n_mfcc, T)."""
    if x.ndim != 2:
        raise ValueError(f"expected waveforms of shape (B, L), got {tuple(x.shape)}")
    spec = power_spectrogram(x, n_fft, hop)  # (B, F, T)
    fb = mel_filterbank(n_fft // 2 + 1, sample_rate, n_mels).to(x)  # (F, M)
    log_mel = torch.log(spec.transpose(1, 2) @ fb + 1e-6)  # (B, T, M)
    return (log_mel @ dct_matrix(n_mfcc, n_mels).to(x)).transpose(1, 2)  # (B, n_mfcc, T)
