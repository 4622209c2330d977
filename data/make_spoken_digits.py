"""Make the embedded course data: spoken digits from espeak-ng, paired with 8x8 handwritten digits.

Usage (from the repository root; needs espeak-ng, e.g. ``apt-get install espeak-ng``):

    python data/make_spoken_digits.py          # writes mmcourse/data/files/, data/checksums.sha256
    python data/make_spoken_digits.py --check    # regenerate in a temporary folder, compare checksums

Every (accent, variant) pair of espeak-ng is one *speaker*. Each speaker says each digit word
``TAKES`` times, each take with its own seeded speaking rate and pitch. Clips are resampled to
8 kHz, trimmed of leading and trailing silence, peak-normalized and stored as one 16-bit FLAC
stream. The images are scikit-learn's ``load_digits`` (the UCI optical digits), copied as uint8.
The script also fixes the splits: speakers are split per accent, images per label, and within a
split each image is paired with a clip of the same digit. Same seed, same espeak-ng -> same files.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "mmcourse" / "data" / "files"
CHECKSUMS = ROOT / "data" / "checksums.sha256"

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = [
    "en-us",
    "en-us-nyc",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
]
VARIANTS = ["m1", "m2", "m3", "m4", "m6", "m7", "f1", "f2", "f3", "f5", "croak", "klatt2"]
TAKES = 2
SPEED_WPM = (130, 200)  # espeak-ng -s, drawn uniformly per take
PITCH = (30, 70)  # espeak-ng -p (0-99, 50 is the voice's own), drawn uniformly per take
SAMPLE_RATE = 8000
ESPEAK_RATE = 22050
SILENCE = 0.02  # trim where the smoothed envelope stays below 2% of the clip's peak
MARGIN_S = 0.02  # keep 20 ms around the voiced part
PEAK = 0.9  # peak amplitude after normalization (of full scale)
BITS = 12  # stored precision: FLAC drops the 4 always-zero low bits (72 dB SNR, ~30% smaller)
SPLITS = ("train", "val", "test")
SPEAKERS_PER_ACCENT = {"val": 2, "test": 2}  # the rest of each accent's variants train
IMAGE_FRACTIONS = {"val": 0.15, "test": 0.15}  # of each label's images; the rest train


def synthesize(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One clip from espeak-ng, float32 at ESPEAK_RATE."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, word]
        subprocess.run(cmd, check=True, capture_output=True)
        x, rate = sf.read(f.name, dtype="float32")
    if rate != ESPEAK_RATE or x.ndim != 1 or len(x) == 0:
        raise RuntimeError(
            f"unexpected espeak-ng output for {voice!r}: rate {rate}, shape {x.shape}"
        )
    return x


def trim(x: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence, keeping MARGIN_S on both sides."""
    win = max(1, int(0.01 * rate))
    env = np.convolve(np.abs(x), np.ones(win) / win, mode="same")
    voiced = np.flatnonzero(env > SILENCE * env.max())
    margin = int(MARGIN_S * rate)
    lo, hi = max(0, voiced[0] - margin), min(len(x), voiced[-1] + margin + 1)
    return x[lo:hi]


def make_clip(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Synthesize, resample to 8 kHz, trim, peak-normalize, round to BITS; int16."""
    x = synthesize(word, voice, speed, pitch).astype(np.float64)
    x = resample_poly(x, SAMPLE_RATE, ESPEAK_RATE)  # 22050 -> 8000 (up 160, down 441)
    x = trim(x, SAMPLE_RATE)
    x = PEAK * x / np.abs(x).max()
    step = 2 ** (16 - BITS)
    return (np.round(x * 32767 / step) * step).astype(np.int16)


def clip_table(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every clip to make: speaker, digit, take, and its drawn speed and pitch."""
    rows = [
        (s, d, t)
        for s in range(len(ACCENTS) * len(VARIANTS))
        for d in range(10)
        for t in range(TAKES)
    ]
    n = len(rows)
    return {
        "speaker": np.array([r[0] for r in rows], dtype=np.int16),
        "label": np.array([r[1] for r in rows], dtype=np.int8),
        "take": np.array([r[2] for r in rows], dtype=np.int8),
        "speed": rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1, size=n).astype(np.int16),
        "pitch": rng.integers(PITCH[0], PITCH[1] + 1, size=n).astype(np.int16),
    }


