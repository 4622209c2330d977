"""MultimodalClassifier and the multi-task loss, with small stand-in encoders."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.fusion import make_fusion
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss


class MeanPool(nn.Module):
    """(B, L) values with lengths -> (B, 1) mean over the valid steps, then a linear map."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(1, width)

    def forward(self, x, lengths):
        valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        return self.linear(((x * valid).sum(1) / lengths).unsqueeze(1).float())


class TokenMean(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.embed = nn.Embedding(20, width, padding_idx=0)

    def forward(self, tokens, lengths):
        return self.embed(tokens).sum(1) / lengths[:, None]


def _model(method="concat", **kwargs):
    encoders = {
        "image": nn.Sequential(nn.Flatten(), nn.Linear(64, 6)),
        "audio": MeanPool(4),
        "text": TokenMean(5),
    }
    fusion = make_fusion(method, {"image": 6, "audio": 4, "text": 5}, width=8)
    return MultimodalClassifier(encoders, fusion, num_classes=10, **kwargs)


def _batch(B=4):
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(B, 1, 8, 8, generator=g),
        "audio": torch.randn(B, 30, generator=g),
        "audio_len": torch.tensor([30, 20, 10, 25][:B]),
        "tokens": torch.randint(1, 20, (B, 6), generator=g),
        "tokens_len": torch.tensor([6, 4, 3, 5][:B]),
        "label": torch.tensor([1, 2, 3, 4][:B]),
    }


@pytest.mark.parametrize("method", ["concat", "gated", "late", "attention", "lowrank"])
def test_logits_shape_and_gradients_reach_every_encoder(method):
    model = _model(method)
    logits = model(_batch())
    assert logits.shape == (4, 10)
    F.cross_entropy(logits, _batch()["label"]).backward()
    for m, encoder in model.encoders.items():
        grads = [p.grad for p in encoder.parameters()]
        assert grads and all(g is not None for g in grads), f"no gradient reaches the {m} encoder"
        assert sum(g.abs().sum() for g in grads) > 0


def test_missing_modalities_at_test_time():
    model = _model("linear").eval()
    batch = _batch()
    full = model(batch)
    model.missing = {"audio"}
    without = model(batch)
    torch.testing.assert_close(without, model(batch, drop={"audio"}))
    assert not torch.allclose(full, without)
    no_audio = {k: v for k, v in batch.items() if not k.startswith("audio")}
    torch.testing.assert_close(without, model(no_audio))  # the audio inputs are not even needed
    with pytest.raises(ValueError, match="every modality was dropped"):
        model(batch, drop={"image", "text"})


def test_missing_batch_key_is_named():
    model = _model()
    batch = _batch()
    del batch["tokens_len"]
    with pytest.raises(KeyError, match="tokens_len"):
        model(batch)


def test_modality_dropout_drops_at_its_rate_but_never_everything():
    torch.manual_seed(0)
    p, draws = 0.5, 400
    model = _model(modality_dropout=p).train()
    dropped = torch.zeros(draws, 3)  # 1 where a modality was dropped in that draw
    for i in range(draws):
        feats = model.features(_batch())
        assert 1 <= len(feats) <= 3, "modality dropout must keep at least one modality"
        dropped[i] = torch.tensor([m not in feats for m in ("image", "audio", "text")], dtype=torch.float)
    # each modality is dropped with probability p, except that a draw dropping all three keeps one:
    # the expected number dropped per draw is 3p - p^3
    assert dropped.sum(1).mean().item() == pytest.approx(3 * p - p**3, abs=0.15)
    assert ((0.3 < dropped.mean(0)) & (dropped.mean(0) < 0.6)).all(), dropped.mean(0)
    model.eval()
    assert len(model.features(_batch())) == 3  # no dropout at evaluation
    model.train()
    model.modality_dropout = 0.0
    assert all(len(model.features(_batch())) == 3 for _ in range(20))  # rate 0: nothing dropped


def test_multitask_loss_is_fused_plus_weighted_unimodal_losses():
    model = _model("concat", aux_heads=True)
    batch = _batch()
    logits = model(batch)
    loss = MultiTaskLoss(model, {"image": 0.5, "audio": 0.25, "text": 0.0})(logits, batch["label"])
    y = batch["label"]
    expected = (
        F.cross_entropy(logits, y)
        + 0.5 * F.cross_entropy(model.aux_logits["image"], y)
        + 0.25 * F.cross_entropy(model.aux_logits["audio"], y)
    )
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="aux_heads=True"):
        MultiTaskLoss(_model())


def test_encoders_must_match_the_fusion():
    with pytest.raises(ValueError, match="differ"):
        MultimodalClassifier({"image": nn.Identity()}, make_fusion("concat", {"audio": 3}))


def test_missing_takes_known_names_only():
    model = _model()
    model.missing = {"audio"}
    assert model.missing == frozenset({"audio"})
    model.missing = "text"  # one name
    assert model.missing == frozenset({"text"})
    with pytest.raises(ValueError, match=r"unknown modalities \['smell'\]; this model has"):
        model.missing = {"smell"}
    model.missing = set()
    assert model.missing == frozenset()


def test_check_input_checks_every_encoder_present():
    from mmcourse.nn import TextEncoder

    encoders = {"image": nn.Sequential(nn.Flatten(), nn.Linear(64, 6)), "text": TextEncoder(20, 5)}
    model = MultimodalClassifier(encoders, make_fusion("concat", {"image": 6, "text": 5}))
    batch = _batch()
    model.check_input(batch)
    batch["tokens"][0, 0] = 25
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 20\)"):
        model.check_input(batch)
    model.missing = {"text"}
    model.check_input({k: v for k, v in batch.items() if not k.startswith("tokens")})
    model.missing = set()
    with pytest.raises(KeyError, match="tokens_len"):
        model.check_input({k: v for k, v in batch.items() if k != "tokens_len"})


def test_may_skip_parameters():
    assert not _model().may_skip_parameters
    assert _model(aux_heads=True).may_skip_parameters  # a loss may ignore the aux logits
    assert _model(modality_dropout=0.2).may_skip_parameters
    model = _model()
    model.missing = {"audio"}
    assert model.may_skip_parameters
