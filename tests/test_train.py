"""The trainer: it learns, stops early, accepts every data form, and says what is wrong."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmcourse.train import History, evaluate, fit


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one thread than on two contended ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def blobs(n: int = 240, seed: int = 0) -> dict:
    """Three well-separated Gaussian blobs in 2-D: an easy 3-class task."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[2.0, 0.0], [-2.0, 2.0], [-2.0, -2.0]])
    x = centers[y] + 0.5 * torch.randn(n, 2, generator=g)
    return {"image": x, "label": y}


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


class DictItems(Dataset):
    def __init__(self, data: dict) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["label"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.data.items()}


def test_tiny_model_learns_tiny_task():
    train, val = blobs(seed=0), blobs(seed=1)
    model = mlp()
    before = evaluate(model, val, device="cpu")
    history = fit(model, train, val, epochs=15, lr=1e-2, batch_size=32, device="cpu")
    after = evaluate(model, val)
    assert isinstance(history, History)
    assert len(history.train_loss) == len(history.val_loss) == len(history.val_accuracy) == 15
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert after.accuracy > 0.95 and after.accuracy > before.accuracy
    assert after.loss == pytest.approx(history.val_loss[-1], rel=1e-5)
    assert after.confusion.shape == (3, 3) and int(after.confusion.sum()) == after.n == 240
    assert 0.9 < after.macro_f1 <= 1.0


def test_same_seed_same_weights_different_seed_differs():
    runs = []
    for seed in (0, 0, 1):
        model = mlp()
        fit(model, blobs(), epochs=2, batch_size=16, seed=seed, device="cpu")
        runs.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_early_stopping_stops_and_restores_best():
    train = blobs(seed=0)
    noise = blobs(seed=2)
    noise["label"] = torch.randint(0, 3, (240,), generator=torch.Generator().manual_seed(5))
    model = mlp()
    history = fit(model, train, noise, epochs=60, lr=5e-2, patience=2, device="cpu")
    assert history.stopped_early
    assert len(history.val_loss) < 60
    assert len(history.val_loss) == history.best_epoch + 1 + 2  # best, then 2 worse epochs
    assert min(history.val_loss) == history.val_loss[history.best_epoch]
    restored = evaluate(model, noise)
    assert restored.loss == pytest.approx(history.val_loss[history.best_epoch], rel=1e-5)


@pytest.mark.parametrize("form", ["dict", "dataset", "loader", "pair"])
def test_every_data_form_learns(form):
    data = blobs()
    if form == "dataset":
        train = DictItems(data)
    elif form == "loader":
        train = DataLoader(DictItems(data), batch_size=32, shuffle=True)
    elif form == "pair":
        train = (data["image"], data["label"])
    else:
        train = data
    model = mlp()
    history = fit(model, train, epochs=10, lr=1e-2, batch_size=32, device="cpu")
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    assert evaluate(model, train).accuracy > 0.95


def test_dict_and_dataset_forms_give_identical_training():
    data = blobs()
    weights = []
    for train in (data, DictItems(data)):
        model = mlp()
        fit(model, train, epochs=2, batch_size=32, device="cpu")
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1])


class TwoInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(1, 3), nn.Linear(1, 3)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return self.a(xa) + self.b(xb)


class WholeBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, batch: dict) -> dict:
        return {"logits": self.lin(batch["image"])}


def test_inputs_tuple_and_whole_batch():
    data = blobs()
    split = {"xa": data["image"][:, :1], "xb": data["image"][:, 1:], "label": data["label"]}
    model = TwoInput()
    fit(model, split, epochs=15, lr=3e-2, inputs=("xa", "xb"), device="cpu")
    assert evaluate(model, split, inputs=("xa", "xb")).accuracy > 0.9

    def dict_loss(out: dict, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out["logits"], y)

    model = WholeBatch()
    h = fit(model, data, epochs=15, lr=3e-2, inputs=None, loss_fn=dict_loss, device="cpu")
    result = evaluate(model, data, inputs=None, loss_fn=dict_loss)
    assert result.accuracy > 0.9 and not math.isnan(h.train_accuracy[-1])


