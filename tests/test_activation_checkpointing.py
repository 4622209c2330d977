"""Activation checkpointing in the encoders: the same outputs and gradients with it as without
(dropout included: the recomputation replays the random state), BatchNorm's running statistics
updated once, and less memory where there are several blocks to checkpoint."""

import pytest
import torch
from test_train import one_thread  # noqa: F401 (autouse fixture)
from torch import nn

from mmcourse.data import load_split
from mmcourse.nn import (
    AudioEncoder,
    AudioFrontEnd,
    ImageEncoder,
    TextEncoder,
    activation_checkpointing,
)
from mmcourse.nn.activation_checkpointing import checkpointed
from mmcourse.train.memory import PeakMemory


@pytest.fixture(scope="module")
def batch() -> dict:
    whole = load_split("val").tensors()
    return {k: v[:24] for k, v in whole.items()}


ENCODERS = {
    "image, GroupNorm": lambda: ImageEncoder(16, width=8, dropout=0.2),
    "image, BatchNorm": lambda: ImageEncoder(16, width=8, norm="batch"),
    "audio CNN, strided": lambda: AudioEncoder(16, AudioFrontEnd(normalize=False),
                                               strided_stem=True, dropout=0.2),
    "audio CNN": lambda: AudioEncoder(16, AudioFrontEnd(), channels=(4, 8)),
    "audio LSTM": lambda: AudioEncoder(16, AudioFrontEnd(), backbone="sequence"),
    "text LSTM": lambda: TextEncoder(40, 16, backbone="lstm", embed_dim=16, hidden_dim=16,
                                     dropout=0.2),
    "text Transformer": lambda: TextEncoder(40, 16, backbone="transformer", embed_dim=16,
                                            num_layers=3, dropout=0.2),
    "text bag": lambda: TextEncoder(40, 16, backbone="bag"),
}
ARGS = {"image": ("image",), "audio": ("audio", "audio_len"), "text": ("tokens", "tokens_len")}


def run(make, args: tuple, checkpoint: bool) -> tuple[torch.Tensor, list, list]:
    torch.manual_seed(0)
    encoder = make()
    encoder.checkpoint_activations = checkpoint
    torch.manual_seed(1)  # the same dropout masks in both runs
    out = encoder(*args)
    (out.square().mean() + out.sum() / 100).backward()
    grads = [p.grad for p in encoder.parameters()]
    return out.detach(), grads, [b.clone() for b in encoder.buffers()]


@pytest.mark.parametrize("name", list(ENCODERS))
def test_gradients_equal_with_and_without_checkpointing(name, batch):
    args = tuple(batch[k] for k in ARGS[name.split()[0].rstrip(",")])
    out, grads, buffers = run(ENCODERS[name], args, checkpoint=False)
    out_c, grads_c, buffers_c = run(ENCODERS[name], args, checkpoint=True)
    torch.testing.assert_close(out_c, out)
    assert all(g is not None for g in grads) and len(grads) == len(grads_c)
    for g, g_c in zip(grads, grads_c, strict=True):
        torch.testing.assert_close(g_c, g, rtol=1e-5, atol=1e-7)
    for b, b_c in zip(buffers, buffers_c, strict=True):  # BatchNorm statistics: updated once
        assert torch.equal(b_c, b)


def test_batchnorm_statistics_would_be_counted_twice_without_the_guard():
    """torch's checkpoint alone runs BatchNorm's forward twice in training: the running mean
    moves twice. ``checkpointed`` restores the statistics after the recomputation."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4, requires_grad=True)
    plain, guarded, bare = (nn.BatchNorm2d(3) for _ in range(3))
    plain(x).sum().backward()
    checkpointed(guarded, x).sum().backward()
    torch.utils.checkpoint.checkpoint(bare, x, use_reentrant=False).sum().backward()
    assert torch.equal(guarded.running_mean, plain.running_mean)
    assert guarded.num_batches_tracked.item() == 1
    assert not torch.allclose(bare.running_mean, plain.running_mean)
    assert bare.num_batches_tracked.item() == 2


def test_checkpointing_only_where_gradients_are_recorded(batch, monkeypatch):
    encoder = ImageEncoder(16, width=8, checkpoint_activations=True)
    calls = []
    original = activation_checkpointing.checkpoint

    def recorded(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(activation_checkpointing, "checkpoint", recorded)
    with torch.no_grad():
        encoder(batch["image"])
    assert calls == []  # evaluation: nothing to keep for a backward pass
    encoder(batch["image"])
    assert len(calls) == 3  # one segment per block
    encoder.checkpoint_activations = False
    encoder(batch["image"])
    assert len(calls) == 3


def test_checkpointing_each_transformer_layer_saves_memory(batch):
    """Six layers: with checkpointing, the backward holds the layers' inputs and one layer's
    activations at a time, instead of every layer's activations."""
    peaks = {}
    for checkpoint in (False, True):
        torch.manual_seed(0)
        encoder = TextEncoder(40, 16, backbone="transformer", embed_dim=32, num_layers=6,
                              checkpoint_activations=checkpoint)
        with PeakMemory() as mem:
            encoder(batch["tokens"], batch["tokens_len"]).sum().backward()
        peaks[checkpoint] = mem.peak
    assert peaks[True] < 0.6 * peaks[False], peaks
