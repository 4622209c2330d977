"""Data parallelism: torchrun's environment, sharding of global batches, and a real 2-process
DDP run (gloo on the CPU) that must end with the weights of single-process training."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_train import blobs, mlp, one_thread  # noqa: F401 (autouse fixture)

from mmcourse.train import evaluate, fit
from mmcourse.train.data import shard_batches
from mmcourse.train.distributed import DistEnv, dist_env


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


def run_ddp(tmp_path: Path, device: str) -> list[dict]:
    """Train with torchrun, 2 processes, on ``device``; each rank's saved results."""
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path), device]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu") for r in (0, 1)]


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
