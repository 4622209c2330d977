"""Checkpoints: atomic writes that survive a crash, and a resume that continues exactly."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import blobs, one_thread  # noqa: F401 (autouse fixture)
from torch import nn

from mmcourse.train import checkpoint as ckpt
from mmcourse.train import fit, load_checkpoint, save_checkpoint

TESTS = Path(__file__).parent  # subprocesses import the test helpers and this checkout


def dropout_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# warm-up then a constant rate: the schedule does not depend on the number of epochs
RUN = dict(epochs=4, lr=1e-2, batch_size=32, warmup=1, grad_clip=1.0, device="cpu",
           weight_decay=1e-2)


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / "a.pt"
    ckpt.atomic_save({"x": torch.ones(3)}, path)
    ckpt.atomic_save({"x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path)["x"], torch.zeros(3))
    assert os.listdir(tmp_path) == ["a.pt"]  # no temp file left behind


def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    model = dropout_mlp()
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(path, model, opt, epoch=1)
    good_bytes = path.read_bytes()

    def half_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", half_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == good_bytes
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]
    state = load_checkpoint(path, dropout_mlp(seed=3))
    assert state["epoch"] == 1


def test_unreadable_checkpoints_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "truncated.pt"
    save_checkpoint(bad, dropout_mlp())
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="truncated.pt is unreadable"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(ValueError, match="other.pt is not an mmcourse checkpoint"):
        load_checkpoint(other)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        save_checkpoint(tmp_path / "no_opt.pt", dropout_mlp())
        load_checkpoint(tmp_path / "no_opt.pt", optimizer=torch.optim.SGD([torch.ones(1)], lr=1))


def test_every_state_round_trips(tmp_path):
    model = dropout_mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    sched.step()
    torch.manual_seed(7)
    np.random.seed(7)  # noqa: NPY002
    save_checkpoint(tmp_path / "s.pt", model, opt, epoch=3, scaler=scaler, scheduler=sched,
                    note="hello")
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002

    model2 = dropout_mlp(seed=1)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    scaler2 = torch.amp.GradScaler("cpu")
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    state = load_checkpoint(tmp_path / "s.pt", model2, opt2, scaler=scaler2, scheduler=sched2,
                            restore_rng=True)
    assert state["epoch"] == 3 and state["note"] == "hello"
    torch.testing.assert_close(flat(model2), flat(model))
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.05)
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"],
                               opt.state_dict()["state"][0]["exp_avg"])
    assert scaler2.get_scale() == 1024.0
    assert torch.equal(torch.rand(3), expected_torch)
    assert np.array_equal(np.random.rand(3), expected_np)  # noqa: NPY002


def test_resume_continues_exactly(tmp_path):
    """4 epochs straight == 2 epochs, checkpoint, fresh objects, resume 2 more."""
    train, val = blobs(), blobs(seed=1)
    straight = dropout_mlp()
    h_straight = fit(straight, train, val, **RUN)

    path = tmp_path / "run.pt"
    first = dropout_mlp()
    fit(first, train, val, **{**RUN, "epochs": 2}, checkpoint=path)
    # resuming must not depend on anything left in this process: scramble the RNGs, new model
    torch.manual_seed(1234)
    resumed = dropout_mlp(seed=99)
    h_resumed = fit(resumed, train, val, **RUN, checkpoint=path, resume=True)
    assert torch.equal(flat(resumed), flat(straight))
    assert h_resumed.train_loss == h_straight.train_loss
    assert h_resumed.val_loss == h_straight.val_loss
    assert h_resumed.lr == h_straight.lr and len(h_resumed.lr) == 4
    assert load_checkpoint(path)["epoch"] == 4


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_exactly_with_a_schedule(tmp_path):
    """A cosine schedule spans the whole run: crash inside epoch 3, resume, same weights."""
    train, val = blobs(), blobs(seed=1)
    run = {**RUN, "schedule": "cosine"}
    straight = dropout_mlp()
    fit(straight, train, val, **run)

    calls = []

    def crashing_loss(out, y):
        calls.append(1)
        if len(calls) == 2 * 8 + 3:  # 8 batches per epoch: crash in the middle of epoch 3
            raise Interrupt
        return torch.nn.functional.cross_entropy(out, y)

    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        fit(dropout_mlp(), train, None, **run, loss_fn=crashing_loss, checkpoint=path)
    assert load_checkpoint(path)["epoch"] == 2
    resumed = dropout_mlp(seed=7)
    h = fit(resumed, train, val, **run, checkpoint=path, resume=True)
    assert torch.equal(flat(resumed), flat(straight))
    assert h.lr[0] < h.lr[1] and h.lr[-1] < h.lr[1]  # warm-up, then the cosine decay


def test_resume_true_without_file_starts_fresh(tmp_path):
    path = tmp_path / "new.pt"
    h = fit(dropout_mlp(), blobs(), epochs=1, device="cpu", checkpoint=path, resume=True)
    assert len(h.train_loss) == 1 and path.is_file()
    with pytest.raises(ValueError, match="resume=True needs checkpoint=PATH"):
        fit(dropout_mlp(), blobs(), epochs=1, device="cpu", resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(dropout_mlp(), blobs(), epochs=1, device="cpu", resume=tmp_path / "nope.pt")


def test_resume_keeps_early_stopping_state(tmp_path):
    train = blobs()
    noise = blobs(seed=2)
    noise["label"] = torch.randint(0, 3, (240,), generator=torch.Generator().manual_seed(5))
    run = dict(epochs=40, lr=5e-2, patience=2, device="cpu")
    straight = dropout_mlp()
    h = fit(straight, train, noise, **run)
    assert h.stopped_early
    path = tmp_path / "es.pt"
    part = dropout_mlp()
    fit(part, train, noise, **{**run, "epochs": h.best_epoch + 2}, checkpoint=path)
    resumed = dropout_mlp(seed=5)
    h2 = fit(resumed, train, noise, **run, checkpoint=path, resume=True)
    assert h2.stopped_early and h2.best_epoch == h.best_epoch and h2.val_loss == h.val_loss
    assert torch.equal(flat(resumed), flat(straight))


SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from mmcourse.train import fit
    from test_train import blobs, one_thread  # noqa: F401 (autouse fixture)
    from test_train_checkpoint import RUN, dropout_mlp
    model = dropout_mlp(seed=42)
    fit(model, blobs(), blobs(seed=1), **RUN, checkpoint=sys.argv[1], resume=True)
    torch.save(model.state_dict(), sys.argv[2])
    """
)