def test_non_tensor_entries_are_carried_along():
    data = blobs(30)
    data["text"] = [f"sample {i}" for i in range(30)]
    seen = []

    class Peek(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 3)

        def forward(self, batch: dict) -> torch.Tensor:
            seen.append(batch["text"])
            return self.lin(batch["image"])

    fit(Peek(), data, epochs=1, batch_size=8, inputs=None, device="cpu")
    texts = [t for batch in seen for t in batch]
    assert sorted(texts) == sorted(data["text"]) and len(seen) == 4


def test_history_plot_draws_curves():
    import matplotlib

    matplotlib.use("Agg")
    model = mlp()
    history = fit(model, blobs(), blobs(seed=1), epochs=3, device="cpu")
    fig = history.plot()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) >= 2
    assert History.from_dict(history.to_dict()) == history
    assert evaluate(model, blobs()).plot() is not None


def test_bad_input_errors_name_what_was_expected():
    model = mlp()
    data = blobs()
    with pytest.raises(TypeError, match="expected a dict of tensors"):
        fit(model, 42, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="expected a dict with a 'label' key"):
        fit(model, {"image": data["image"]}, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="expected every entry to hold N=240 samples"):
        fit(model, {"image": data["image"][:10], "label": data["label"]}, epochs=1, device="cpu")
    with pytest.raises(ValueError, match=r"expected key\(s\) \['audio'\] in the batch"):
        fit(model, data, epochs=1, inputs="audio", device="cpu")
    with pytest.raises(ValueError, match="patience .* needs validation data"):
        fit(model, data, epochs=1, patience=2, device="cpu")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fit(model, data, epochs=1, batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        fit(model, data, epochs=-1, device="cpu")
    with pytest.raises(TypeError, match="expected model to be an nn.Module"):
        fit(lambda x: x, data, epochs=1, device="cpu")
    with pytest.raises(TypeError, match="expected a dict of tensors with a 'label' key or a pair"):
        fit(model, DataLoader([data["image"][i] for i in range(8)], batch_size=4), device="cpu")


def test_plot_confusion_checks_its_input():
    from mmcourse.viz.training import plot_confusion

    fig = plot_confusion(torch.tensor([[3, 1], [0, 4]]), classes=["a", "b"], normalize=True)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.75", "0.25", "0.00", "1.00"]
    with pytest.raises(ValueError, match=r"expected a \(C, C\) confusion matrix"):
        plot_confusion(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="expected 2 class names, got 3"):
        plot_confusion(torch.zeros(2, 2), classes=["a", "b", "c"])


class TemperedCE(nn.Module):
    """Cross-entropy of logits / tau, with a learnable temperature tau = exp(log_tau)."""

    def __init__(self) -> None:
        super().__init__()
        self.log_tau = nn.Parameter(torch.tensor(0.5))

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out / self.log_tau.exp(), y)


def test_loss_parameters_are_optimized():
    loss_fn = TemperedCE()
    fit(mlp(), blobs(), epochs=3, lr=1e-2, loss_fn=loss_fn, device="cpu")
    assert loss_fn.log_tau.item() != 0.5
    # an optimizer given by the caller must update them too, or the run is refused
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"loss_fn has trainable parameters \['log_tau'\]"):
        fit(model, blobs(), epochs=1, loss_fn=TemperedCE(), optimizer=sgd, device="cpu")
    both = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.1)
    fit(model, blobs(), epochs=1, loss_fn=loss_fn, optimizer=both, device="cpu")


