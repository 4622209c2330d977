"""AV-MNIST from real data: MNIST digits paired with spoken digits from FSDD.

AV-MNIST (Vielzeuf et al., 2018; also used by MultiBench) pairs each MNIST image with a
recording of someone saying the same digit, and degrades the images on purpose so that
neither modality is easy alone: the image keeps only the principal components that explain
25% of the pixel variance. The audio comes from the Free Spoken Digit Dataset (FSDD,
CC BY-SA 4.0): 3,000 WAV files at 8 kHz, 6 speakers x 10 digits x 50 takes, named
``{digit}_{speaker}_{take}.wav``; takes 0-4 are its test split.

Files are downloaded once into a cache (see ``mmcourse.data.download.cache_dir``)::

    <cache>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   official MD5s
    <cache>/fsdd/recordings/*.wav                                    SHA-256 per file

MNIST comes through torchvision (imported when first needed: it takes a second): the mirrors
and official MD5s of ``torchvision.datasets.MNIST`` and its idx readers, each part read on
its own, so the test files alone suffice (the class itself wants all four files). The FSDD check is a manifest shipped in the package
(``files/fsdd_sha256.txt.gz``, in ``sha256sum`` format, read by
``mmcourse.data.integrity``), so every recording is verified on its own, whatever archive it
came in. Items have the same format as the embedded course data, without the text.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from mmcourse.data.download import EMBEDDED_HINT, cache_dir, check_online, fetch, fetch_first
from mmcourse.data.integrity import REINSTALL, manifest_problems, read_manifest
from mmcourse.data.spoken_digits import SAMPLE_RATE, SPLITS

N_VAL = 5000  # the last 5,000 MNIST training images form the validation split
VARIANCE_KEPT = 0.25


FSDD_TAG = "v1.0.10"
FSDD_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
    f"{FSDD_TAG}.zip"
)
FSDD_MANIFEST = Path(__file__).with_name("files") / "fsdd_sha256.txt.gz"
FSDD_TEST_TAKES = range(0, 5)
FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


# ---------------------------------------------------------------- MNIST


def load_mnist(part: str = "t10k", root: str | Path | None = None, *, download: bool = True,
               timeout: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``part`` ("train": 60,000 or "t10k": 10,000): images uint8 (N, 28, 28), labels (N,).

    Each file is checked against its official MD5 before it is parsed.
    """
    if part not in ("train", "t10k"):
        raise ValueError(f"expected part 'train' or 't10k', got {part!r}")
    from torchvision.datasets.mnist import read_image_file, read_label_file

    folder = cache_dir(root) / "mnist"
    images = _read_gz(_mnist_file(folder / f"{part}-images-idx3-ubyte.gz", download, timeout),
                      read_image_file)
    labels = _read_gz(_mnist_file(folder / f"{part}-labels-idx1-ubyte.gz", download, timeout),
                      read_label_file)
    if images.shape[1:] != (28, 28) or labels.shape != (len(images),):
        raise ValueError(f"{part}: expected images (N, 28, 28) and N labels, "
                         f"got {tuple(images.shape)} and {tuple(labels.shape)}")
    return images.numpy(), labels.numpy().astype(np.int64)