@pytest.mark.slow
def test_resume_in_a_new_process(tmp_path):
    train, val = blobs(), blobs(seed=1)
    straight = dropout_mlp()
    fit(straight, train, val, **RUN)
    path = tmp_path / "run.pt"
    fit(dropout_mlp(), train, val, **{**RUN, "epochs": 2}, checkpoint=path)
    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    pythonpath = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, script, path, tmp_path / "w.pt"], check=True, env=env,
                   timeout=120)
    resumed = dropout_mlp(seed=3)
    resumed.load_state_dict(torch.load(tmp_path / "w.pt"))
    assert torch.equal(flat(resumed), flat(straight))


def test_resume_with_more_epochs_follows_the_longer_schedule(tmp_path):
    """2 epochs of cosine, resumed to 4: epochs 3-4 run at the rates of a 4-epoch run, not 0."""
    train = blobs()
    run = dict(lr=1e-2, batch_size=32, device="cpu", schedule="cosine")
    h4 = fit(dropout_mlp(), train, epochs=4, **run)
    path = tmp_path / "two.pt"
    h2 = fit(dropout_mlp(), train, epochs=2, **run, checkpoint=path)
    again = tmp_path / "again.pt"
    again.write_bytes(path.read_bytes())
    h = fit(dropout_mlp(seed=5), train, epochs=4, **run, checkpoint=path, resume=True)
    assert h.lr[:2] == h2.lr  # the first run, as it ran
    assert h.lr[2:] == pytest.approx(h4.lr[2:])  # then the 4-epoch schedule from step 16 on
    assert min(h.lr) > 0 and h.train_loss[-1] < h.train_loss[1]
    # without a schedule the rate is simply the one asked for
    h = fit(dropout_mlp(), train, epochs=3, lr=5e-3, batch_size=32, device="cpu",
            checkpoint=again, resume=True)
    assert h.lr[2:] == [5e-3]


