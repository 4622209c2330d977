"""The fixed input features of every split, computed once and kept as tensors.

Chapters that train many small models on the course data need not decode the audio at every
step: each clip's log-mel frames are summarized once into a vector of fixed size, standardized
with the training split's statistics, and kept on the device next to the other inputs::

    from mmcourse.data.features import load_features
    data = load_features(("train", "val", "test"), device=device)
    data["train"]["audio_vec"]       # (N, n_mels * frames + 2 n_mels), standardized
    data["train"]["image"]           # (N, 1, 8, 8); also "tokens", "tokens_len", "label"

The audio summary is ``summarize_frames`` (mmcourse.nn.audio) of the log-mel energies in dB
(``AudioFrontEnd`` with ``normalize=False``): the clip's own frames resampled to ``frames``
steps, then the mean and standard deviation of each band over the clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmcourse.data.spoken_digits import SPLITS, SpokenDigits, load_split
from mmcourse.nn.audio import AudioFrontEnd, summarize_frames

KEPT = ("image", "tokens", "tokens_len", "label")  # the inputs used as they are


@torch.no_grad()
def summarize_split(
    ds: SpokenDigits,
    front_end: AudioFrontEnd,
    frames: int = 16,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """One split as tensors: "audio_vec" (N, F * frames + 2F), not standardized, plus ``KEPT``."""
    whole = ds.tensors(device)
    mel, mel_len = front_end(whole["audio"], whole["audio_len"])  # (N, F, T), (N,)
    return {"audio_vec": summarize_frames(mel, mel_len, frames), **{k: whole[k] for k in KEPT}}


def load_features(
    splits: Sequence[str] = ("train", "test"),
    seed: int = 0,
    device: torch.device | str | None = None,
    *,
    frames: int = 16,
    n_mels: int = 32,
    hop_length: int = 80,
    standardize: bool = True,
    **knobs: Any,
) -> dict[str, dict[str, torch.Tensor]]:
    """split -> {"audio_vec", "image", "tokens", "tokens_len", "label"}, on ``device``.

    ``audio_vec`` is standardized per feature with the mean and std of the *training* split
    (loaded for its statistics even when not asked for), so no test statistic leaks into
    training. ``knobs`` are passed to ``load_split`` (e.g. ``snr_db=10``, ``clean=True``).
    The default hop of 80 samples is 10 ms at 8 kHz.
    """
    if isinstance(splits, str):
        raise TypeError(f"expected a sequence of split names, got the string {splits!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"expected split names among {SPLITS}, got {list(splits)}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"expected a positive int number of frames, got {frames!r}")
    front_end = AudioFrontEnd(n_mels=n_mels, hop_length=hop_length, normalize=False)
    front_end = front_end.to(device).eval()  # log-mel in dB
    needed = list(dict.fromkeys([*splits, "train"] if standardize else splits))
    out = {
        s: summarize_split(load_split(s, seed=seed, **knobs), front_end, frames, device)
        for s in needed
    }
    if standardize:
        train = out["train"]["audio_vec"]
        mu, sigma = train.mean(0), train.std(0)  # (F * frames + 2F,) each, training split only
        for d in out.values():
            d["audio_vec"] = (d["audio_vec"] - mu) / (sigma + 1e-5)
    return {s: out[s] for s in splits}