def _read_gz(path: Path, reader: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Run torchvision's idx ``reader`` on the decompressed contents of ``path``."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.stem
        raw.write_bytes(gzip.decompress(path.read_bytes()))
        return reader(str(raw))


def _mnist_file(path: Path, download: bool, timeout: float) -> Path:
    """``path`` (an MNIST file in the cache) once its MD5 is the official one; downloaded
    from the first mirror that answers when it is missing and ``download`` is True."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import check_integrity

    md5 = dict(MNIST.resources)[path.name]
    if not path.exists():
        if not download:
            raise FileNotFoundError(f"{path} is missing; pass download=True to fetch it. "
                                    + EMBEDDED_HINT)
        urls = [mirror + path.name for mirror in MNIST.mirrors]
        return fetch_first(urls, path, algorithm="md5", digest=md5, timeout=timeout)
    if not check_integrity(str(path), md5):
        raise ValueError(f"{path}: its MD5 differs from the official {md5}; "
                         "delete it to download it again")
    return path


# ---------------------------------------------------------------- FSDD


def fsdd_manifest(path: str | Path = FSDD_MANIFEST) -> dict[str, str]:
    """File name -> SHA-256 of every FSDD recording, from the manifest shipped in the package."""
    try:
        return read_manifest(path, FSDD_NAME)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} (the FSDD manifest); reinstall: {REINSTALL}") from None


def fsdd_key(name: str) -> tuple[int, str, int]:
    """(digit, speaker, take) from a file name such as ``7_jackson_32.wav``."""
    m = FSDD_NAME.match(name)
    if m is None:
        raise ValueError(f"expected an FSDD file name like '7_jackson_32.wav', got {name!r}")
    return int(m[1]), m[2], int(m[3])


def check_fsdd(recordings: str | Path) -> list[str]:
    """Problems found in a folder of recordings (missing files, wrong SHA-256); empty when good."""
    return manifest_problems(recordings, fsdd_manifest())


def load_fsdd(split: str = "test", root: str | Path | None = None, *, download: bool = True,
              timeout: float = 3.0) -> list[tuple[np.ndarray, int, str, int]]:
    """FSDD recordings of ``split`` ("train": takes 5-49, "test": takes 0-4), in manifest order.

    Each clip is ``(audio float32 (L,) in [-1, 1), digit, speaker, take)`` at 8 kHz.
    """
    if split not in ("train", "test"):
        raise ValueError(f"expected split 'train' or 'test', got {split!r}")
    recordings = _fsdd_folder(cache_dir(root) / "fsdd", download, timeout)
    clips = []
    for name in fsdd_manifest():
        digit, speaker, take = fsdd_key(name)
        if (take in FSDD_TEST_TAKES) != (split == "test"):
            continue
        audio, rate = sf.read(recordings / name, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE or audio.shape[1] != 1:
            raise ValueError(f"{recordings / name}: expected mono {SAMPLE_RATE} Hz, "
                             f"got {audio.shape[1]} channels at {rate} Hz")
        clips.append((audio[:, 0], digit, speaker, take))
    return clips


def _fsdd_folder(folder: Path, download: bool, timeout: float) -> Path:
    recordings = folder / "recordings"
    if not recordings.is_dir():
        if not download:
            raise FileNotFoundError(f"{recordings} is missing; pass download=True to fetch it. "
                                    + EMBEDDED_HINT)
        _download_fsdd(folder, timeout)
    problems = check_fsdd(recordings)
    if problems:
        raise ValueError(
            f"{len(problems)} FSDD recordings fail their check, e.g. {problems[0]}; "
            f"delete {recordings} to download them again"
        )
    return recordings


def _download_fsdd(folder: Path, timeout: float) -> None:
    """Fetch the pinned release archive and unpack its recordings, checked file by file."""
    check_online(FSDD_URL, timeout=timeout)
    archive = fetch(FSDD_URL, folder / f"fsdd-{FSDD_TAG}.zip", digest=None)
    staging = folder / "recordings.part"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            parts = Path(member.filename).parts
            if len(parts) >= 2 and parts[-2] == "recordings" and FSDD_NAME.match(parts[-1]):
                (staging / parts[-1]).write_bytes(z.read(member))  # base name only: no path tricks
    problems = check_fsdd(staging)
    if problems:
        shutil.rmtree(staging)
        archive.unlink()
        raise ValueError(f"the FSDD archive {FSDD_URL} does not match the manifest: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    staging.rename(folder / "recordings")
    archive.unlink()


# ---------------------------------------------------------------- degradation and pairing


@dataclass
class PCA:
    """Kept principal components: x ~ mean + (x - mean) @ components.T @ components."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows, largest variance first
    ratio: np.ndarray  # (k,) share of the total variance that each kept component explains

    @property
    def share(self) -> float:
        """Share of the variance kept: ratio.sum()."""
        return float(self.ratio.sum())

    def project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.components.T  # (N, D) -> (N, k)

    def reconstruct(self, z: np.ndarray) -> np.ndarray:
        return self.mean + z @ self.components  # (N, k) -> (N, D)


def fit_pca(x: np.ndarray, variance: float = VARIANCE_KEPT) -> PCA:
    """The fewest principal components of x (N, D) whose variance shares add up to ``variance``."""
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"expected x of shape (N, D) with N >= 2, got {x.shape}")
    if not 0 < variance <= 1:
        raise ValueError(f"expected variance in (0, 1], got {variance}")
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    eigvals, eigvecs = np.linalg.eigh(xc.T @ xc / len(x))  # ascending
    eigvals, eigvecs = np.clip(eigvals[::-1], 0, None), eigvecs[:, ::-1]
    ratio = eigvals / eigvals.sum()
    k = min(int(np.searchsorted(np.cumsum(ratio), variance)) + 1, len(ratio))
    return PCA(mean, eigvecs[:, :k].T.copy(), ratio[:k])