def test_resume_restores_the_loss_parameters(tmp_path):
    from test_train import TemperedCE

    run = {**RUN, "loss_fn": None}
    straight, loss_straight = dropout_mlp(), TemperedCE()
    fit(straight, blobs(), **{**run, "loss_fn": loss_straight})
    path = tmp_path / "run.pt"
    fit(dropout_mlp(), blobs(), **{**run, "epochs": 2, "loss_fn": TemperedCE()}, checkpoint=path)
    assert "log_tau" in load_checkpoint(path)["loss"]
    resumed, loss_resumed = dropout_mlp(seed=3), TemperedCE()
    with torch.no_grad():
        loss_resumed.log_tau.fill_(2.0)  # scrambled: the file must restore it
    fit(resumed, blobs(), **{**run, "loss_fn": loss_resumed}, checkpoint=path, resume=True)
    assert torch.equal(loss_resumed.log_tau, loss_straight.log_tau)
    assert torch.equal(flat(resumed), flat(straight))


def test_interrupted_run_resumes_exactly_on_the_tri_modal_model(tmp_path):
    """The main job's model (BatchNorm in the audio CNN, dropout, modality dropout, per-modality
    heads and a multi-task loss) under a cosine schedule: a run that crashes inside epoch 2 and
    is resumed from its checkpoint by a fresh model and loss ends with the weights of the run
    that never stopped; the checkpoint alone rebuilds the trained model."""
    from mmcourse.data import load_split
    from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
    from mmcourse.trimodal import build_model

    def tri_modal(seed: int) -> tuple[MultimodalClassifier, MultiTaskLoss]:
        base = build_model("late", seed=seed)
        model = MultimodalClassifier(dict(base.encoders), base.fusion, aux_heads=True,
                                     modality_dropout=0.3)
        return model, MultiTaskLoss(model)

    whole = load_split("val").tensors()
    train, val = ({k: v[a:b] for k, v in whole.items()} for a, b in ((0, 64), (64, 96)))
    run = dict(epochs=3, lr=3e-3, batch_size=16, device="cpu", schedule="cosine", warmup=0.5)
    straight, loss = tri_modal(0)
    h_straight = fit(straight, train, val, **run, loss_fn=loss)

    steps = []

    def crash_in_epoch_2(module, args):
        if module.training:
            steps.append(1)
            if len(steps) == 4 + 2:  # 4 training batches per epoch
                raise Interrupt

    path = tmp_path / "tri.pt"
    crashing, loss = tri_modal(0)
    crashing.fusion.register_forward_pre_hook(crash_in_epoch_2)
    with pytest.raises(Interrupt):
        fit(crashing, train, val, **run, loss_fn=loss, checkpoint=path)
    assert load_checkpoint(path)["epoch"] == 1
    torch.manual_seed(1234)
    resumed, loss = tri_modal(7)  # other initial weights: the checkpoint must replace them
    h = fit(resumed, train, val, **run, loss_fn=loss, checkpoint=path, resume=True)
    assert torch.equal(flat(resumed), flat(straight))
    assert h.train_loss == h_straight.train_loss and h.val_loss == h_straight.val_loss
    assert h.lr == h_straight.lr

    rebuilt, _ = tri_modal(11)
    load_checkpoint(path, rebuilt)
    assert torch.equal(flat(rebuilt), flat(straight))
    for name, buf in straight.named_buffers():  # BatchNorm's running statistics too
        torch.testing.assert_close(dict(rebuilt.named_buffers())[name], buf, rtol=0, atol=0)
