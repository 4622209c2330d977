"""Data parallelism: torchrun's environment, sharding of global batches, and real 2-process
DDP runs (gloo on the CPU, on 127.0.0.1) that must end with the weights of single-process
training: an MLP, and the course's tri-modal model with modality dropout and per-modality heads.
"""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_train import blobs, mlp, one_thread  # noqa: F401 (autouse fixture)

from mmcourse.nn import multimodal
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.train import evaluate, fit
from mmcourse.train.data import shard_batches
from mmcourse.train.distributed import DistEnv, dist_env

TESTS = Path(__file__).parent  # subprocesses import the test helpers and this checkout


def test_dist_env_reads_torchrun_variables(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert dist_env() == DistEnv(0, 1, 0) and not dist_env().enabled
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = dist_env()
    assert env == DistEnv(3, 4, 1) and env.enabled and not env.is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="expected 0 <= RANK < WORLD_SIZE"):
        dist_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="expected an integer in environment variable RANK"):
        dist_env()


@pytest.mark.parametrize(("n", "batch", "world"), [(240, 40, 2), (100, 32, 3), (7, 4, 4)])
def test_shards_partition_each_global_batch(n, batch, world):
    single = shard_batches(n, batch, shuffle=True, seed=3, epoch=2)
    shards = [shard_batches(n, batch, shuffle=True, seed=3, epoch=2, rank=r, world_size=world)
              for r in range(world)]
    assert all(len(s) == len(single) for s in shards)  # every rank takes the same steps
    for i, global_batch in enumerate(single):
        parts = [s[i] for s in shards]
        assert len({len(p) for p in parts}) == 1  # equal shard sizes: equal-weight average
        joined = torch.cat(parts)
        pad = (-len(global_batch)) % world
        assert len(joined) == len(global_batch) + pad
        # padding repeats the first indices of the epoch's order, as DistributedSampler does
        expected = torch.cat([global_batch, single[0][:pad]])
        assert sorted(joined.tolist()) == sorted(expected.tolist())
    covered = torch.cat([torch.cat(s) for s in shards])
    assert set(covered.tolist()) == set(range(n))


def test_order_depends_on_seed_and_epoch_only():
    a = shard_batches(50, 10, shuffle=True, seed=0, epoch=1)
    b = shard_batches(50, 10, shuffle=True, seed=0, epoch=1)
    c = shard_batches(50, 10, shuffle=True, seed=0, epoch=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    unshuffled = shard_batches(50, 10, shuffle=False, seed=0, epoch=0, rank=1, world_size=2, pad=False)
    assert unshuffled[0].tolist() == [1, 3, 5, 7, 9]


SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from mmcourse.train import evaluate, fit
    from mmcourse.train.distributed import dist_env
    from test_train import blobs, mlp
    from test_train_distributed import RUN

    torch.set_num_threads(1)
    out, device = Path(sys.argv[1]), sys.argv[2]
    run = {**RUN, "device": device}
    model = mlp()
    # two calls in one launch: 2 epochs with a checkpoint, then resume to 3 (same process group)
    fit(model, blobs(), blobs(seed=1), **{**run, "epochs": 2}, checkpoint=out / "ddp.pt")
    history = fit(model, blobs(), blobs(seed=1), **run, checkpoint=out / "ddp.pt", resume=True)
    scores = evaluate(model, blobs(seed=1))  # no collectives: each rank scores everything
    rank = dist_env().rank
    torch.save({"model": model.state_dict(), "history": history.to_dict(),
                "eval": (scores.loss, scores.n, scores.confusion)}, out / f"rank{rank}.pt")
    """
)

RUN = dict(epochs=3, lr=1e-2, batch_size=40, warmup=1, grad_clip=1.0, device="cpu")


def torchrun(tmp_path: Path, source: str, *args: str, prefix: str = "rank") -> list[dict]:
    """Run ``source`` with torchrun, 2 processes on this machine only; each rank's results."""
    script = tmp_path / f"{prefix}_ddp.py"
    script.write_text(source)
    pythonpath = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}  # gloo talks over the loopback interface
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    with socket.socket() as s:  # a free port on the loopback address
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--local-addr=127.0.0.1",
           str(script), str(tmp_path), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"{prefix}{r}.pt", map_location="cpu") for r in (0, 1)]


