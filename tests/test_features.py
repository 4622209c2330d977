"""The cached input features: what each split holds, the audio summary, and standardization
with the training split's statistics only."""

from __future__ import annotations

import pytest
import torch

from mmcourse.data import load_split
from mmcourse.data.features import load_features, summarize_split
from mmcourse.nn import AudioFrontEnd, summarize_frames


@pytest.fixture(scope="module")
def features():
    return load_features(("train", "val", "test"))


def test_every_split_holds_the_inputs_of_every_item(features):
    for split, d in features.items():
        ds = load_split(split, seed=0)
        n = len(ds)
        assert set(d) == {"audio_vec", "image", "tokens", "tokens_len", "label"}
        assert d["audio_vec"].shape == (n, 32 * 16 + 2 * 32)
        assert d["image"].shape == (n, 1, 8, 8)
        assert torch.equal(d["label"], ds.labels)
        assert torch.equal(d["image"], ds.images)
        assert torch.equal(d["tokens"][3, : d["tokens_len"][3]], ds[3]["tokens"])


def test_audio_vec_is_the_standardized_summary_of_each_clip(features):
    ds = load_split("val", seed=0)
    front_end = AudioFrontEnd(n_mels=32, hop_length=80, normalize=False).eval()
    raw = {s: summarize_split(load_split(s, seed=0), front_end)["audio_vec"] for s in ("train", "val")}
    mu, sigma = raw["train"].mean(0), raw["train"].std(0)
    torch.testing.assert_close(features["val"]["audio_vec"], (raw["val"] - mu) / (sigma + 1e-5))
    # one clip by hand: its own samples, no padding
    item = ds[5]
    with torch.no_grad():
        mel, mel_len = front_end(item["audio"][None], torch.tensor([len(item["audio"])]))
    one = (summarize_frames(mel, mel_len, 16)[0] - mu) / (sigma + 1e-5)
    torch.testing.assert_close(features["val"]["audio_vec"][5], one, rtol=1e-4, atol=1e-4)


def test_standardized_with_the_training_statistics_only(features):
    train, test = features["train"]["audio_vec"], features["test"]["audio_vec"]
    torch.testing.assert_close(train.mean(0), torch.zeros(train.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(train.std(0), torch.ones(train.shape[1]), atol=1e-3, rtol=0)
    assert test.mean(0).abs().max() > 0.05  # the test split keeps its own offset: no leak
    alone = load_features(("test",))  # the training split is still the reference
    torch.testing.assert_close(alone["test"]["audio_vec"], test)
    unscaled = load_features(("test",), standardize=False)["test"]["audio_vec"]
    assert (unscaled - test).abs().max() > 1  # dB values, not standardized


def test_knobs_reach_the_data():
    quiet = load_features(("val",), snr_db=float("inf"), standardize=False)["val"]["audio_vec"]
    noisy = load_features(("val",), standardize=False)["val"]["audio_vec"]
    assert not torch.allclose(quiet, noisy)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="split names among"):
        load_features(("train", "dev"))
    with pytest.raises(TypeError, match="sequence of split names"):
        load_features("train")
    with pytest.raises(ValueError, match="positive int number of frames"):
        load_features(("val",), frames=0)