def pair_by_label(image_labels: np.ndarray, clip_labels: np.ndarray,
                  seed: int | list[int] = 0) -> np.ndarray:
    """For each image, the index of a clip with the same label (N,).

    Each label's clips are dealt out in shuffled rounds, so every clip is used equally often,
    give or take one.
    """
    rng = np.random.default_rng(seed)
    index = np.empty(len(image_labels), dtype=np.int64)
    for y in np.unique(image_labels):
        images, pool = np.flatnonzero(image_labels == y), np.flatnonzero(clip_labels == y)
        if len(pool) == 0:
            raise ValueError(f"no audio clip has label {y}")
        rounds = -(-len(images) // len(pool))
        deal = np.concatenate([rng.permutation(pool) for _ in range(rounds)])
        index[images] = deal[: len(images)]
    return index


# ---------------------------------------------------------------- the data set


class AVMNIST(Dataset):
    """MNIST images paired with FSDD clips; items as in the embedded data, without text.

    ``ds[i]`` is a dict: "image" float32 (1, 28, 28) in [0, 1], "audio" float32 (L,) at 8 kHz,
    "label" int, "speaker" str (the FSDD speaker). Batch with ``mmcourse.data.collate``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray,
                 clips: list[tuple[np.ndarray, int, str, int]], clip_index: np.ndarray,
                 pca: PCA | None = None, split: str = "test", fit_on: str | None = None):
        if images.shape[1:] != (28, 28) or not len(images) == len(labels) == len(clip_index):
            raise ValueError(f"expected images (N, 28, 28), N labels and N clip indices, got "
                             f"{images.shape}, {len(labels)}, {len(clip_index)}")
        if np.any(np.array([clips[j][1] for j in clip_index]) != labels):
            raise ValueError("every image must be paired with a clip of the same label")
        self.split, self.pca, self.fit_on = split, pca, fit_on
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.clip_index = torch.as_tensor(clip_index, dtype=torch.long)
        self.clips = [torch.from_numpy(a) for a, *_ in clips]
        self.clip_speakers = [speaker for _, _, speaker, _ in clips]
        self.clip_takes = [take for *_, take in clips]
        self.sample_rate = SAMPLE_RATE
        self._x = torch.from_numpy(images.reshape(len(images), -1))  # (N, 784) uint8
        if pca is not None:  # keep the k coefficients; an item is rebuilt from them on access
            self._mean = torch.from_numpy(pca.mean.astype(np.float32))  # (784,)
            self._components = torch.from_numpy(pca.components.astype(np.float32))  # (k, 784)
            x = self._x.float() / 255.0  # (N, 784)
            self._z = (x - self._mean) @ self._components.T  # (N, k)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        """The (degraded) image i, float32 (1, 28, 28), clipped to [0, 1]."""
        if self.pca is None:
            return (self._x[i].float() / 255.0).reshape(1, 28, 28)
        x = self._mean + self._z[i] @ self._components  # (784,)
        return x.clamp(0.0, 1.0).reshape(1, 28, 28)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        j = int(self.clip_index[i])
        return {"image": self.image(i), "audio": self.clips[j],
                "label": int(self.labels[i]), "speaker": self.clip_speakers[j]}

    def __repr__(self) -> str:
        degraded = "clean" if self.pca is None else (
            f"PCA {self.pca.components.shape[0]} components, {self.pca.share:.1%} of the "
            f"variance, fit on {self.fit_on}")
        return f"AVMNIST(split={self.split!r}, n={len(self)}, clips={len(self.clips)}, {degraded})"


def load_avmnist(split: str = "train", root: str | Path | None = None, *, seed: int = 0,
                 degrade: bool = True, variance: float = VARIANCE_KEPT, pca_fit: str = "auto",
                 download: bool = True, timeout: float = 3.0) -> AVMNIST:
    """AV-MNIST ``split``: "train" (55,000), "val" (5,000, the last MNIST training images) or
    "test" (10,000), each image paired (seeded) with a spoken digit of the same label from
    FSDD's matching split (train and val: takes 5-49; test: takes 0-4).

    ``degrade`` keeps only the principal components that explain ``variance`` of the pixel
    variance, fit on the 55,000 training images, and rebuilds the image from them.
    ``pca_fit`` says what the components are fit on: "train"; "given", the split's own
    images, which lets the test files alone be used (the components then differ a little from
    those of the training images, so such results are not comparable with published ones);
    "auto", "train" when the training files are in the cache or may be downloaded, else
    "given" with a warning. ``root`` is the cache folder; ``download=False`` never touches
    the network. Offline, ``mmcourse.data.download.OfflineError`` comes within a few seconds.
    """
    if split not in SPLITS:
        raise ValueError(f"expected split in {SPLITS}, got {split!r}")
    if pca_fit not in ("auto", "train", "given"):
        raise ValueError(f"expected pca_fit 'auto', 'train' or 'given', got {pca_fit!r}")
    root = cache_dir(root)
    kw = {"download": download, "timeout": timeout}
    images, labels = load_mnist("t10k" if split == "test" else "train", root, **kw)
    if split != "test":
        keep = slice(None, -N_VAL) if split == "train" else slice(-N_VAL, None)
        train_images, (images, labels) = images[:-N_VAL], (images[keep], labels[keep])
    clips = load_fsdd("test" if split == "test" else "train", root, **kw)
    pca = fit_on = None
    if degrade:
        fit_on = pca_fit
        if pca_fit == "auto":
            have_train = download or all((root / "mnist" / f"train-{k}-ubyte.gz").exists()
                                         for k in ("images-idx3", "labels-idx1"))
            fit_on = "train" if split != "test" or have_train else "given"
            if fit_on == "given":
                warnings.warn("MNIST training images are not in the cache and download=False: "
                              "the PCA is fit on the test images themselves", stacklevel=2)
        if fit_on == "train" and split == "test":
            train_images = load_mnist("train", root, **kw)[0][:-N_VAL]
        fit_x = train_images if fit_on == "train" else images
        pca = fit_pca(fit_x.reshape(len(fit_x), -1).astype(np.float64) / 255.0, variance)
    clip_labels = np.array([digit for _, digit, _, _ in clips])
    index = pair_by_label(labels, clip_labels, seed=[seed, SPLITS.index(split)])
    return AVMNIST(images, labels, clips, index, pca, split, fit_on)
