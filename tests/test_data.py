"""The embedded course data (mmcourse.data): files, splits, items, degradations, batching."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcourse.data import (
    CLASSES,
    DEFAULTS,
    SAMPLE_RATE,
    DataFileError,
    Vocab,
    collate,
    load_split,
    verify,
)
from mmcourse.data.integrity import FILES, expected, manifest_problems, read_manifest, sha256
from mmcourse.data.spoken_digits import load_raw

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def splits():
    return {s: load_split(s, seed=0) for s in SPLITS}


@pytest.fixture(scope="module")
def raw():
    return load_raw()


# -- files --------------------------------------------------------------------------------


def test_shipped_files_verify_and_stay_small():
    assert verify() == []
    sums = expected()
    assert set(sums) == {"digit_images.npz", "spoken_digits.flac", "spoken_digits.npz"}
    total = sum((FILES / name).stat().st_size for name in sums)
    assert total < 10e6, f"shipped data is {total / 1e6:.1f} MB, over the 10 MB budget"


def test_repo_checksums_match_the_shipped_list():
    repo_list = REPO / "data" / "checksums.sha256"
    if not repo_list.is_file():
        pytest.skip("not a repository checkout")
    assert repo_list.read_text() == (FILES / "spoken_digits.sha256").read_text()
    for name, digest in expected().items():
        assert sha256(FILES / name) == digest


def test_data_is_found_through_the_package_not_the_repo():
    import mmcourse.data.integrity as integrity

    assert FILES == Path(integrity.__file__).resolve().parent / "files"


@pytest.mark.parametrize("name", ["spoken_digits.flac", "spoken_digits.npz", "digit_images.npz"])
def test_a_corrupted_file_is_an_error_naming_it(tmp_path, name):
    copy = tmp_path / "files"
    shutil.copytree(FILES, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the middle
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=name):
        load_split("test", files=copy)
    problems = verify(copy)
    assert len(problems) == 1 and name in problems[0] and "corrupted" in problems[0]


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    copy = tmp_path / "files"
    shutil.copytree(FILES, copy)
    (copy / "spoken_digits.flac").unlink()
    with pytest.raises(DataFileError, match="missing data file .*spoken_digits.flac"):
        load_split("val", files=copy)
    assert any("spoken_digits.flac" in p for p in verify(copy))
    (copy / "spoken_digits.sha256").unlink()
    assert "checksum" in verify(copy)[0]


def test_one_manifest_reader_for_plain_and_gzip_lists(tmp_path):
    import gzip
    import re

    (tmp_path / "a.wav").write_bytes(b"a")
    (tmp_path / "b.wav").write_bytes(b"b")
    text = "".join(f"{sha256(tmp_path / n)}  {n}\n" for n in ("a.wav", "b.wav"))
    (tmp_path / "list.txt").write_text(text)
    (tmp_path / "list.txt.gz").write_bytes(gzip.compress(text.encode()))
    sums = read_manifest(tmp_path / "list.txt")
    assert sums == read_manifest(tmp_path / "list.txt.gz", re.compile(r"^[a-z]\.wav$"))
    assert list(sums) == ["a.wav", "b.wav"] and manifest_problems(tmp_path, sums) == []
    (tmp_path / "a.wav").write_bytes(b"A")
    (tmp_path / "b.wav").unlink()
    assert manifest_problems(tmp_path, sums) == [
        f"corrupted data file {tmp_path / 'a.wav'} (its SHA-256 differs from the checksum list)",
        f"missing data file {tmp_path / 'b.wav'}",
    ]
    with pytest.raises(ValueError, match=r"list.txt, line 1: expected '<sha256>  \^\[0-9\]\$'"):
        read_manifest(tmp_path / "list.txt", re.compile(r"^[0-9]$"))
    (tmp_path / "bad.txt").write_text("abc  a.wav\n")
    with pytest.raises(ValueError, match="bad.txt, line 1: expected '<sha256>  <name>', got 'abc  a.wav'"):
        read_manifest(tmp_path / "bad.txt")
    with pytest.raises(FileNotFoundError, match="missing checksum list"):
        read_manifest(tmp_path / "absent.txt")


def test_an_intact_copy_loads_the_same_data(tmp_path, splits):
    copy = tmp_path / "files"
    shutil.copytree(FILES, copy)
    ds = load_split("test", files=copy)
    assert torch.equal(ds.images, splits["test"].images)
    assert torch.equal(ds.audio, splits["test"].audio)


# -- splits -------------------------------------------------------------------------------


def test_speakers_are_disjoint_between_splits(splits):
    spk = {s: set(ds.speaker) for s, ds in splits.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not spk[a] & spk[b], f"{a} and {b} share speakers {spk[a] & spk[b]}"
    assert sorted(spk["test"]) == splits["test"].speakers
    assert len(spk["train"]) >= 3 * len(spk["test"]) > 0


def test_images_are_disjoint_and_cover_load_digits(splits, raw):
    idx = {s: set(ds.image_index.tolist()) for s, ds in splits.items()}
    assert sum(len(v) for v in idx.values()) == len(raw.images) == 1797
    assert set.union(*idx.values()) == set(range(1797))
    for s, ds in splits.items():
        assert len(idx[s]) == len(ds), f"{s} uses an image twice"


def test_every_item_pairs_views_of_one_digit(splits, raw):
    for ds in splits.values():
        assert np.array_equal(raw.clip_label[ds.clip_index], ds.labels.numpy())
        assert np.array_equal(raw.image_labels[ds.image_index], ds.labels.numpy())


def test_images_are_sklearn_load_digits(raw):
    from sklearn.datasets import load_digits

    d = load_digits()
    assert np.array_equal(raw.images, d.images.astype(np.uint8))
    assert np.array_equal(raw.image_labels, d.target)


def test_every_class_is_in_every_split(splits):
    for s, ds in splits.items():
        counts = torch.bincount(ds.labels, minlength=10)
        assert counts.min() >= 0.8 * counts.float().mean(), f"{s} is unbalanced: {counts}"


# -- items --------------------------------------------------------------------------------


def test_item_shapes_dtypes_and_ranges(splits):
    ds = splits["train"]
    assert len(CLASSES) == 10 and SAMPLE_RATE == 8000
    for i in (0, len(ds) // 2, -1):
        item = ds[i]
        assert set(item) == {"image", "audio", "text", "tokens", "label", "speaker"}
        assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["audio"].dim() == 1 and item["audio"].dtype == torch.float32
        assert 0.15 * SAMPLE_RATE < len(item["audio"]) < 1.0 * SAMPLE_RATE
        assert item["tokens"].dtype == torch.int64 and item["tokens"].dim() == 1
        assert item["tokens"].tolist() == ds.vocab.encode(item["text"])
        assert isinstance(item["label"], int) and 0 <= item["label"] <= 9
        assert isinstance(item["speaker"], str) and "+" in item["speaker"]


def test_clean_items_are_undegraded(raw):
    ds = load_split("test", clean=True)
    img = torch.from_numpy(raw.images[ds.image_index[:5]]).float()[:, None] / 16
    assert torch.equal(ds.images[:5], img)
    clip = int(ds.clip_index[0])
    s, m = raw.clip_offset[clip], raw.clip_length[clip]
    expected_wave = torch.from_numpy(raw.audio[s : s + m].astype(np.float32) / 32768)
    assert torch.equal(ds[0]["audio"], expected_wave)
    assert 0.85 < ds[0]["audio"].abs().max() <= 0.9 + 1e-6  # peak-normalized when made
    from mmcourse.data.text import candidates

    for i in range(len(ds)):  # clean text names the digit
        assert candidates(ds.text[i]) == {int(ds.labels[i])}, ds.text[i]


def test_index_errors(splits):
    ds = splits["val"]
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    with pytest.raises(TypeError, match="int index"):
        ds["0"]
    assert ds[-1]["label"] == int(ds.labels[-1])


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="split 'train', 'val' or 'test'"):
        load_split("training")
    with pytest.raises(ValueError, match="seed"):
        load_split("val", seed=-1)
    with pytest.raises(ValueError, match="text_reveal"):
        load_split("val", text_reveal=1.5)
    with pytest.raises(ValueError, match="occlusion side"):
        load_split("val", image_occlusion=9)
    with pytest.raises(TypeError, match="snr_db"):
        load_split("val", snr_db="loud")


# -- degradations -------------------------------------------------------------------------


def test_same_seed_same_tensors_and_other_seed_differs(splits):
    a, b, c = splits["test"], load_split("test", seed=0), load_split("test", seed=1)
    for key in ("images", "audio", "labels"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert a.text == b.text
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.audio, c.audio)
    assert a.text != c.text
    assert torch.equal(a.labels, c.labels) and a.speaker == c.speaker  # splits are fixed


def test_audio_noise_has_the_asked_snr(raw):
    clean = load_split("val", clean=True).audio.numpy().astype(np.float64)
    for snr in (-6.0, 0.0, 10.0):
        noisy = load_split("val", snr_db=snr).audio.numpy().astype(np.float64)
        measured = 10 * math.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
        assert abs(measured - snr) < 0.5, (snr, measured)


def test_knobs_scale_the_same_draws():
    a = load_split("val", snr_db=0.0).audio - load_split("val", clean=True).audio
    b = load_split("val", snr_db=20.0).audio - load_split("val", clean=True).audio
    ratio = (a / b)[b.abs() > 1e-4]  # same noise, 10x the amplitude per clip
    torch.testing.assert_close(ratio.median(), torch.tensor(10.0), rtol=1e-3, atol=0)


def test_image_degradations_do_what_they_say(raw):
    clean = load_split("train", clean=True).images
    erased = load_split("train", image_noise=0.0, image_occlusion=3).images
    changed = (erased != clean).flatten(1)
    assert (changed.sum(1) <= 9).all() and (erased[erased != clean] == 0).all()
    noisy = load_split("train", image_noise=0.2, image_occlusion=0).images
    assert (noisy - clean).abs().mean() > 0.05


def test_text_reveal_controls_exact_descriptions():
    from mmcourse.data.text import candidates

    def exact(ds):
        return np.mean([len(candidates(t)) == 1 for t in ds.text])

    none = load_split("train", text_reveal=0.0, text_typo=0.0)
    half = load_split("train", text_reveal=0.5, text_typo=0.0)
    assert exact(none) < 0.15 < exact(half) < 0.8 <= exact(load_split("train", clean=True))
    for ds in (none, half):
        for t, y in zip(ds.text, ds.labels.tolist(), strict=True):
            assert y in candidates(t), (t, y)  # every description is true


# -- collate and tensors ------------------------------------------------------------------


def test_collate_pads_and_reports_lengths(splits):
    ds = splits["train"]
    items = [ds[i] for i in range(5)]
    batch = collate(items)
    lengths = [len(it["audio"]) for it in items]
    assert batch["image"].shape == (5, 1, 8, 8)
    assert batch["audio"].shape == (5, max(lengths))
    assert batch["audio_len"].tolist() == lengths
    assert batch["tokens_len"].tolist() == [len(it["tokens"]) for it in items]
    for i, it in enumerate(items):
        assert torch.equal(batch["audio"][i, : lengths[i]], it["audio"])
        assert (batch["audio"][i, lengths[i] :] == 0).all()
        n = len(it["tokens"])
        assert torch.equal(batch["tokens"][i, :n], it["tokens"])
        assert (batch["tokens"][i, n:] == ds.vocab.pad_id).all()
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [
        it["label"] for it in items
    ]
    assert batch["text"] == [it["text"] for it in items]
    assert batch["speaker"] == [it["speaker"] for it in items]


def test_collate_rejects_bad_batches(splits):
    with pytest.raises(ValueError, match="non-empty"):
        collate([])
    a, b = splits["train"][0], splits["train"][1]
    del b["text"]
    with pytest.raises(ValueError, match="keys"):
        collate([a, b])


def test_tensors_equals_collate_of_all_items(splits):
    ds = splits["val"]
    whole = ds.tensors("cpu")
    ref = collate([ds[i] for i in range(len(ds))])
    assert whole.keys() == ref.keys()
    for k, v in ref.items():
        assert torch.equal(whole[k], v) if isinstance(v, torch.Tensor) else whole[k] == v


def test_works_with_a_dataloader(splits):
    loader = torch.utils.data.DataLoader(splits["val"], batch_size=16, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["audio"].shape[0] == 16 and batch["tokens"].shape[0] == 16


# -- vocabulary ---------------------------------------------------------------------------


def test_vocab_round_trip(splits):
    v = splits["train"].vocab
    assert v.pad_id == 0 and v.unk_id == 1 and len(v) > 20
    for text in splits["test"].text:
        ids = v.encode(text)
        words = text.split()
        assert v.decode(ids) == " ".join(w if w in v else "<unk>" for w in words)
    assert v.decode(torch.tensor([v.encode("an even number")[0], 0, 0])) == "an"


def test_vocab_unknowns_and_build():
    v = Vocab.build(["b a", "a c", "a"], min_freq=1)
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c"]  # most frequent first, ties a-z
    assert v.encode("A, b! zzz") == [2, 3, 1]
    assert Vocab.build(["b a", "a c", "a"], min_freq=2).itos == ["<pad>", "<unk>", "a"]
    with pytest.raises(ValueError, match="token ids"):
        v.decode([99])
    with pytest.raises(ValueError, match="lower-case words"):
        Vocab(["Hello world"])
    with pytest.raises(TypeError, match="str"):
        v.encode(3)


def test_defaults_are_documented():
    readme = REPO / "data" / "README.md"
    if not readme.is_file():
        pytest.skip("not a repository checkout")
    text = readme.read_text()
    for key, value in DEFAULTS.items():
        assert f"`{key}`" in text and str(value) in text, f"data/README.md lacks {key}={value}"
