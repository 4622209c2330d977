"""Fusion methods: shapes, missing modalities, the low-rank/tensor relation, gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn.fusion import (
    METHODS,
    ConcatFusion,
    GatedFusion,
    LateFusion,
    LinearFusion,
    LowRankFusion,
    TensorFusion,
    make_fusion,
)

DIMS = {"image": 5, "audio": 4, "text": 3}


def _feats(B=6, dims=DIMS, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, d, generator=g, dtype=dtype) for m, d in dims.items()}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_shapes_with_every_subset_of_modalities(method):
    fusion = make_fusion(method, DIMS, width=8, num_classes=10).double()
    feats = _feats()
    for r in range(1, 4):
        for subset in itertools.combinations(DIMS, r):
            out = fusion({m: feats[m] for m in subset})
            assert out.shape == (6, fusion.out_dim)
            assert torch.isfinite(out).all(), (method, subset)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_none_means_missing(method):
    fusion = make_fusion(method, DIMS, width=8).double().eval()
    feats = _feats()
    torch.testing.assert_close(fusion({**feats, "audio": None}), fusion({k: v for k, v in feats.items() if k != "audio"}))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_gradients_reach_every_modality(method):
    fusion = make_fusion(method, DIMS, width=8).double()
    feats = {m: f.requires_grad_() for m, f in _feats().items()}
    fusion(feats).pow(2).sum().backward()
    for m, f in feats.items():
        assert f.grad is not None and f.grad.abs().sum() > 0, f"no gradient reaches {m} ({method})"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_errors_name_what_was_expected(method):
    fusion = make_fusion(method, DIMS, width=8)
    with pytest.raises(ValueError, match="at least one"):
        fusion({})
    with pytest.raises(KeyError, match="unknown modalities"):
        fusion({"smell": torch.randn(2, 3)})
    with pytest.raises(ValueError, match=r"expected audio features of shape \(B, 4\)"):
        fusion({"image": torch.randn(2, 5), "audio": torch.randn(2, 7)})


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="expected one of"):
        make_fusion("magic", DIMS)


def test_concat_is_concatenation_with_zeros_for_missing():
    feats = _feats()
    out = ConcatFusion(DIMS)({"image": feats["image"], "text": feats["text"]})
    expected = torch.cat([feats["image"], torch.zeros(6, 4, dtype=torch.float64), feats["text"]], dim=1)
    torch.testing.assert_close(out, expected)


def test_linear_fusion_is_the_weighted_sum_of_projections():
    fusion = LinearFusion(DIMS, 7).double()
    with torch.no_grad():
        fusion.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    feats = _feats()
    w = torch.softmax(fusion.logits, 0)
    expected = sum(w[i] * fusion.proj[m](feats[m]) for i, m in enumerate(DIMS))
    torch.testing.assert_close(fusion(feats), expected)
    weights = fusion.weights()
    assert math.isclose(sum(weights.values()).item(), 1.0, rel_tol=1e-9)
    # without text the remaining weights are renormalized to sum to one
    w2 = torch.softmax(fusion.logits[:2], 0)
    expected2 = w2[0] * fusion.proj["image"](feats["image"]) + w2[1] * fusion.proj["audio"](feats["audio"])
    torch.testing.assert_close(fusion({"image": feats["image"], "audio": feats["audio"]}), expected2)


def test_gated_fusion_gates_sum_to_one_and_skip_missing():
    fusion = GatedFusion(DIMS, 8).double()
    feats = _feats()
    fusion({"image": feats["image"], "text": feats["text"]})
    g = fusion.last_gates  # (B, M, D): one gate per sample, modality and dimension
    assert g.shape == (6, 3, 8)
    torch.testing.assert_close(g.sum(1), torch.ones(6, 8, dtype=torch.float64))
    assert (g[:, 1] == 0).all()


@pytest.mark.parametrize("renormalize", [False, True])
def test_gated_fusion_every_subset_and_gradients(renormalize):
    fusion = GatedFusion(DIMS, 8, renormalize=renormalize).double()
    feats = {m: f.requires_grad_() for m, f in _feats().items()}
    for r in range(1, 4):
        for subset in itertools.combinations(DIMS, r):
            out = fusion({m: feats[m] for m in subset})
            assert out.shape == (6, 8) and torch.isfinite(out).all()
            g = fusion.last_gates
            torch.testing.assert_close(g.sum(1), torch.ones(6, 8, dtype=torch.float64))
            for i, m in enumerate(DIMS):
                assert (g[:, i] == 0).all() == (m not in subset), (subset, m)
    fusion(feats).square().sum().backward()
    assert all(f.grad.abs().sum() > 0 for f in feats.values())


def test_renormalized_gates_are_the_full_gates_renormalized_over_the_modalities_present():
    torch.manual_seed(0)
    fusion = GatedFusion(DIMS, 8, renormalize=True).double()
    feats = _feats()
    fusion(feats)
    full = fusion.last_gates  # (B, M, D)
    for r in (1, 2):
        for subset in itertools.combinations(DIMS, r):
            keep = torch.tensor([m in subset for m in DIMS], dtype=torch.float64)[None, :, None]
            expected = full * keep / (full * keep).sum(1, keepdim=True)
            fusion({m: feats[m] for m in subset})
            torch.testing.assert_close(fusion.last_gates, expected)


def test_joint_gates_change_when_a_modality_is_missing():
    # the GMU's gates read every modality: removing one changes the others' gates, not
    # just their normalization (that is what renormalize=True avoids)
    torch.manual_seed(0)
    fusion = GatedFusion(DIMS, 8).double()
    feats = _feats()
    fusion(feats)
    full = fusion.last_gates
    fusion({"image": feats["image"], "text": feats["text"]})
    keep = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)[None, :, None]
    assert not torch.allclose(fusion.last_gates, full * keep / (full * keep).sum(1, keepdim=True))


def test_renormalized_gate_parameters():
    fusion = GatedFusion(DIMS, 8, renormalize=True)
    n_gate = sum(p.numel() for p in fusion.gate.parameters())
    assert n_gate == sum((d + 1) * 8 for d in DIMS.values())  # G_m: (D, d_m) and c_m, per modality
    assert make_fusion("gated", DIMS, width=8, renormalize=True).renormalize


def test_tensor_fusion_outer_product_holds_every_interaction():
    dims = {"a": 2, "b": 3}
    fusion = TensorFusion(dims, 4).double()
    fa, fb = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    z = fusion.outer({"a": fa, "b": fb})
    assert z.shape == (5, 3 * 4)
    expected = torch.einsum("bi,bj->bij", torch.cat([fa, torch.ones(5, 1, dtype=torch.float64)], 1),
                            torch.cat([fb, torch.ones(5, 1, dtype=torch.float64)], 1)).flatten(1)
    torch.testing.assert_close(z, expected)
    assert fusion.product_dim == 12 and sum(p.numel() for p in fusion.parameters()) == 12 * 4 + 4


@settings(max_examples=25, deadline=None)
@given(
    dims=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    width=st.integers(1, 5),
    rank=st.integers(1, 4),
    B=st.integers(1, 4),
    drop_first=st.booleans(),
)
def test_low_rank_equals_tensor_fusion_with_the_reconstructed_weight(dims, width, rank, B, drop_first):
    names = {f"m{i}": d for i, d in enumerate(dims)}
    low = LowRankFusion(names, width, rank).double()
    feats = _feats(B, names)
    if drop_first and len(names) > 1:
        feats.pop("m0")
    torch.testing.assert_close(low(feats), low.to_tensor_fusion()(feats))


def test_late_fusion_modes_match_their_formulas():
    feats = _feats()
    for mode in ("logits", "probs"):
        fusion = LateFusion(DIMS, 10, mode=mode).double()
        with torch.no_grad():
            fusion.logits.copy_(torch.tensor([0.5, 0.0, -0.5]))
        w = torch.softmax(fusion.logits, 0)
        y = [fusion.heads[m](feats[m]) for m in DIMS]
        if mode == "logits":
            expected = torch.log_softmax(sum(wi * yi for wi, yi in zip(w, y, strict=True)), -1)
        else:
            expected = torch.log(sum(wi * torch.softmax(yi, -1) for wi, yi in zip(w, y, strict=True)))
        out = fusion(feats)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(out.exp().sum(-1), torch.ones(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode"):
        LateFusion(DIMS, 10, mode="vote")


def test_cross_modal_attention_uses_other_modalities():
    fusion = make_fusion("attention", DIMS, width=8, num_heads=2).double().eval()
    feats = _feats()
    base = fusion(feats)
    changed = dict(feats, audio=feats["audio"] + 1.0)
    assert not torch.allclose(base, fusion(changed))
    assert fusion.last_weights["image"].shape == (6, 2, 1, 2)  # image queries audio and text
