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