def speaker_splits(rng: np.random.Generator) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) per speaker: per accent, a few variants each for val/test."""
    split = np.zeros((len(ACCENTS), len(VARIANTS)), dtype=np.int8)
    for a in range(len(ACCENTS)):
        order = rng.permutation(len(VARIANTS))
        n_val, n_test = SPEAKERS_PER_ACCENT["val"], SPEAKERS_PER_ACCENT["test"]
        split[a, order[:n_val]] = 1
        split[a, order[n_val : n_val + n_test]] = 2
    return split.reshape(-1)  # speaker index = accent * len(VARIANTS) + variant


def image_splits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split code per image, stratified by label."""
    split = np.zeros(len(labels), dtype=np.int8)
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(labels == d))
        n_val = round(IMAGE_FRACTIONS["val"] * len(idx))
        n_test = round(IMAGE_FRACTIONS["test"] * len(idx))
        split[idx[:n_val]] = 1
        split[idx[n_val : n_val + n_test]] = 2
    return split


def pair(img_labels, img_split, clip_labels, clip_split, rng) -> np.ndarray:
    """For each image, a clip of the same digit from a speaker of the same split.

    Clips are dealt out in a shuffled order, so a clip is reused only when a split has more
    images of a digit than clips.
    """
    paired = np.full(len(img_labels), -1, dtype=np.int32)
    for s in range(len(SPLITS)):
        for d in range(10):
            imgs = rng.permutation(np.flatnonzero((img_labels == d) & (img_split == s)))
            clips = rng.permutation(np.flatnonzero((clip_labels == d) & (clip_split == s)))
            if len(clips) == 0:
                raise RuntimeError(f"split {SPLITS[s]} has no clip of digit {d}")
            paired[imgs] = clips[np.arange(len(imgs)) % len(clips)]
    return paired


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path, seed: int, workers: int) -> list[Path]:
    """Write the three data files and their checksums (spoken_digits.sha256) into ``out``."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    table = clip_table(rng)
    speakers = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    jobs = [
        (WORDS[d], speakers[s], int(v), int(p))
        for s, d, v, p in zip(
            table["speaker"], table["label"], table["speed"], table["pitch"], strict=True
        )
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # espeak-ng runs as subprocesses
        clips = list(pool.map(lambda job: make_clip(*job), jobs))
    lengths = np.array([len(c) for c in clips], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    img_labels = digits.target.astype(np.int8)
    spk_split = speaker_splits(rng)
    img_split = image_splits(img_labels, rng)
    clip_split = spk_split[table["speaker"]]
    paired = pair(img_labels, img_split, table["label"], clip_split, rng)

    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "digit_images.npz", images=images, labels=img_labels)
    sf.write(
        out / "spoken_digits.flac",
        np.concatenate(clips),
        SAMPLE_RATE,
        subtype="PCM_16",
        format="FLAC",
        compression_level=1.0,
    )
    np.savez_compressed(
        out / "spoken_digits.npz",
        clip_offset=offsets,
        clip_length=lengths,
        clip_label=table["label"],
        clip_speaker=table["speaker"],
        clip_take=table["take"],
        clip_speed=table["speed"],
        clip_pitch=table["pitch"],
        speaker_name=np.array(speakers),
        speaker_split=spk_split,
        image_split=img_split,
        image_clip=paired,
        sample_rate=np.int32(SAMPLE_RATE),
        seed=np.int64(seed),
    )
    names = ["digit_images.npz", "spoken_digits.flac", "spoken_digits.npz"]
    lines = "".join(f"{sha256(out / n)}  {n}\n" for n in names)
    (out / "spoken_digits.sha256").write_text(lines)
    return [out / n for n in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of speeds, pitches, splits, pairing")
    p.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time")
    p.add_argument("--out", type=Path, default=FILES, help="where the files go")
    p.add_argument("--check", action="store_true", help="rebuild in a temp dir, compare checksums")
    args = p.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.seed, args.workers)
            same = (Path(tmp) / "spoken_digits.sha256").read_text() == CHECKSUMS.read_text()
        print("identical to the shipped files" if same else "DIFFERENT from the shipped files")
        return 0 if same else 1
    paths = build(args.out, args.seed, args.workers)
    if args.out.resolve() == FILES.resolve():
        CHECKSUMS.write_text((FILES / "spoken_digits.sha256").read_text())
    for path in paths:
        print(f"{path.stat().st_size / 1e6:6.2f} MB  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
