"""ImageEncoder: shapes for 8×8 and 28×28, batch independence, gradients, errors, learning;
and the references behind the convolution chapter's checkers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse import check
from mmcourse.check.conv import receptive_field_reference
from mmcourse.nn import ImageEncoder


def _encoder(**kwargs) -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder(**kwargs)


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (4, 4), (8, 12), (31, 17)])
@pytest.mark.parametrize("out_dim", [1, 64])
def test_output_shape(size, out_dim):
    enc = _encoder(out_dim=out_dim, width=8)
    y = enc(torch.rand(3, 1, *size))
    assert y.shape == (3, out_dim)
    assert enc.out_dim == out_dim
    assert torch.isfinite(y).all()


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    grid=st.integers(1, 3),
    norm=st.sampled_from(["group", "batch", "none"]),
)
def test_any_size_from_4x4_gives_the_same_width(b, h, w, grid, norm):
    enc = _encoder(out_dim=5, width=2, grid=grid, norm=norm).eval()
    y = enc(torch.rand(b, 1, h, w))
    assert y.shape == (b, 5)
    assert torch.isfinite(y).all()


def test_three_channels_and_grid():
    enc = _encoder(out_dim=10, in_channels=3, width=4, grid=3)
    assert enc.proj.in_features == 2 * 4 * 3 * 3
    assert enc(torch.rand(2, 3, 28, 28)).shape == (2, 10)


def test_same_width_for_8x8_and_28x28():
    enc = _encoder(out_dim=32, width=8).eval()
    a, b = enc(torch.rand(2, 1, 8, 8)), enc(torch.rand(2, 1, 28, 28))
    assert a.shape == b.shape == (2, 32)


@pytest.mark.parametrize(
    ("size", "norm", "mode"),
    [((8, 8), "group", "train"), ((28, 28), "group", "train"), ((8, 8), "batch", "eval")],
)
def test_batch_independence(size, norm, mode):
    """Each image's features depend on that image alone (for BatchNorm: in eval mode)."""
    enc = _encoder(out_dim=16, width=8, norm=norm).double().train(mode == "train")
    x = torch.rand(5, 1, *size, dtype=torch.float64)
    whole = enc(x)
    one_by_one = torch.cat([enc(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(whole, one_by_one)
    # changing one image changes only its own row
    x2 = x.clone()
    x2[2] = torch.rand_like(x2[2])
    changed = enc(x2)
    torch.testing.assert_close(changed[[0, 1, 3, 4]], whole[[0, 1, 3, 4]])
    assert not torch.allclose(changed[2], whole[2])


def test_group_norm_has_no_train_eval_gap():
    enc = _encoder(out_dim=8, width=4)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(enc.train()(x), enc.eval()(x))


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_gradients_reach_every_parameter_and_the_input(norm):
    enc = _encoder(out_dim=8, width=4, dropout=0.1, norm=norm)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    enc(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_gradcheck_in_eval_mode():
    enc = _encoder(out_dim=3, width=2).double().eval()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    # max pooling is piecewise linear: random inputs have no ties, so gradcheck holds
    assert torch.autograd.gradcheck(enc, (x,), eps=1e-6, atol=1e-5)


def test_channels_last_gives_the_same_features():
    enc = _encoder(out_dim=16, width=8).eval()
    x = torch.rand(3, 1, 28, 28)
    expected = enc(x)
    enc_cl = enc.to(memory_format=torch.channels_last)
    got = enc_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (
            torch.rand(2, 8, 8),
            ValueError,
            r"expected images of shape \(B, 1, H, W\), got \(2, 8, 8\).*unsqueeze",
        ),
        (torch.rand(8, 8), ValueError, r"expected images of shape \(B, 1, H, W\), got \(8, 8\)"),
        (torch.rand(2, 1, 1, 8, 8), ValueError, r"\(B, 1, H, W\), got \(2, 1, 1, 8, 8\)"),
        (
            torch.rand(2, 3, 8, 8),
            ValueError,
            r"expected images of shape \(B, 1, H, W\), got \(2, 3, 8, 8\)",
        ),
        (torch.rand(2, 1, 3, 8), ValueError, r"at least 4×4 pixels, got 3×8"),
        (
            torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
            TypeError,
            r"floating-point images, got dtype torch.uint8",
        ),
        (torch.rand(2, 1, 8, 8).numpy(), TypeError, r"as a tensor"),
    ],
)
def test_bad_input_gives_a_clear_error(x, error, match):
    with pytest.raises(error, match=match):
        _encoder(width=4)(x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"out_dim": 0},
        {"in_channels": -1},
        {"width": 2.5},
        {"grid": 0},
        {"out_dim": True},
        {"dropout": 1.0},
        {"norm": "layer"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ImageEncoder(**kwargs)


def _tiny_task(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright 2×2 square on noise, label 1 if it sits in the left half of the image."""
    x = 0.1 * torch.rand(n, 1, size, size, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        r = int(torch.randint(0, size - 1, (1,), generator=gen))
        half = size // 2
        c = int(torch.randint(0, half - 1, (1,), generator=gen)) + (0 if y[i] else half)
        x[i, 0, r : r + 2, c : c + 2] = 1.0
    return x, y


@pytest.mark.parametrize("size", [8, 28])
def test_learns_a_tiny_task(size):
    gen = torch.Generator().manual_seed(0)
    x, y = _tiny_task(64, size, gen)
    x_test, y_test = _tiny_task(128, size, gen)
    torch.manual_seed(0)
    model = nn.Sequential(ImageEncoder(out_dim=16, width=4), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.eval()
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    model.train()
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert after < 0.25 * before
    assert acc >= 0.9, f"test accuracy {acc:.2f} on a task a CNN solves easily"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    enc = _encoder(out_dim=16, width=8).eval()
    x = torch.rand(4, 1, 28, 28)
    expected = enc(x)
    enc_gpu = enc.to("cuda", memory_format=torch.channels_last)
    with torch.backends.cudnn.flags(allow_tf32=False):
        got = enc_gpu(x.to("cuda", memory_format=torch.channels_last)).cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# --- the references behind the chapter's exercise checkers -----------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)), max_size=4))
def test_receptive_field_reference_matches_autograd(layers):
    """The formula equals the number of input pixels that reach one output pixel's gradient."""
    n = 400  # wider than any field these layers can reach (at most 361)
    x = torch.zeros(1, 1, n, requires_grad=True)
    h = x
    for k, s, d in layers:
        h = F.conv1d(h, torch.ones(1, 1, k), stride=s, dilation=d)
    if h.shape[-1] == 0:
        return
    h[0, 0, 0].backward()
    support = (x.grad[0, 0] != 0).nonzero().flatten()
    seen = int(support.max() - support.min() + 1)
    assert seen == receptive_field_reference(layers)


def _max_pool_unfold(x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    x = F.pad(x, (padding,) * 4, value=float("-inf"))
    return x.unfold(2, k, stride).unfold(3, k, stride).amax(dim=(-2, -1))


def _max_pool_zero_pad(x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    x = F.pad(x, (padding,) * 4)  # the classic slip: zeros instead of -inf
    return x.unfold(2, k, stride).unfold(3, k, stride).amax(dim=(-2, -1))


def test_checkers_pass_correct_answers():
    assert check.receptive_field(receptive_field_reference).startswith("✓")
    assert check.max_pool2d_padded(_max_pool_unfold).startswith("✓")


def test_checkers_catch_classic_mistakes():
    with pytest.raises(check.CheckFailure, match="expected 6"):
        check.receptive_field(lambda layers: 1 + sum(d * (k - 1) for k, s, d in layers))
    with pytest.raises(check.CheckFailure, match="entries differ"):
        check.max_pool2d_padded(_max_pool_zero_pad)
