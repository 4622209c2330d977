"""Speed options of the trainer: mixed precision, compile, channels-last, fused AdamW, GPU."""

import pytest
import torch
from test_train import blobs, mlp, one_thread  # noqa: F401 (autouse fixture)
from torch import nn

from mmcourse.train import evaluate, fit
from mmcourse.train.amp import Precision, resolve_amp
from mmcourse.train.loop import make_optimizer

CPU = torch.device("cpu")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_resolve_amp_on_cpu():
    assert resolve_amp("auto", CPU) is None  # off on the CPU unless asked
    assert resolve_amp(None, CPU) is None and resolve_amp(False, CPU) is None
    assert resolve_amp("bf16", CPU) is torch.bfloat16
    assert resolve_amp(torch.bfloat16, CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="autocast to torch.float16 is not supported on device cpu"):
        resolve_amp("fp16", CPU)
    with pytest.raises(ValueError, match="amp must be 'auto', 'bf16', 'fp16' or None"):
        resolve_amp("int8", CPU)
    p = Precision.create("bf16", CPU)
    assert p.scaler is None and "bfloat16" in repr(p)


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 3),
    )


def image_blobs(n: int = 120) -> dict:
    """Three classes told apart by which third of a 6x6 image is bright."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = 0.3 * torch.randn(n, 1, 6, 6, generator=g)
    for c in range(3):
        x[y == c, :, 2 * c : 2 * c + 2, :] += 1.0
    return {"image": x, "label": y}


def test_channels_last_matches_contiguous():
    data = image_blobs()
    weights = []
    for cl in (False, True):
        model = tiny_cnn()
        fit(model, data, epochs=2, batch_size=30, lr=1e-2, channels_last=cl, device="cpu")
        if cl:
            assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_fused_adamw_only_when_asked_on_cpu():
    opt = make_optimizer(mlp(), 1e-3, 0.0, CPU, fused=None)
    assert not opt.defaults.get("fused")


@pytest.mark.slow
def test_bf16_autocast_on_cpu_learns():
    model = mlp()
    h = fit(model, blobs(), blobs(seed=1), epochs=10, lr=1e-2, batch_size=32, amp="bf16",
            device="cpu")
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert evaluate(model, blobs(seed=1), amp="bf16").accuracy > 0.9


# compile=True on the CPU (inductor): tests/test_train_compile.py, on the course's model


@pytest.mark.gpu
@gpu
def test_gpu_auto_amp_picks_bf16_or_fp16_with_scaler():
    dev = torch.device("cuda")
    p = Precision.create("auto", dev)
    if torch.cuda.is_bf16_supported():
        assert p.dtype is torch.bfloat16 and p.scaler is None
    else:
        assert p.dtype is torch.float16 and p.scaler is not None
    assert make_optimizer(mlp(), 1e-3, 0.0, dev, None).defaults.get("fused")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("amp", ["auto", "fp16", None])
def test_gpu_training_learns(amp):
    model = tiny_cnn()
    data = image_blobs(300)
    h = fit(model, data, data, epochs=15, lr=1e-2, batch_size=50, amp=amp, channels_last=True,
            grad_clip=1.0, schedule="onecycle", device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert evaluate(model, data).accuracy > 0.9


@pytest.mark.gpu
@gpu
def test_gpu_compile_learns():
    model = tiny_cnn()
    data = image_blobs(300)
    h = fit(model, data, epochs=5, lr=1e-2, batch_size=50, compile=True, device="cuda")
    assert h.train_loss[-1] < h.train_loss[0]
