"""AV-MNIST loader: MNIST through torchvision, checksums, FSDD manifest, PCA, pairing, offline.

The real-data tests read MNIST t10k and FSDD from ``../shared/data`` (beside the repository)
through a cache folder of symlinks, and skip when that folder is absent. Nothing here talks to
the internet: the offline and download tests use patched sockets and a server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading
import time
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.datasets import MNIST

from mmcourse.data import avmnist
from mmcourse.data.avmnist import (
    AVMNIST,
    check_fsdd,
    fit_pca,
    fsdd_key,
    fsdd_manifest,
    load_avmnist,
    load_fsdd,
    load_mnist,
    pair_by_label,
)
from mmcourse.data.download import OfflineError, cache_dir, check_online, fetch, file_digest

# ``shared/data`` beside the checkout (or beside a folder of checkouts, e.g. git worktrees)
SHARED = next((p / "shared" / "data" for p in Path(__file__).resolve().parents[1:4]
               if (p / "shared" / "data").is_dir()), Path(__file__).resolve().parents[2] / "shared" / "data")
MNIST_DIR, RECORDINGS = SHARED / "mnist", SHARED / "fsdd" / "recordings"
needs_shared = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists() or not RECORDINGS.is_dir(),
    reason="real MNIST t10k / FSDD files not found in ../shared/data",
)
T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # published label counts
SPEAKERS = {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
EMBEDDED = "mmcourse.data.load_split"
MNIST_MD5 = dict(MNIST.resources)


def idx_gz(x: np.ndarray) -> bytes:
    """uint8 array -> gzip-compressed idx bytes (type code 8), as MNIST ships its files."""
    header = bytes([0, 0, 8, x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
    return gzip.compress(header + np.ascontiguousarray(x, np.uint8).tobytes())


def fake_mnist(folder: Path, part: str, images: np.ndarray, labels: np.ndarray,
               monkeypatch) -> None:
    """Write MNIST files for ``part`` into ``folder`` and make their MD5s the official ones."""
    folder.mkdir(parents=True, exist_ok=True)
    md5 = dict(MNIST.resources)
    for kind, x in (("images-idx3", images), ("labels-idx1", labels)):
        path = folder / f"{part}-{kind}-ubyte.gz"
        path.write_bytes(idx_gz(x))
        md5[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(MNIST, "resources", list(md5.items()))


def link_cache(root: Path) -> Path:
    """A cache folder laid out as the loader expects, made of symlinks to the shared files."""
    (root / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (root / "mnist" / name).symlink_to(MNIST_DIR / name)
    (root / "fsdd").mkdir()
    (root / "fsdd" / "recordings").symlink_to(RECORDINGS, target_is_directory=True)
    return root


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    if not RECORDINGS.is_dir() or not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST t10k / FSDD files not found in ../shared/data")
    return link_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def test_set(shared_cache) -> AVMNIST:
    with pytest.warns(UserWarning, match="fit on the test images"):
        return load_avmnist("test", shared_cache, download=False)  # pca_fit="auto"


# ---------------------------------------------------------------- MNIST


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_mnist_files_are_read_through_torchvision(tmp_path_factory, n, seed):
    """Any checked pair of idx files comes back exactly: images uint8 (N, 28, 28), labels int64."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        fake_mnist(root / "mnist", "t10k", images, labels, mp)
        got_images, got_labels = load_mnist("t10k", root, download=False)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels.tolist()
    assert sorted(p.name for p in (root / "mnist").iterdir()) == [  # nothing extracted there
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_mnist_files_of_the_wrong_shape_are_refused(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "mnist", "t10k", np.zeros((3, 28, 28), np.uint8),
               np.zeros(2, np.uint8), monkeypatch)
    with pytest.raises(ValueError, match=r"t10k: expected images \(N, 28, 28\) and N labels, "
                       r"got \(3, 28, 28\) and \(2,\)"):
        load_mnist("t10k", tmp_path, download=False)


@needs_shared
def test_mnist_t10k(shared_cache):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert file_digest(MNIST_DIR / name, "md5") == MNIST_MD5[name]
    images, labels = load_mnist("t10k", shared_cache, download=False)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10_000 and counts.tolist() == T10K_COUNTS
    assert images.min() == 0 and images.max() == 255
    assert 0.12 < images.mean() / 255 < 0.145  # ink covers about 13% of the pixel mass
    assert (images[:, 0, :] == 0).all()  # MNIST digits are centred: the top row is blank


@needs_shared
def test_mnist_corrupt_or_missing_file_is_named(tmp_path):
    (tmp_path / "mnist").mkdir()
    data = bytearray((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", tmp_path / "mnist")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: its MD5 differs from the official"):
        load_mnist("t10k", tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match=f"train-images-idx3-ubyte.gz is missing.*{EMBEDDED}"):
        load_mnist("train", tmp_path, download=False)
    with pytest.raises(ValueError, match="expected part 'train' or 't10k'"):
        load_mnist("test", tmp_path, download=False)


# ---------------------------------------------------------------- FSDD


@needs_shared
def test_fsdd_files_and_manifest():
    manifest = fsdd_manifest()
    names = sorted(p.name for p in RECORDINGS.glob("*.wav"))
    assert len(manifest) == 3000 and sorted(manifest) == names
    assert check_fsdd(RECORDINGS) == []
    keys = [fsdd_key(n) for n in names]
    assert {s for _, s, _ in keys} == SPEAKERS
    for digit in range(10):
        for speaker in SPEAKERS:
            assert sorted(t for d, s, t in keys if (d, s) == (digit, speaker)) == list(range(50))
    for name in names[::7]:  # the header of every 7th file: 8 kHz mono 16-bit
        info = sf.info(RECORDINGS / name)
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16"), name


@needs_shared
def test_fsdd_splits(shared_cache):
    test, train = load_fsdd("test", shared_cache, download=False), load_fsdd("train", shared_cache, download=False)
    assert len(test) == 300 and len(train) == 2700
    assert {t for *_, t in test} == set(range(5)) and {t for *_, t in train} == set(range(5, 50))
    assert np.bincount([d for _, d, _, _ in test]).tolist() == [30] * 10
    for audio, *_ in test:
        assert audio.dtype == np.float32 and audio.ndim == 1 and 1000 < len(audio) < 20_000
        assert np.abs(audio).max() <= 1.0 and audio.std() > 1e-3


@needs_shared
def test_fsdd_check_names_bad_files(tmp_path):
    names = list(fsdd_manifest())
    for name in names:
        (tmp_path / name).symlink_to(RECORDINGS / name)
    (tmp_path / names[0]).unlink()
    (tmp_path / names[1]).unlink()
    wav = bytearray((RECORDINGS / names[1]).read_bytes())
    wav[-1] ^= 1
    (tmp_path / names[1]).write_bytes(bytes(wav))
    problems = check_fsdd(tmp_path)
    assert problems == [f"missing data file {tmp_path / names[0]}",
                        f"corrupted data file {tmp_path / names[1]} (its SHA-256 differs from the checksum list)"]
    with pytest.raises(ValueError, match="expected an FSDD file name"):
        fsdd_key("seven.wav")


def test_fsdd_manifest_format_is_checked(tmp_path):
    bad = tmp_path / "m.txt.gz"
    bad.write_bytes(gzip.compress(b"abc  0_theo_1.wav\n"))
    with pytest.raises(ValueError, match="m.txt.gz, line 1: expected '<sha256>"):
        fsdd_manifest(bad)
    with pytest.raises(FileNotFoundError, match="missing checksum list .*absent.gz .the FSDD manifest.; reinstall"):
        fsdd_manifest(tmp_path / "absent.gz")


# ---------------------------------------------------------------- PCA and pairing


def test_fit_pca_matches_sklearn():
    from sklearn.decomposition import PCA as SkPCA

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 3.0
    pca = fit_pca(x, variance=0.6)
    ref = SkPCA().fit(x)
    k = len(pca.ratio)
    np.testing.assert_allclose(pca.ratio, ref.explained_variance_ratio_[:k], rtol=1e-9)
    assert ref.explained_variance_ratio_[: k - 1].sum() < 0.6 <= pca.share
    np.testing.assert_allclose(np.abs(pca.components @ ref.components_[:k].T), np.eye(k), atol=1e-8)
    z = pca.project(x)
    np.testing.assert_allclose(pca.reconstruct(z), ref.inverse_transform(np.pad(ref.transform(x)[:, :k], ((0, 0), (0, 12 - k)))), atol=1e-8)
    assert len(fit_pca(x, variance=1.0).ratio) == 12
    with pytest.raises(ValueError, match="expected variance in"):
        fit_pca(x, variance=0.0)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, D\)"):
        fit_pca(x[0])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_pair_by_label_balanced(labels, seed):
    image_labels = np.array(labels)
    clip_labels = np.repeat(np.arange(5), 3)
    index = pair_by_label(image_labels, clip_labels, seed)
    np.testing.assert_array_equal(clip_labels[index], image_labels)
    for y in range(5):
        uses = np.bincount(index[image_labels == y], minlength=15)[clip_labels == y]
        assert uses.max() - uses.min() <= 1
    np.testing.assert_array_equal(pair_by_label(image_labels, clip_labels, seed), index)


def test_pair_by_label_needs_every_label():
    with pytest.raises(ValueError, match="no audio clip has label 3"):
        pair_by_label(np.array([1, 3]), np.array([1, 1, 2]))


# ---------------------------------------------------------------- the data set


@needs_shared
def test_test_split_items(test_set):
    assert len(test_set) == 10_000 and test_set.fit_on == "given" and len(test_set.clips) == 300
    item = test_set[123]
    assert set(item) == {"image", "audio", "label", "speaker"}
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == torch.float32
    assert item["audio"].ndim == 1 and item["audio"].dtype == torch.float32
    assert isinstance(item["label"], int) and item["speaker"] in SPEAKERS
    with pytest.raises(IndexError):
        test_set[10_000]
    images = np.zeros((3, 28, 28), np.uint8)
    clips = [(np.zeros(10, np.float32), 1, "theo", 0), (np.zeros(10, np.float32), 2, "theo", 0)]
    with pytest.raises(ValueError, match="N labels and N clip indices"):
        AVMNIST(images, np.array([1, 1, 1]), clips, np.array([0, 0]))
    with pytest.raises(ValueError, match="same label"):
        AVMNIST(images, np.array([1, 1, 2]), clips, np.array([0, 0, 0]))


@needs_shared
def test_pairing_labels_agree(test_set, shared_cache):
    clips = load_fsdd("test", shared_cache, download=False)
    clip_digit = torch.tensor([d for _, d, _, _ in clips])
    assert torch.equal(clip_digit[test_set.clip_index], test_set.labels)
    assert max(test_set.clip_takes) < 5
    for i in (0, 4321, 9999):
        j = int(test_set.clip_index[i])
        assert torch.equal(test_set[i]["audio"], torch.from_numpy(clips[j][0]))
        assert test_set[i]["label"] == clips[j][1] and test_set[i]["speaker"] == clips[j][2]
    uses = torch.bincount(test_set.clip_index, minlength=300)
    for digit in range(10):  # each clip of a digit is used equally often, give or take one
        assert uses[clip_digit == digit].max() - uses[clip_digit == digit].min() <= 1


@needs_shared
def test_pca_degradation_keeps_a_quarter_of_the_variance(test_set, shared_cache):
    images, _ = load_mnist("t10k", shared_cache, download=False)
    x = images.reshape(10_000, -1) / 255.0
    pca = test_set.pca
    k = len(pca.ratio)
    assert pca.share >= 0.25 > pca.share - pca.ratio[-1]  # the fewest components that reach 25%
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(k), atol=1e-10)
    xc = x - x.mean(0)
    kept = pca.reconstruct(pca.project(x)) - x.mean(0)  # what the degraded images keep
    assert ((kept**2).sum() / (xc**2).sum()) == pytest.approx(pca.share, rel=1e-9)
    rebuilt = torch.from_numpy(np.clip(pca.reconstruct(pca.project(x[:50])), 0, 1)).float()
    got = torch.stack([test_set[i]["image"].reshape(-1) for i in range(50)])
    torch.testing.assert_close(got, rebuilt, atol=1e-5, rtol=0)
    assert got.min() >= 0 and got.max() <= 1
    err = ((got.numpy() - x[:50]) ** 2).mean()
    assert err > 0.02  # clearly degraded


