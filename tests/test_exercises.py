"""Every exercise in every notebook: its checker passes the solution and fails the stub."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcourse import check
from mmcourse.exercises import find_exercises

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = [ex for path in sorted(NOTEBOOKS.glob("*.ipynb")) for ex in find_exercises(path)]


def _define(source: str, name: str):
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, "np": np}
    exec(compile(source, f"<exercise {name}>", "exec"), namespace)
    assert name in namespace, f"the exercise cell does not define a function named {name!r}"
    return namespace[name]


def test_exercises_found():
    assert ALL, "no exercise cells found in notebooks/"
    names = [ex.name for ex in ALL]
    assert len(names) == len(set(names)), f"exercise names must be unique: {names}"


@pytest.mark.parametrize("ex", ALL, ids=[f"{e.notebook}::{e.name}" for e in ALL])
def test_checker_passes_solution(ex):
    result = check.checker_for(ex.name)(_define(ex.solution, ex.name))
    assert str(result).startswith("✓")


@pytest.mark.parametrize("ex", ALL, ids=[f"{e.notebook}::{e.name}" for e in ALL])
def test_checker_fails_stub(ex):
    stub = _define(ex.stub, ex.name)
    with pytest.raises(check.CheckFailure, match="not written yet"):
        check.checker_for(ex.name)(stub)


@pytest.mark.parametrize("ex", ALL, ids=[f"{e.notebook}::{e.name}" for e in ALL])
def test_checker_is_called_in_notebook(ex):
    nb = nbformat.read(NOTEBOOKS / ex.notebook, as_version=4)
    later = "\n".join(c.source for c in nb.cells[ex.cell :] if c.cell_type == "code")
    assert f"check.{ex.name}(" in later, f"{ex.notebook}: no cell calls check.{ex.name}(...)"


def test_every_checker_has_an_exercise():
    """No dead checkers: each one in ``check.EXERCISES`` grades an exercise of some notebook."""
    used = {ex.name for ex in ALL}
    unused = sorted(set(check.EXERCISES) - used)
    assert not unused, f"checkers that no notebook exercise uses: {unused}"
