"""The scaling chapter's checkers: they pass right answers and name the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch

from mmcourse import check


def max_parameters(memory, world_size, stage, w=4, g=4, o=8):
    n = world_size
    per = w / (n if stage >= 3 else 1) + g / (n if stage >= 2 else 1) + o / (n if stage >= 1 else 1)
    return math.floor(memory / per)


def test_right_answers_pass():
    assert check.max_parameters(max_parameters).startswith("✓")


def test_every_stage_sharded_like_zero_3_is_named():
    def all_sharded(memory, world_size, stage, w=4, g=4, o=8):
        return math.floor(memory * world_size / (w + g + o))

    with pytest.raises(check.CheckFailure, match="as if stage 0 sharded everything"):
        check.max_parameters(all_sharded)


def test_a_float_answer_is_named():
    def unrounded(memory, world_size, stage, w=4, g=4, o=8):
        return max_parameters(memory, world_size, stage, w, g, o) + 0.5

    with pytest.raises(check.CheckFailure, match="expected a whole number of parameters"):
        check.max_parameters(unrounded)


def test_stages_off_by_one_are_caught():
    def shifted(memory, world_size, stage, w=4, g=4, o=8):  # stage s read as s + 1
        return max_parameters(memory, world_size, min(stage + 1, 3), w, g, o)

    with pytest.raises(check.CheckFailure, match=r"stage=0.*returned \d+, expected \d+"):
        check.max_parameters(shifted)


def test_the_reference_agrees_with_the_package_formula():
    from mmcourse.check.scaling import _max_parameters_reference
    from mmcourse.train.memory import zero_memory

    for stage in range(4):
        for world in (1, 3, 8):
            p = _max_parameters_reference(1e9, world, stage)
            assert zero_memory(p, world, stage).total <= 1e9 < zero_memory(p + 1, world, stage).total


def test_other_checkers_reject_wrong_answers():
    with pytest.raises(check.CheckFailure):
        check.scaled_lr(lambda base_lr, base_batch, batch, step, warmup: base_lr)
    with pytest.raises(check.CheckFailure):
        check.shard_indices(lambda n, w, r, shuffle, seed, epoch: torch.arange(r, n, w))


def test_checkers_are_listed():
    assert {"max_parameters", "scaled_lr", "shard_indices"} <= set(check.EXERCISES)
    assert "combine_shard_gradients" not in check.EXERCISES
