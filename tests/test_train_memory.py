"""Memory of training: the ZeRO formula per rank, the bytes a rank holds, and measured peaks."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmcourse.train.memory import PeakMemory, RankMemory, rank_memory, zero_memory


def test_zero_stages_shard_state_then_gradients_then_weights():
    p, n = 1_000_000, 4
    assert zero_memory(p, n, 0) == RankMemory(4e6, 4e6, 8e6)  # DDP: a full replica
    assert zero_memory(p, n, 1) == RankMemory(4e6, 4e6, 2e6)
    assert zero_memory(p, n, 2) == RankMemory(4e6, 1e6, 2e6)
    assert zero_memory(p, n, 3) == RankMemory(1e6, 1e6, 2e6)
    assert zero_memory(p, n, 0, "mixed") == RankMemory(2e6, 2e6, 12e6)
    assert zero_memory(p, n, 0).total == zero_memory(p, n, 0, "mixed").total == 16 * p


@settings(max_examples=50, deadline=None)
@given(p=st.integers(0, 10**9), n=st.integers(1, 1024), precision=st.sampled_from(["fp32", "mixed"]))
def test_each_stage_holds_no_more_than_the_one_before(p, n, precision):
    totals = [zero_memory(p, n, s, precision).total for s in range(4)]
    assert all(a >= b for a, b in itertools.pairwise(totals))
    assert totals[3] == pytest.approx(totals[0] / n)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stage must be one of"):
        zero_memory(10, 2, 4)
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        zero_memory(10, 0, 1)
    with pytest.raises(ValueError, match="precision must be one of"):
        zero_memory(10, 2, 1, "fp8")
    with pytest.raises(ValueError, match="parameters must be a non-negative int"):
        zero_memory(-1, 2, 1)


def test_rank_memory_of_a_replica_is_16_bytes_per_parameter_plus_step_counters():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    p = sum(q.numel() for q in model.parameters())
    assert rank_memory(model) == RankMemory(4 * p, 0, 0)  # no gradients yet
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(5, 10)).sum().backward()
    optimizer.step()
    held = rank_memory(model, optimizer)
    counters = 4 * len(list(model.parameters()))  # AdamW's step: one float32 per tensor
    assert held == RankMemory(4 * p, 4 * p, 8 * p + counters)
    assert held.total - counters == zero_memory(p, 1, 0).total


def test_peak_memory_counts_what_is_alive_at_once():
    with PeakMemory() as mem:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 live
        view = b[:10]  # a view: no new storage
        del a
        c = torch.ones(500)  # 6000 live
    assert mem.peak == 8000 and view.numel() == 10
    assert mem.current == 6000
    del b, view, c
    assert mem.current == 0


def test_peak_memory_of_backward_includes_saved_activations():
    torch.manual_seed(0)
    layers = [nn.Linear(256, 256) for _ in range(4)]
    x = torch.randn(64, 256, requires_grad=True)
    with PeakMemory() as forward_only:
        with torch.no_grad():
            h = x
            for layer in layers:
                h = layer(h).relu()
    with PeakMemory() as training:
        h = x
        for layer in layers:
            h = layer(h).relu()
        h.sum().backward()
    activation = 64 * 256 * 4
    assert forward_only.peak <= 3 * activation  # a layer's input, its product and its ReLU
    assert training.peak >= 4 * activation  # every layer's output kept for the backward