@needs_shared
def test_determinism_and_clean_images(test_set, shared_cache):
    clean = load_avmnist("test", shared_cache, degrade=False, download=False)
    assert clean.pca is None and clean.fit_on is None
    assert torch.equal(clean.clip_index, test_set.clip_index)  # same seed, same pairing
    images, _ = load_mnist("t10k", shared_cache, download=False)
    torch.testing.assert_close(clean[7]["image"][0], torch.from_numpy(images[7] / 255.0).float())
    other = load_avmnist("test", shared_cache, degrade=False, download=False, seed=1)
    assert not torch.equal(other.clip_index, clean.clip_index)
    assert torch.equal(other.labels, clean.labels)
    with pytest.raises(ValueError, match="expected split in"):
        load_avmnist("dev", shared_cache)
    with pytest.raises(ValueError, match="expected pca_fit"):
        load_avmnist("test", shared_cache, pca_fit="val")


@needs_shared
def test_collate_batches_avmnist(test_set):
    from mmcourse.data import collate

    items = [test_set[i] for i in range(4)]
    batch = collate(items)
    assert batch["image"].shape == (4, 1, 28, 28)
    lengths = [len(it["audio"]) for it in items]
    assert batch["audio"].shape == (4, max(lengths)) and batch["audio_len"].tolist() == lengths
    assert batch["label"].tolist() == [it["label"] for it in items]


