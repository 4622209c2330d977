"""The course data set: each digit seen as an 8x8 image, a spoken word and a short description.

The files (made by ``data/make_spoken_digits.py`` in the repository) fix which images and
which speakers belong to each split, and which clip goes with which image. ``seed`` fixes the
random part: image noise and erased squares, audio noise, and the descriptions.

    ds = load_split("train")             # calibrated degradations
    ds = load_split("test", clean=True)  # every degradation off
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from mmcourse.data.collate import collate
from mmcourse.data.degrade import add_noise_segments, erase_square, pixel_noise
from mmcourse.data.integrity import DataFileError, checked, files_dir
from mmcourse.data.text import NUMBER_WORDS, describe, grammar_words
from mmcourse.data.vocab import Vocab

SAMPLE_RATE = 8000
CLASSES = NUMBER_WORDS  # CLASSES[label] is the word that is spoken
SPLITS = ("train", "val", "test")
# Calibrated by data/calibrate.py (see data/README.md): each view alone is clearly partial.
DEFAULTS: dict[str, Any] = {
    "image_noise": 0.3,  # std of Gaussian pixel noise, pixels in [0, 1]
    "image_occlusion": 2,  # side in pixels of an erased square
    "snr_db": -10.0,  # signal-to-noise ratio of additive white noise, dB (inf: no noise)
    "text_reveal": 0.1,  # probability that a description names the digit exactly
    "text_typo": 0.05,  # probability that a word is misspelled
}
CLEAN: dict[str, Any] = {
    "image_noise": 0.0,
    "image_occlusion": 0,
    "snr_db": math.inf,
    "text_reveal": 1.0,
    "text_typo": 0.0,
}
VOCAB = Vocab(grammar_words())


@dataclass(frozen=True)
class Raw:
    """The shipped files, decoded: every image, every clip, and the index that ties them."""

    images: np.ndarray  # (1797, 8, 8) uint8, 0..16
    image_labels: np.ndarray  # (1797,)
    image_split: np.ndarray  # (1797,) 0 train, 1 val, 2 test
    image_clip: np.ndarray  # (1797,) the clip paired with each image
    audio: np.ndarray  # (sum of clip lengths,) int16, every clip back to back
    clip_offset: np.ndarray  # (n_clips,)
    clip_length: np.ndarray  # (n_clips,)
    clip_label: np.ndarray  # (n_clips,)
    clip_speaker: np.ndarray  # (n_clips,) index into speaker_name
    speaker_name: np.ndarray  # (n_speakers,) str, "accent+variant"
    speaker_split: np.ndarray  # (n_speakers,)


def _stamp(files: Path) -> tuple:
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(files.iterdir()))


def load_raw(files: str | Path | None = None) -> Raw:
    """Read and verify the shipped files (cached while they stay unchanged)."""
    folder = files_dir(files).resolve()
    if not folder.is_dir():
        raise DataFileError(f"missing data folder {folder}")
    return _load_raw(folder, _stamp(folder))


@lru_cache(maxsize=2)
def _load_raw(folder: Path, stamp: tuple) -> Raw:
    img_path = checked("digit_images.npz", folder)
    idx_path = checked("spoken_digits.npz", folder)
    wav_path = checked("spoken_digits.flac", folder)
    with np.load(img_path) as f:
        images, labels = f["images"], f["labels"].astype(np.int64)
    with np.load(idx_path) as f:
        ix = {k: f[k] for k in f.files}
    audio, rate = sf.read(wav_path, dtype="int16")
    if rate != SAMPLE_RATE or int(ix["sample_rate"]) != SAMPLE_RATE:
        raise DataFileError(f"{wav_path}: expected {SAMPLE_RATE} Hz, got {rate}")
    if len(audio) != int(ix["clip_offset"][-1] + ix["clip_length"][-1]):
        raise DataFileError(f"{wav_path}: length {len(audio)} does not match {idx_path.name}")
    return Raw(
        images=images,
        image_labels=labels,
        image_split=ix["image_split"].astype(np.int64),
        image_clip=ix["image_clip"].astype(np.int64),
        audio=audio,
        clip_offset=ix["clip_offset"].astype(np.int64),
        clip_length=ix["clip_length"].astype(np.int64),
        clip_label=ix["clip_label"].astype(np.int64),
        clip_speaker=ix["clip_speaker"].astype(np.int64),
        speaker_name=ix["speaker_name"],
        speaker_split=ix["speaker_split"].astype(np.int64),
    )


def _knobs(clean: bool, given: dict[str, Any]) -> dict[str, Any]:
    knobs = {**(CLEAN if clean else DEFAULTS), **{k: v for k, v in given.items() if v is not None}}
    if not isinstance(knobs["image_occlusion"], int | np.integer):
        raise TypeError(
            f"expected image_occlusion as an int (pixels), got {knobs['image_occlusion']!r}"
        )
    for key in ("image_noise", "text_reveal", "text_typo", "snr_db"):
        value = knobs[key]
        if not isinstance(value, numbers.Real) or math.isnan(value):
            raise TypeError(f"expected {key} to be a number, got {value!r}")
    for key in ("image_noise", "text_reveal", "text_typo"):
        if not 0 <= knobs[key] < math.inf:
            raise ValueError(f"expected {key} to be a finite number >= 0, got {knobs[key]!r}")
    for key in ("text_reveal", "text_typo"):
        if knobs[key] > 1:
            raise ValueError(f"expected {key} to be a probability in [0, 1], got {knobs[key]!r}")
    return knobs


class SpokenDigits(Dataset):
    """One split of the course data; items are dicts (see ``__getitem__``)."""

    def __init__(self, raw: Raw, split: str, seed: int, knobs: dict[str, Any]):
        code = SPLITS.index(split)
        self.split, self.seed, self.knobs, self.vocab = split, seed, dict(knobs), VOCAB
        self.image_index = np.flatnonzero(raw.image_split == code)  # (N,) into load_digits
        self.clip_index = raw.image_clip[self.image_index]  # (N,) into the clip table
        n = len(self.image_index)
        self.labels = torch.as_tensor(raw.image_labels[self.image_index])  # (N,)
        if not np.array_equal(raw.clip_label[self.clip_index], raw.image_labels[self.image_index]):
            raise DataFileError("spoken_digits.npz pairs an image with a clip of another digit")
        spk = raw.clip_speaker[self.clip_index]
        if np.any(raw.speaker_split[spk] != code):
            raise DataFileError(f"spoken_digits.npz puts a non-{split} speaker into {split}")
        self.speaker = [str(s) for s in raw.speaker_name[spk]]  # per item
        self.speakers = sorted(set(self.speaker))

        # image: (N, 1, 8, 8) in [0, 1], then an erased square, then pixel noise
        rng = np.random.default_rng([seed, code, 0])
        corners, z = rng.random((n, 2)), rng.standard_normal((n, 1, 8, 8), dtype=np.float32)
        x = raw.images[self.image_index][:, None].astype(np.float32) / 16.0
        x = pixel_noise(
            erase_square(x, int(knobs["image_occlusion"]), corners), knobs["image_noise"], z
        )
        self.images = torch.from_numpy(x)

        # audio: the paired clips back to back, float32 in [-1, 1], plus white noise
        self.audio_length = raw.clip_length[self.clip_index]  # (N,)
        self.audio_offset = np.concatenate([[0], np.cumsum(self.audio_length)[:-1]])  # (N,)
        starts = raw.clip_offset[self.clip_index]
        clean = np.concatenate(
            [raw.audio[s : s + m] for s, m in zip(starts, self.audio_length, strict=True)]
        )
        clean = clean.astype(np.float32) / 32768.0
        z = np.random.default_rng([seed, code, 1]).standard_normal(len(clean), dtype=np.float32)
        noisy = add_noise_segments(clean, self.audio_offset, self.audio_length, knobs["snr_db"], z)
        self.audio = torch.from_numpy(noisy)

        # text: one description per item, each from its own generator
        self.text = [
            describe(
                int(d),
                np.random.default_rng([seed, code, 2, i]),
                knobs["text_reveal"],
                knobs["text_typo"],
            )
            for i, d in enumerate(raw.image_labels[self.image_index])
        ]
        self.tokens = [torch.tensor(self.vocab.encode(t), dtype=torch.int64) for t in self.text]
        self._whole: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.image_index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """{"image" (1, 8, 8), "audio" (L,), "text" str, "tokens" (T,), "label" int, "speaker" str}"""
        if not isinstance(i, int | np.integer):
            raise TypeError(f"expected an int index, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for the {len(self)} items of {self.split}")
        i = int(i) % len(self)
        s, m = int(self.audio_offset[i]), int(self.audio_length[i])
        return {
            "image": self.images[i].clone(),
            "audio": self.audio[s : s + m].clone(),
            "text": self.text[i],
            "tokens": self.tokens[i].clone(),
            "label": int(self.labels[i]),
            "speaker": self.speaker[i],
        }

    def tensors(self, device: torch.device | str | None = None) -> dict[str, Any]:
        """The whole split as one collated batch, on ``device`` (default: the CPU)."""
        if self._whole is None:
            self._whole = collate([self[i] for i in range(len(self))])
        return {
            k: v.to(device) if isinstance(v, torch.Tensor) and device is not None else v
            for k, v in self._whole.items()
        }

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.knobs.items())
        return (
            f"SpokenDigits({self.split!r}, {len(self)} items, {len(self.speakers)} speakers, "
            f"seed={self.seed}, {knobs})"
        )


def load_split(
    split: str,
    seed: int = 0,
    *,
    image_noise: float | None = None,
    image_occlusion: int | None = None,
    snr_db: float | None = None,
    text_reveal: float | None = None,
    text_typo: float | None = None,
    clean: bool = False,
    files: str | Path | None = None,
) -> SpokenDigits:
    """One split ("train", "val" or "test") of the course data.

    Knobs left at None take the calibrated defaults (``DEFAULTS``), or, with ``clean=True``,
    no degradation at all. ``snr_db=math.inf`` switches audio noise off. ``files`` reads the data
    from another folder (tests use it); a missing or corrupted file raises ``DataFileError``
    naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"expected split 'train', 'val' or 'test', got {split!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"expected a non-negative int seed, got {seed!r}")
    given = dict(
        image_noise=image_noise,
        image_occlusion=image_occlusion,
        snr_db=snr_db,
        text_reveal=text_reveal,
        text_typo=text_typo,
    )
    knobs = _knobs(clean, given)
    return SpokenDigits(load_raw(files), split, int(seed), knobs)
