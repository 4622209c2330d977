"""Two "nodes" on one machine: two ``torchrun`` launchers of one process each meet through a
c10d rendezvous on 127.0.0.1, as two machines of a cluster would, and train through ``fit``
to the weights of a single process: an MLP (with and without gradient accumulation under DDP)
and the course's tri-modal model with modality dropout and per-modality heads. Everything binds
to the loopback address only.
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
from test_train_distributed import TRI_RUN, tri_data, tri_modal

from mmcourse.train import fit

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from mmcourse.train import fit
    from mmcourse.train.distributed import dist_env
    from test_train import blobs, mlp
    from test_train_distributed import TRI_RUN, tri_data, tri_modal
    from test_train_multinode import RUN

    torch.set_num_threads(1)
    env = dist_env()
    results = {"world_size": env.world_size}
    for accumulate in (1, 3):
        model = mlp()
        history = fit(model, blobs(), **RUN, accumulate=accumulate)
        results[accumulate] = {"model": model.state_dict(), "train_loss": history.train_loss}
    model, loss_fn = tri_modal("sequence")
    history = fit(model, tri_data(), loss_fn=loss_fn, **TRI_RUN)
    results["tri"] = {"model": model.state_dict(), "train_loss": history.train_loss}
    torch.save(results, Path(sys.argv[1]) / f"node{env.rank}.pt")
    """
)

# 240 samples in global batches of 44: 5 of 44 and a last one of 20; per node 22 and 10,
# cut by accumulate=3 into micro-batches of 7, 7, 8 and 3, 3, 4
RUN = dict(epochs=2, lr=1e-2, batch_size=44, warmup=1, grad_clip=1.0, device="cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(tmp_path: Path) -> list[dict]:
    """Two torchrun launchers, ``--nnodes=2 --nproc_per_node=1``, one c10d rendezvous on
    127.0.0.1 (the first launcher hosts its store); each node's saved results."""
    script = tmp_path / "two_nodes.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
           "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    port = free_port()
    launchers = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
               "--rdzv-id=two-nodes", f"--rdzv-conf=is_host={node == 0}",
               "--local-addr=127.0.0.1", "--max-restarts=0", str(script), str(tmp_path)]
        launchers.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    failures = []
    for node, proc in enumerate(launchers):
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for p in launchers:
                p.kill()
            raise
        if proc.returncode != 0:
            failures.append(f"node {node} exited with {proc.returncode}:\n{err[-2000:]}")
    assert not failures, "\n".join(failures)
    return [torch.load(tmp_path / f"node{r}.pt", map_location="cpu") for r in (0, 1)]


@pytest.mark.slow
def test_two_nodes_on_loopback_equal_one_process(tmp_path):
    single = mlp()
    h = fit(single, blobs(), **RUN)
    nodes = launch_two_nodes(tmp_path)
    for node in nodes:
        assert node["world_size"] == 2
        for accumulate in (1, 3):  # gradient accumulation across nodes: the same steps
            run = node[accumulate]
            for name, p in single.state_dict().items():
                torch.testing.assert_close(run["model"][name], p, rtol=1e-5, atol=1e-6)
            assert run["train_loss"] == pytest.approx(h.train_loss, rel=1e-5)
    # the course's model (its audio CNN swapped for an LSTM: BatchNorm's per-process batch
    # statistics would make two processes differ from one, see test_train_distributed)
    tri, loss_fn = tri_modal("sequence")
    h_tri = fit(tri, tri_data(), loss_fn=loss_fn, **TRI_RUN)
    for node in nodes:
        for name, p in tri.state_dict().items():
            torch.testing.assert_close(node["tri"]["model"][name], p, rtol=1e-4, atol=1e-5)
        assert node["tri"]["train_loss"] == pytest.approx(h_tri.train_loss, rel=1e-4)
