"""mmcourse.runtime: seeding, device choice, threads."""

import pytest
import torch

from mmcourse.runtime import in_ci, pick_device, seed_everything, setup


def test_seed_everything_makes_torch_repeat():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    torch.testing.assert_close(a, torch.randn(4))
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_setup_sets_cpu_threads_and_rejects_bad_values(monkeypatch):
    monkeypatch.setenv("MMCOURSE_DEVICE", "cpu")
    before = torch.get_num_threads()
    try:
        assert setup(seed=0, threads=1, verbose=False).type == "cpu"
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="positive int"):
            setup(threads=0, verbose=False)
    finally:
        torch.set_num_threads(before)


def test_pick_device_refuses_a_missing_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")
    monkeypatch.delenv("MMCOURSE_DEVICE", raising=False)
    assert pick_device().type in ("cpu", "mps")


def test_in_ci_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MMCOURSE_QUIET", "0")
    assert not in_ci()
    monkeypatch.setenv("MMCOURSE_QUIET", "1")
    assert in_ci()