class TwoTower(nn.Module):
    """Two views of a point, each embedded by its own tower: a (N, 8) and b (N, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(2, 8), nn.Linear(2, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x + 0.1 * torch.randn_like(x))


class PairLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from mmcourse.nn import InfoNCE

        self.nce = InfoNCE(0.5)

    def forward(self, out: tuple, y: torch.Tensor) -> torch.Tensor:
        return self.nce(*out)


def test_info_nce_temperature_is_learned():
    loss_fn = PairLoss()
    before = loss_fn.nce.temperature.item()
    h = fit(TwoTower(), blobs(), epochs=3, lr=3e-2, loss_fn=loss_fn, device="cpu")
    assert loss_fn.nce.temperature.item() != pytest.approx(before)
    assert h.train_loss[-1] < h.train_loss[0]


def test_multimodal_classifier_takes_the_whole_batch():
    from test_multimodal import _batch, _model

    data = _batch()
    model = _model("linear")
    h = fit(model, data, epochs=2, batch_size=2, device="cpu")  # the default inputs
    assert len(h.train_loss) == 2 and not math.isnan(h.train_loss[-1])
    assert evaluate(model, data).n == 4
    with pytest.raises(ValueError, match="takes the whole batch dict: pass inputs=None"):
        fit(model, data, epochs=1, inputs=("image", "tokens"), device="cpu")


def test_input_values_are_checked_once_per_split():
    """Bad values are found before the first step, with the encoder's own message."""
    from mmcourse.data import collate, load_split
    from mmcourse.trimodal import build_model

    whole = load_split("val").tensors()
    data = {k: v[:8] for k, v in whole.items()}
    bad = {**data, "tokens": data["tokens"].clone()}
    bad["tokens"][3, 0] = 10_000
    with pytest.raises(ValueError, match=r"expected token ids in \[0, \d+\) \(vocab_size\)"):
        fit(build_model("concat", ["text"]), bad, epochs=1, device="cpu")
    bad = {**data, "audio_len": data["audio_len"].clone()}
    bad["audio_len"][2] = data["audio"].shape[1] + 1
    with pytest.raises(ValueError, match="expected lengths in"):
        fit(build_model("concat", ["audio"]), bad, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="expected lengths in"):
        evaluate(build_model("concat", ["audio"]), bad)
    bad = {**data, "tokens": data["tokens"].clone()}
    bad["tokens"][6, 1] = -1
    loader = DataLoader(DictItems(bad), batch_size=4, collate_fn=collate)  # checked on the CPU
    with pytest.raises(ValueError, match=r"expected token ids in \[0, \d+\) \(vocab_size\), got ids in \[-1"):
        fit(build_model("concat", ["text"]), loader, epochs=1, device="cpu")


def test_early_stopping_restores_the_loss_parameters_of_the_best_epoch():
    """The model and the loss's parameters come back together, from the best epoch: as if the
    run had stopped there (no schedule, so a shorter run follows the same steps)."""
    train, val = blobs(seed=1), blobs(n=60, seed=2)
    val["label"] = val["label"][torch.randperm(60, generator=torch.Generator().manual_seed(0))]
    stopped, loss_a = mlp(), TemperedCE()
    h = fit(stopped, train, val, epochs=12, lr=5e-2, patience=2, loss_fn=loss_a, device="cpu")
    assert h.stopped_early and h.best_epoch < len(h.train_loss) - 1
    short, loss_b = mlp(), TemperedCE()
    fit(short, train, val, epochs=h.best_epoch + 1, lr=5e-2, loss_fn=loss_b, device="cpu")
    assert loss_a.log_tau.item() == pytest.approx(loss_b.log_tau.item(), abs=1e-6)
    for p, q in zip(stopped.parameters(), short.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_evaluate_leaves_every_module_in_its_mode():
    """A model handed over in eval mode stays in eval mode (and a mixed one keeps its mix)."""
    model = nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    model.eval()
    evaluate(model, blobs())
    assert not any(m.training for m in model.modules())
    model.train()
    model[1].eval()
    evaluate(model, blobs())
    assert [m.training for m in model.modules()] == [True, True, False, True]
