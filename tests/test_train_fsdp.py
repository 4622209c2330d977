"""Sharded data parallelism (FSDP2) in ``fit``: 2 processes (gloo on the CPU, 127.0.0.1) train
the course's tri-modal model to the weights of one process, each holding about half of the
parameters DDP holds; their sharded checkpoint resumes exactly on 2 processes and loads into
a single process for evaluation.

The model is the main job's (``build_model("late")`` with per-modality heads and modality
dropout, ``tri_modal`` of the DDP tests) with its audio CNN swapped for an LSTM over the same
log-mel frames: the CNN's BatchNorm normalizes each process's half batch by its own
statistics, so two processes would compute something else than one, sharded or not.
"""

import shutil
import textwrap

import pytest
import torch
from test_train import one_thread  # noqa: F401 (autouse fixture)
from test_train_distributed import TRI_RUN, torchrun, tri_data, tri_modal

from mmcourse.train import distributed, evaluate, fit, load_sharded
from mmcourse.train.memory import RankMemory

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from mmcourse.train import fit
    from mmcourse.train.distributed import dist_env, full_state_dict
    from mmcourse.train.memory import rank_memory
    from test_train_distributed import tri_data, tri_modal
    from test_train_fsdp import RUN

    torch.set_num_threads(1)
    out = Path(sys.argv[1])

    def memory(model):
        # weights and gradients as fit left them (a modality dropped in the last step left its
        # encoder without gradients: zeros in their place); AdamW's m and v made by a step
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        optimizer = torch.optim.AdamW(model.parameters())
        optimizer.step()
        return vars(rank_memory(model, optimizer))

    results = {}
    model, loss_fn = tri_modal("sequence")
    fit(model, tri_data(), loss_fn=loss_fn, **{**RUN, "epochs": 1}, strategy="ddp")
    results["ddp_memory"] = memory(model)

    model, loss_fn = tri_modal("sequence")  # stopped after 2 epochs, then resumed to 3
    fit(model, tri_data(), loss_fn=loss_fn, **{**RUN, "epochs": 2}, strategy="fsdp",
        checkpoint=out / "sharded")
    model, loss_fn = tri_modal("sequence")
    h = fit(model, tri_data(), loss_fn=loss_fn, **RUN, strategy="fsdp",
            checkpoint=out / "sharded", resume=True)
    results["resumed"] = {"model": full_state_dict(model), "train_loss": h.train_loss}

    model, loss_fn = tri_modal("sequence")  # 3 epochs without a stop
    h = fit(model, tri_data(), loss_fn=loss_fn, **RUN, strategy="fsdp")
    results["fsdp"] = {"model": full_state_dict(model), "train_loss": h.train_loss}
    results["fsdp_memory"] = memory(model)
    torch.save(results, out / f"fsdp{dist_env().rank}.pt")
    """
)

RUN = {**TRI_RUN, "epochs": 3}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[list[dict], object]:
    folder = tmp_path_factory.mktemp("fsdp")
    results = torchrun(folder, SCRIPT, prefix="fsdp")
    for r in results:
        for key in ("ddp_memory", "fsdp_memory"):
            r[key] = RankMemory(**r[key])
    return results, folder


@pytest.fixture(scope="module")
def single() -> tuple[torch.nn.Module, list[float]]:
    torch.set_num_threads(1)
    model, loss_fn = tri_modal("sequence")
    h = fit(model, tri_data(), loss_fn=loss_fn, **RUN)
    return model, h.train_loss


@pytest.mark.slow
def test_fsdp_two_processes_equal_one_process(ranks, single):
    model, train_loss = single
    for r in ranks[0]:
        fsdp = r["fsdp"]
        assert fsdp["train_loss"] == pytest.approx(train_loss, rel=1e-5)
        assert fsdp["model"].keys() == model.state_dict().keys()
        for name, p in model.state_dict().items():
            torch.testing.assert_close(fsdp["model"][name], p, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
def test_fsdp_holds_half_of_what_ddp_holds_per_rank(ranks):
    results = ranks[0]
    ddp = results[0]["ddp_memory"]
    assert all(r["ddp_memory"] == ddp for r in results)  # a full replica on every rank
    for part in ("weights", "gradients"):
        shards = [getattr(r["fsdp_memory"], part) for r in results]
        assert sum(shards) == getattr(ddp, part)  # the shards add up to one replica
        for s in shards:  # a tensor of odd length leaves one more row on rank 0
            assert s / getattr(ddp, part) == pytest.approx(0.5, abs=0.01), (part, s)
    assert ddp.gradients == ddp.weights  # one float32 gradient per float32 weight
    for r in results:  # AdamW's state: 2 floats per parameter, plus a step counter per tensor
        fsdp = r["fsdp_memory"]
        assert 2 * fsdp.weights <= fsdp.optimizer <= 2.02 * fsdp.weights
        assert fsdp.total / ddp.total == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow
def test_sharded_checkpoint_resumes_exactly_on_two_processes(ranks):
    for r in ranks[0]:
        resumed, straight = r["resumed"], r["fsdp"]
        assert resumed["train_loss"] == straight["train_loss"]
        for name, p in straight["model"].items():
            assert torch.equal(resumed["model"][name], p), name


@pytest.mark.slow
def test_sharded_checkpoint_loads_into_one_process(ranks, single):
    """Written by 2 processes (each its half of every tensor), read whole by one process
    without a process group: the model evaluates as the 2-process model does."""
    results, folder = ranks
    files = sorted(p.name for p in (folder / "sharded").glob("epoch-*/*"))
    assert files == [".metadata", "__0_0.distcp", "__1_0.distcp", "trainer-rank0.pt",
                     "trainer-rank1.pt"]
    assert not distributed.active()
    model, loss_fn = tri_modal("sequence")
    state = load_sharded(folder / "sharded", model, loss_fn=loss_fn)
    assert state["epoch"] == 3 and state["world_size"] == 2
    for name, p in results[0]["resumed"]["model"].items():
        assert torch.equal(model.state_dict()[name], p), name
    reference, _ = single
    scores = evaluate(model, tri_data())
    assert scores.loss == pytest.approx(evaluate(reference, tri_data()).loss, rel=1e-4)


@pytest.mark.slow
def test_one_process_continues_the_two_process_run(ranks, tmp_path):
    """Resharded resume: one process (no group, strategy "fsdp") reads the checkpoint of the
    2-process run after 3 epochs and trains a 4th, to the weights of 4 epochs in one process."""
    results, folder = ranks
    shutil.copytree(folder / "sharded", tmp_path / "sharded")  # the module's folder stays as is
    model, loss_fn = tri_modal("sequence")
    h = fit(model, tri_data(), loss_fn=loss_fn, **{**RUN, "epochs": 4}, strategy="fsdp",
            checkpoint=tmp_path / "sharded", resume=True)
    reference, ref_loss = tri_modal("sequence")
    h_ref = fit(reference, tri_data(), loss_fn=ref_loss, **{**RUN, "epochs": 4})
    assert h.train_loss[:3] == results[0]["resumed"]["train_loss"]  # the history came along
    assert h.train_loss == pytest.approx(h_ref.train_loss, rel=1e-5)
    for name, p in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")
