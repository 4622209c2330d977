"""Gradient accumulation: ``fit(..., accumulate=A)`` takes the steps of the whole batch.

Each batch is cut into A micro-batches whose sizes differ by at most one (the last batch of an
epoch is smaller still), and each micro-batch's mean loss is weighted by its share of the batch,
so the gradients added up are those of the batch's mean loss. A plain division by A would weight
the samples of small micro-batches more: checked to differ.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from test_train import blobs, mlp, one_thread  # noqa: F401 (autouse fixture)

from mmcourse.data import load_split
from mmcourse.nn import AudioEncoder, AudioFrontEnd
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.train import fit, loop
from mmcourse.train.data import PairBatch
from mmcourse.train.loop import micro_batches
from mmcourse.trimodal import DIM, build_model

# 100 samples in batches of 32: three of 32 and a last one of 4
RUN = dict(epochs=3, lr=1e-2, batch_size=32, device="cpu", weight_decay=1e-2, grad_clip=1.0,
           schedule="cosine")


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 40), n=st.integers(1, 8))
def test_micro_batches_partition_the_batch(b, n):
    batch = {"x": torch.arange(b), "label": torch.arange(b) % 3, "text": [str(i) for i in range(b)]}
    parts = micro_batches(batch, n)
    sizes = [len(p["label"]) for p in parts]
    assert len(parts) == min(n, b) and all(sizes)
    assert max(sizes) - min(sizes) <= 1
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert sum((p["text"] for p in parts), []) == batch["text"]
    assert all(type(p) is dict for p in parts)
    assert type(micro_batches(PairBatch(batch), n)[0]) is PairBatch


@pytest.mark.parametrize("accumulate", [2, 3, 5])
def test_accumulation_equals_the_large_batch(accumulate):
    data = blobs(100)
    big, acc = mlp(), mlp()
    h_big = fit(big, data, **RUN)
    h_acc = fit(acc, data, **RUN, accumulate=accumulate)
    torch.testing.assert_close(weights(acc), weights(big), rtol=1e-5, atol=1e-6)
    assert h_acc.train_loss == pytest.approx(h_big.train_loss, rel=1e-6)
    assert h_acc.train_accuracy == h_big.train_accuracy


def test_dividing_by_the_number_of_micro_batches_is_wrong(monkeypatch):
    """The same run with each micro-batch's loss divided by A (3 and 4 micro-batches of 11,
    11, 10 and 2, 1, 1): other weights, so the test above would catch that mistake."""

    def naive_step(self, micro):
        self.optimizer.zero_grad(set_to_none=True)
        results = []
        for args, y in micro:
            loss, out = self.objective(*args, y=y)
            (loss / len(micro)).backward()
            results.append((loss, out))
        self.precision.step(self.optimizer, self.params, self.grad_clip)
        if self.scheduler is not None:
            self.scheduler.step()
        return results

    big, naive = mlp(), mlp()
    fit(big, blobs(100), **RUN)
    monkeypatch.setattr(loop._Step, "__call__", naive_step)
    fit(naive, blobs(100), **RUN, accumulate=3)
    assert not torch.allclose(weights(naive), weights(big), rtol=1e-4, atol=1e-5)


def test_accumulation_on_the_tri_modal_model_with_its_multi_task_loss():
    """Per-modality heads and the multi-task loss (a sum of means): the same steps. The audio
    CNN is swapped for an LSTM over the same frames, as in the data-parallel tests: its
    BatchNorm would normalize each micro-batch by its own statistics, another computation."""
    whole = load_split("val").tensors()
    data = {k: v[:40] for k, v in whole.items()}  # batches of 16, 16, 8

    def model_and_loss():
        base = build_model("late")
        encoders = {**base.encoders, "audio": AudioEncoder(DIM, AudioFrontEnd(normalize=False),
                                                           backbone="sequence")}
        model = MultimodalClassifier(encoders, base.fusion, aux_heads=True)
        return model, MultiTaskLoss(model)

    run = dict(epochs=1, lr=3e-3, batch_size=16, device="cpu")
    (big, big_loss), (acc, acc_loss) = model_and_loss(), model_and_loss()
    h_big = fit(big, data, loss_fn=big_loss, **run)
    h_acc = fit(acc, data, loss_fn=acc_loss, **run, accumulate=3)
    assert h_acc.train_loss == pytest.approx(h_big.train_loss, rel=1e-5)
    for (name, p), q in zip(big.state_dict().items(), acc.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_accumulate_must_be_a_positive_int():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="accumulate must be a positive int"):
            fit(mlp(), blobs(), epochs=1, accumulate=bad, device="cpu")


def test_loss_weights_make_the_mean_of_unequal_micro_batches():
    """The identity fit relies on: sum_i (n_i / n) mean_i(l) = mean(l)."""
    torch.manual_seed(0)
    logits, y = torch.randn(10, 3), torch.randint(0, 3, (10,))
    parts = micro_batches({"x": logits, "label": y}, 4)  # sizes 2, 2, 3, 3
    total = sum(F.cross_entropy(p["x"], p["label"]) * len(p["label"]) / 10 for p in parts)
    torch.testing.assert_close(total, F.cross_entropy(logits, y))