@needs_shared
@pytest.mark.slow
def test_train_val_split_and_pca_fit_on_train(tmp_path, monkeypatch):
    """With (small, fake) training files in the cache: the val slice, and PCA fit on train."""
    link_cache(tmp_path)
    rng = np.random.default_rng(0)
    fake = {"images-idx3": rng.integers(0, 256, (600, 28, 28), dtype=np.uint8),
            "labels-idx1": (np.arange(600) % 10).astype(np.uint8)}
    fake_mnist(tmp_path / "mnist", "train", fake["images-idx3"], fake["labels-idx1"], monkeypatch)
    monkeypatch.setattr(avmnist, "N_VAL", 100)
    train = load_avmnist("train", tmp_path, download=False, variance=0.05)
    val = load_avmnist("val", tmp_path, download=False, degrade=False)
    assert len(train) == 500 and len(val) == 100 and train.fit_on == "train"
    assert val.labels.tolist() == (np.arange(500, 600) % 10).tolist()
    np.testing.assert_allclose(train.pca.mean, fake["images-idx3"][:500].reshape(500, -1).mean(0) / 255)
    assert all(take >= 5 for take in train.clip_takes)
    test = load_avmnist("test", tmp_path, download=False, variance=0.05)  # auto: train is cached
    assert test.fit_on == "train"
    np.testing.assert_allclose(test.pca.components, train.pca.components)


