"""Degradations that make each view of a digit partial: noisy, erased images; noisy audio.

The random draws (noise, positions) are passed in, so that the same draws can be scaled to
any level: changing a knob changes how strong a degradation is, not where it falls.
"""

from __future__ import annotations

import math

import numpy as np


def erase_square(images: np.ndarray, side: int, corners: np.ndarray) -> np.ndarray:
    """Set a ``side`` x ``side`` square of each image to 0 (ink erased).

    images: (N, C, H, W) in [0, 1]; corners: (N, 2) uniform in [0, 1), scaled to the top-left
    corner so that the square lies inside the image.
    """
    n, _, h, w = images.shape
    if not isinstance(side, int | np.integer) or not 0 <= side <= min(h, w):
        raise ValueError(f"expected an occlusion side in 0..{min(h, w)} pixels, got {side!r}")
    if corners.shape != (n, 2):
        raise ValueError(f"expected corners of shape ({n}, 2), got {corners.shape}")
    out = images.copy()
    if side == 0:
        return out
    top = (corners[:, 0] * (h - side + 1)).astype(np.int64)  # (N,)
    left = (corners[:, 1] * (w - side + 1)).astype(np.int64)  # (N,)
    rows = np.arange(h)[None, :, None]  # (1, H, 1)
    cols = np.arange(w)[None, None, :]  # (1, 1, W)
    inside = (
        (rows >= top[:, None, None])
        & (rows < top[:, None, None] + side)
        & (cols >= left[:, None, None])
        & (cols < left[:, None, None] + side)
    )  # (N, H, W)
    out[inside[:, None].repeat(out.shape[1], axis=1)] = 0.0
    return out


def pixel_noise(images: np.ndarray, std: float, z: np.ndarray) -> np.ndarray:
    """images + std * z, clipped to [0, 1]; z standard normal of the same shape."""
    if std < 0:
        raise ValueError(f"expected a non-negative noise std, got {std}")
    if z.shape != images.shape:
        raise ValueError(f"expected noise of shape {images.shape}, got {z.shape}")
    return np.clip(images + std * z, 0.0, 1.0).astype(images.dtype)


def noise_scale(power: np.ndarray | float, snr_db: float) -> np.ndarray | float:
    """The std of white noise that gives a signal of mean power ``power`` the SNR ``snr_db``.

    SNR_dB = 10 log10(P_signal / P_noise)  =>  sigma = sqrt(P_signal / 10^(SNR_dB / 10)).
    """
    return np.sqrt(np.asarray(power) / 10.0 ** (snr_db / 10.0))


def add_noise_segments(
    x: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, snr_db: float | None, z: np.ndarray
) -> np.ndarray:
    """Add white noise at ``snr_db`` to every segment of a flat signal, each by its own power.

    x, z: (sum L_i,); segment i is x[offsets[i] : offsets[i] + lengths[i]] (back to back).
    ``snr_db`` None (or +inf) adds nothing.
    """
    if x.shape != z.shape:
        raise ValueError(f"expected noise of shape {x.shape}, got {z.shape}")
    if snr_db is None or math.isinf(snr_db) and snr_db > 0:
        return x.copy()
    if math.isnan(snr_db):
        raise ValueError("expected snr_db to be a number or None, got nan")
    power = np.add.reduceat(x.astype(np.float64) ** 2, offsets) / lengths  # (N,)
    sigma = noise_scale(power, snr_db).astype(x.dtype)  # (N,)
    return x + z * np.repeat(sigma, lengths)
