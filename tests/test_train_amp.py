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


@pytest.mark.slow
def test_bf16_autocast_on_the_tri_modal_model():
    """amp="bf16" on the CPU, on the main job's model: its layers really run in bfloat16
    (the encoders' features come out in bf16), and training follows the float32 run closely."""
    from mmcourse.data import load_split
    from mmcourse.trimodal import build_model

    whole = load_split("val").tensors()
    data = {k: v[:64] for k, v in whole.items()}
    run = dict(epochs=3, lr=3e-3, batch_size=32, device="cpu")
    fp32, bf16 = build_model("late"), build_model("late")
    seen = []
    for encoder in bf16.encoders.values():
        encoder.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    h32 = fit(fp32, data, **run)
    h16 = fit(bf16, data, **run, amp="bf16")
    assert torch.bfloat16 in seen  # autocast was on in the training steps
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # master weights stay fp32
    assert h16.train_loss[-1] < h16.train_loss[0]
    # bfloat16 keeps 8 bits of mantissa: the losses agree to about a percent, not to rounding
    assert h16.train_loss == pytest.approx(h32.train_loss, rel=5e-2)
    assert evaluate(bf16, data, amp="bf16").accuracy == pytest.approx(
        evaluate(fp32, data).accuracy, abs=0.1)


def test_channels_last_on_the_tri_modal_model():
    """channels_last=True on the main job's model, which takes the whole batch dict: its image
    convolutions run NHWC, and it trains to the weights of the default layout."""
    from mmcourse.data import load_split
    from mmcourse.train.loop import model_inputs
    from mmcourse.trimodal import build_model

    whole = load_split("val").tensors()
    data = {k: v[:32] for k, v in whole.items()}
    weights, nhwc = [], []
    for cl in (False, True):
        model = build_model("late")
        conv = next(m for m in model.encoders["image"].modules() if isinstance(m, nn.Conv2d))
        conv.register_forward_hook(lambda m, args, out: nhwc.append(
            out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()))
        fit(model, data, epochs=2, batch_size=16, lr=3e-3, channels_last=cl, device="cpu")
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    half = len(nhwc) // 2
    assert not any(nhwc[:half]) and all(nhwc[half:])
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-3, atol=1e-4)
    # a whole-batch model gets its multi-channel image tensors in NHWC as well
    batch = {"image": torch.randn(2, 3, 4, 4), "label": torch.tensor([0, 1])}
    (given,) = model_inputs(batch, None, channels_last=True)
    assert given["image"].is_contiguous(memory_format=torch.channels_last)
    assert not given["image"].is_contiguous() and torch.equal(given["image"], batch["image"])