# ---------------------------------------------------------------- cache and offline


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MMCOURSE_CACHE", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "mmcourse"
    monkeypatch.setenv("MMCOURSE_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_offline_error(err: pytest.ExceptionInfo, elapsed: float, limit: float = 5.0):
    assert elapsed < limit, f"took {elapsed:.1f} s to notice it is offline"
    assert "offline" in str(err.value) and EMBEDDED in str(err.value)


def test_offline_fails_fast_when_connect_fails(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    start = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        load_avmnist("test", tmp_path)
    assert_offline_error(err, time.perf_counter() - start)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing half-downloaded


def test_offline_fails_fast_when_connect_hangs(tmp_path, monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):  # a name lookup that never answers
        release.wait(30)
        raise OSError("gave up")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    try:
        with pytest.raises(OfflineError, match="no answer within 0.5 s") as err:
            load_avmnist("test", tmp_path, timeout=0.5)
    finally:
        release.set()
    assert_offline_error(err, time.perf_counter() - start, limit=3.0)


def test_offline_closed_local_port(tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"])
    start = time.perf_counter()
    with pytest.raises(OfflineError, match=f"127.0.0.1:{port}") as err:
        load_avmnist("test", tmp_path)
    assert_offline_error(err, time.perf_counter() - start)
    with pytest.raises(OfflineError):
        check_online(f"http://127.0.0.1:{port}/", timeout=1.0)


def test_download_false_never_connects(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("download=False must not open a connection")

    monkeypatch.setattr(socket, "create_connection", boom)
    with pytest.raises(FileNotFoundError, match=f"t10k-images-idx3-ubyte.gz is missing.*{EMBEDDED}"):
        load_avmnist("test", tmp_path, download=False)


# ---------------------------------------------------------------- downloads from a local server


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / 'www'``; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_checks_the_digest(tmp_path, local_server):
    www, url = local_server
    (www / "blob.bin").write_bytes(b"spoken digits" * 1000)
    good = hashlib.sha256(b"spoken digits" * 1000).hexdigest()
    with pytest.raises(ValueError, match="sha256 mismatch .* not kept"):
        fetch(url + "blob.bin", tmp_path / "out" / "blob.bin", digest="0" * 64)
    assert list((tmp_path / "out").iterdir()) == []
    path = fetch(url + "blob.bin", tmp_path / "out" / "blob.bin", digest=good)
    assert path.read_bytes() == b"spoken digits" * 1000


@needs_shared
@pytest.mark.slow
def test_download_from_local_mirrors(tmp_path, local_server, monkeypatch):
    """The whole download path: a dead mirror, then MNIST and a release zip of FSDD."""
    www, url = local_server
    (www / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(MNIST_DIR / name, www / "mnist")
    top = "free-spoken-digit-dataset-1.0.10"
    with zipfile.ZipFile(www / "fsdd.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{top}/README.md", "FSDD")
        z.writestr(f"{top}/recordings/notes.txt", "not a recording")
        for wav in sorted(RECORDINGS.glob("*.wav")):
            z.write(wav, f"{top}/recordings/{wav.name}")
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{closed_port()}/", url + "mnist/"])
    monkeypatch.setattr(avmnist, "FSDD_URL", url + "fsdd.zip")
    cache = tmp_path / "cache"
    ds = load_avmnist("test", cache, pca_fit="given", degrade=False)
    assert len(ds) == 10_000 and len(ds.clips) == 300
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(MNIST_MD5)[:2]
    assert sorted(p.name for p in (cache / "fsdd").iterdir()) == ["recordings"]  # zip removed
    assert len(list((cache / "fsdd" / "recordings").iterdir())) == 3000
    again = load_avmnist("test", cache, degrade=False, download=False)
    assert torch.equal(again.clip_index, ds.clip_index)


@needs_shared
def test_fsdd_archive_that_breaks_the_manifest_is_refused(tmp_path, local_server, monkeypatch):
    www, url = local_server
    with zipfile.ZipFile(www / "fsdd.zip", "w") as z:
        z.write(RECORDINGS / "0_george_0.wav", "x/recordings/0_george_0.wav")
    monkeypatch.setattr(avmnist, "FSDD_URL", url + "fsdd.zip")
    with pytest.raises(ValueError, match="does not match the manifest: missing data file .*0_george_1.wav"):
        load_fsdd("test", tmp_path)
    assert list((tmp_path / "fsdd").iterdir()) == []  # neither the archive nor a partial folder
