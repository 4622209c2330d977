"""Sharded checkpoints in one process: the folder layout, an atomic ``latest``, exact resume
with ``strategy="fsdp"`` (nothing to shard alone, the same format), and clear errors. The
two-process runs are in ``test_train_fsdp.py``."""

import pytest
import torch
from test_train import blobs, one_thread  # noqa: F401 (autouse fixture)
from test_train_checkpoint import RUN, dropout_mlp, flat

from mmcourse.nn import InfoNCE
from mmcourse.train import fit, load_sharded, save_checkpoint, save_sharded, sharded


def test_fsdp_checkpoint_folder_resumes_exactly_in_one_process(tmp_path):
    path = tmp_path / "run"
    straight = dropout_mlp()
    h = fit(straight, blobs(), blobs(seed=1), **RUN, strategy="fsdp")
    stopped = dropout_mlp()
    fit(stopped, blobs(), blobs(seed=1), **{**RUN, "epochs": 2}, strategy="fsdp", checkpoint=path)
    assert (path / "latest").read_text() == "epoch-0002"
    assert sorted(p.name for p in path.iterdir()) == ["epoch-0002", "latest"]  # older removed
    resumed = dropout_mlp(seed=5)  # other initial weights: all of them come from the folder
    h2 = fit(resumed, blobs(), blobs(seed=1), **RUN, strategy="fsdp", checkpoint=path,
             resume=True)
    assert torch.equal(flat(resumed), flat(straight))
    assert h2.train_loss == h.train_loss and h2.val_loss == h.val_loss


def test_early_stopping_state_goes_with_the_shards(tmp_path):
    noisy = blobs(seed=2)
    noisy["label"] = torch.randint(0, 3, (240,), generator=torch.Generator().manual_seed(5))
    run = {**RUN, "epochs": 12, "lr": 5e-2, "patience": 3}
    straight = dropout_mlp()
    h = fit(straight, blobs(), noisy, **run, strategy="fsdp")
    assert h.stopped_early
    stopped = dropout_mlp()
    fit(stopped, blobs(), noisy, **{**run, "epochs": h.best_epoch + 2}, strategy="fsdp",
        checkpoint=tmp_path / "run")
    resumed = dropout_mlp(seed=5)
    h2 = fit(resumed, blobs(), noisy, **run, strategy="fsdp", checkpoint=tmp_path / "run",
             resume=True)
    assert h2.best_epoch == h.best_epoch and h2.stopped_early
    assert torch.equal(flat(resumed), flat(straight))  # the best epoch's weights, restored


def test_loss_parameters_are_saved_and_checked(tmp_path):
    model, loss = torch.nn.Linear(2, 4), InfoNCE()
    with torch.no_grad():
        loss.log_scale.fill_(1.5)
    save_sharded(tmp_path / "a", model, loss_fn=loss, epoch=1)
    fresh = InfoNCE()
    load_sharded(tmp_path / "a", torch.nn.Linear(2, 4), loss_fn=fresh)
    assert fresh.log_scale.item() == 1.5
    save_sharded(tmp_path / "b", model, epoch=1)
    with pytest.raises(ValueError, match="holds no state for the parameters of loss_fn"):
        load_sharded(tmp_path / "b", torch.nn.Linear(2, 4), loss_fn=InfoNCE())
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_sharded(tmp_path / "b", model, torch.optim.AdamW(model.parameters()))


def test_a_crash_while_writing_keeps_the_previous_epoch(tmp_path, monkeypatch):
    model = dropout_mlp()
    save_sharded(tmp_path / "run", model, epoch=1)
    saved = flat(model).clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(sharded.dcp, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_sharded(tmp_path / "run", model, epoch=2)
    monkeypatch.undo()
    assert (tmp_path / "run" / "latest").read_text() == "epoch-0001"
    fresh = dropout_mlp(seed=3)
    assert load_sharded(tmp_path / "run", fresh)["epoch"] == 1
    assert torch.equal(flat(fresh), saved)


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sharded checkpoint in"):
        load_sharded(tmp_path / "nothing", dropout_mlp())
    save_checkpoint(tmp_path / "one.pt", dropout_mlp())
    with pytest.raises(ValueError, match="one.pt is a single-file checkpoint"):
        fit(dropout_mlp(), blobs(), **RUN, strategy="fsdp", checkpoint=tmp_path / "one.pt",
            resume=True)
    with pytest.raises(ValueError, match="strategy must be one of"):
        fit(dropout_mlp(), blobs(), **RUN, strategy="zero")
