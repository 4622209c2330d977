"""LoRA: zero-initialized B leaves the model unchanged, merged equals unmerged, only A and B
train, unmerge restores W, and bad arguments say what was expected."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.nn import LoRALinear, apply_lora, lora_layers, merge_lora, unmerge_lora

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 16), nn.ReLU(),
        nn.Sequential(nn.Linear(16, 16), nn.Tanh()),
        nn.Linear(16, 3),
    ).double()


def _randomize_b(model: nn.Module, seed: int = 1) -> None:
    """B starts at zero; give it values so that the update is not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g, dtype=torch.float64))


def test_zero_initialized_b_gives_the_original_model():
    model, x = _model(), torch.randn(5, 12, dtype=torch.float64)
    before = model(x)
    names = apply_lora(model, r"0|2\.0|3", r=4, alpha=8)
    assert names == ["0", "2.0", "3"]
    for _, layer in lora_layers(model):
        assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(r=st.integers(1, 8), alpha=st.floats(0.5, 32.0), n_in=st.integers(1, 20),
       n_out=st.integers(1, 20), bias=st.booleans(), seed=st.integers(0, 1000))
def test_layer_is_w_plus_scaled_ba_and_merged_equals_unmerged(r, alpha, n_in, n_out, bias, seed):
    torch.manual_seed(seed)
    base = nn.Linear(n_in, n_out, bias=bias).double()
    W0 = base.weight.detach().clone()
    layer = LoRALinear(base, r=r, alpha=alpha).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 2, n_in, dtype=torch.float64)  # any leading dimensions
    expected = F.linear(x, W0 + (alpha / r) * layer.lora_B @ layer.lora_A, base.bias)
    unmerged = layer(x)
    torch.testing.assert_close(unmerged, expected)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), unmerged)
    layer.unmerge()
    torch.testing.assert_close(base.weight, W0)
    torch.testing.assert_close(layer(x), unmerged)


def test_merged_model_equals_unmerged_and_unmerge_restores_the_weights():
    model = _model()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_lora(model, r".*", r=3, alpha=6)
    _randomize_b(model)
    model.eval()
    x = torch.randn(7, 12, dtype=torch.float64)
    unmerged = model(x)
    merge_lora(model)
    assert all(layer.merged for _, layer in lora_layers(model))
    torch.testing.assert_close(model(x), unmerged)
    merge_lora(model)  # merging twice does not add the update twice
    torch.testing.assert_close(model(x), unmerged)
    unmerge_lora(model)
    unmerge_lora(model)
    for name, layer in lora_layers(model):
        torch.testing.assert_close(layer.base.weight, weights[f"{name}.weight"])
    torch.testing.assert_close(model(x), unmerged)


def test_only_a_and_b_train_and_the_count_is_r_times_in_plus_out():
    model = _model()
    total = sum(p.numel() for p in model.parameters())
    apply_lora(model, r"0|3", r=2, alpha=4)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(trainable) == ["0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B"]
    assert sum(p.numel() for p in trainable.values()) == 2 * (12 + 16) + 2 * (16 + 3)
    assert sum(p.numel() for p in model.parameters()) == total + 2 * (12 + 16) + 2 * (16 + 3)

    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD(trainable.values(), lr=0.1)
    x, y = torch.randn(8, 12, dtype=torch.float64), torch.randint(0, 3, (8,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.grad is None
            torch.testing.assert_close(p, frozen[n], rtol=0, atol=0)
    assert torch.count_nonzero(model[0].lora_B) > 0  # B moved away from zero


def test_a_merged_layer_refuses_to_train():
    layer = LoRALinear(nn.Linear(4, 3), r=2).merge()
    x = torch.randn(2, 4)
    with pytest.raises(RuntimeError, match="unmerge"):
        layer(x)  # training mode, gradients on: A and B would silently not learn
    with torch.no_grad():
        layer(x)  # inference is fine
    layer.eval()(x)
    layer.train().unmerge()(x).sum().backward()
    assert layer.lora_A.grad is not None


def test_freeze_false_leaves_other_parameters_trainable():
    model = _model()
    apply_lora(model, "3", r=1, freeze=False)
    assert model[0].weight.requires_grad and not model[3].base.weight.requires_grad


def test_training_then_merging_matches_a_plain_linear_model():
    """The merged weights, copied into a fresh model without LoRA, give the same outputs."""
    model = _model()
    apply_lora(model, r".*", r=2, alpha=2)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.randint(0, 3, (16,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    adapted = model(x).detach()
    merge_lora(model)
    plain = _model(seed=5)
    with torch.no_grad():
        for name, layer in lora_layers(model):
            target = plain.get_submodule(name)
            target.weight.copy_(layer.base.weight)
            target.bias.copy_(layer.base.bias)
    torch.testing.assert_close(plain(x), adapted)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="rank r to be a positive int"):
        apply_lora(_model(), ".*", r=0)
    with pytest.raises(ValueError, match="rank r to be a positive int"):
        LoRALinear(nn.Linear(3, 3), r=-1)
    with pytest.raises(ValueError, match="positive alpha"):
        LoRALinear(nn.Linear(3, 3), r=1, alpha=0)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(3, 3, 1), r=1)
    with pytest.raises(ValueError, match=r"no nn.Linear .* 'encoder'.*\['0', '2.0', '3'\]"):
        apply_lora(_model(), "encoder", r=2)
    with pytest.raises(ValueError, match="wrap it as LoRALinear"):
        apply_lora(nn.Linear(3, 3), ".*", r=1)
    model = _model()
    apply_lora(model, "3", r=2)
    with pytest.raises(ValueError, match="already carry LoRA"):
        apply_lora(model, "3", r=2)
    with pytest.raises(ValueError, match="no nn.Linear"):
        apply_lora(model, r"3\.base", r=2)  # the wrapped layer's own Linear is not offered
    assert apply_lora(model, r"0|2\.0", r=2) == ["0", "2.0"]


@pytest.mark.gpu
@gpu
def test_merge_on_the_gpu_equals_unmerged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).cuda()
    apply_lora(model, ".*", r=4, alpha=8)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.normal_(std=0.1)
    x = torch.randn(32, 64, device="cuda")
    model.eval()
    unmerged = model(x)
    merge_lora(model)
    torch.testing.assert_close(model(x), unmerged, rtol=1e-4, atol=1e-4)