def run_ddp(tmp_path: Path, device: str) -> list[dict]:
    """The MLP script with torchrun, 2 processes, on ``device``; each rank's saved results."""
    return torchrun(tmp_path, SCRIPT, device)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_ddp_nccl_two_gpus_equal_single_gpu(tmp_path):
    single = mlp()
    fit(single, blobs(), **{**RUN, "device": "cuda"})
    for r in run_ddp(tmp_path, "cuda"):
        for name, p in single.state_dict().items():
            torch.testing.assert_close(r["model"][name], p.cpu(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    single = mlp()
    h = fit(single, blobs(), blobs(seed=1), **RUN)
    whole = evaluate(single, blobs(seed=1))
    ranks = run_ddp(tmp_path, "cpu")
    for r in ranks:
        for name, p in single.state_dict().items():
            torch.testing.assert_close(r["model"][name], p, rtol=1e-5, atol=1e-6)
        # fit's validation scores are all-reduced over the two shards of the val split
        assert r["history"]["val_loss"] == pytest.approx(h.val_loss, rel=1e-5)
        assert r["history"]["val_accuracy"] == pytest.approx(h.val_accuracy)
        assert r["history"]["train_loss"] == pytest.approx(h.train_loss, rel=1e-5)
        loss, n, confusion = r["eval"]
        assert n == 240 and loss == pytest.approx(whole.loss, rel=1e-5)
        assert torch.equal(confusion, whole.confusion)
    assert (tmp_path / "ddp.pt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


TRI_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from mmcourse.train import fit
    from mmcourse.train.distributed import dist_env
    from test_train_distributed import TRI_RUN, tri_data, tri_modal

    torch.set_num_threads(1)
    results = {}
    for audio in ("sequence", "cnn"):
        model, loss_fn = tri_modal(audio)
        history = fit(model, tri_data(), loss_fn=loss_fn, **TRI_RUN)
        results[audio] = {"model": model.state_dict(), "train_loss": history.train_loss}
    torch.save(results, Path(sys.argv[1]) / f"tri{dist_env().rank}.pt")
    """
)

TRI_RUN = dict(epochs=2, lr=3e-3, batch_size=32, device="cpu", seed=0)


def tri_data() -> dict:
    from mmcourse.data import load_split

    whole = load_split("val").tensors()
    return {k: v[:64] for k, v in whole.items()}  # 2 global batches of 32: 16 per process


def tri_modal(audio: str) -> tuple[MultimodalClassifier, MultiTaskLoss]:
    """The main job's model (late fusion) with modality dropout 0.3 and per-modality heads.

    ``audio="cnn"``: the course's audio CNN, whose BatchNorm normalizes each process's half
    batch by its own statistics, so 2 processes cannot equal 1. ``audio="sequence"``: an LSTM
    over the same log-mel frames instead, with no batch statistics: 2 processes must equal 1.
    """
    from mmcourse.nn import AudioEncoder, AudioFrontEnd
    from mmcourse.trimodal import DIM, build_model

    base = build_model("late", seed=0)
    encoders = dict(base.encoders)
    if audio == "sequence":
        encoders["audio"] = AudioEncoder(DIM, AudioFrontEnd(normalize=False), backbone="sequence")
    model = MultimodalClassifier(encoders, base.fusion, aux_heads=True, modality_dropout=0.3)
    return model, MultiTaskLoss(model)


@pytest.mark.slow
def test_ddp_tri_modal_with_modality_dropout_and_aux_heads(tmp_path, monkeypatch):
    drawn = []
    draw = multimodal._draw_dropped

    def recorded(*args):
        drawn.append(draw(*args))
        return drawn[-1]

    monkeypatch.setattr(multimodal, "_draw_dropped", recorded)
    single, loss_fn = tri_modal("sequence")
    h = fit(single, tri_data(), loss_fn=loss_fn, **TRI_RUN)
    assert any(drawn)  # some step dropped a modality: its encoder took no part in that step

    ranks = torchrun(tmp_path, TRI_SCRIPT, prefix="tri")
    for r in ranks:
        for name, p in single.state_dict().items():
            torch.testing.assert_close(r["sequence"]["model"][name], p, rtol=1e-4, atol=1e-5)
        assert r["sequence"]["train_loss"] == pytest.approx(h.train_loss, rel=1e-4)
    a, b = (r["cnn"]["model"] for r in ranks)  # with BatchNorm: the replicas stay identical
    for name, _ in tri_modal("cnn")[0].named_parameters():
        assert torch.equal(a[name], b[name]), name
    assert all(torch.isfinite(torch.tensor(r["cnn"]["train_loss"])).all() for r in ranks)
