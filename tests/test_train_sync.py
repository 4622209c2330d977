"""A training step never reads a tensor on the host, so on a GPU it never waits for the device.

Reading a value (``.item()``, ``.tolist()``, ``bool()``, ``int()``, ``.cpu()``...) makes the
host wait until the GPU has computed it: the queue of launched kernels drains, and the GPU
idles while Python prepares the next step. On a CPU-only machine nothing waits, so the test
makes every such read raise while a step runs (fetching the batch, forward, loss, backward,
optimizer, scheduler, and the running tally). Input checks that need values run once per
split, before the first step. On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` checks
the same thing from the CUDA side.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import pytest
import torch
from test_train import one_thread  # noqa: F401 (autouse fixture)

from mmcourse.data import load_split
from mmcourse.nn import multimodal
from mmcourse.nn.fusion import METHODS
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.train import fit, loop
from mmcourse.train.data import Split
from mmcourse.trimodal import build_model

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__",
         "__complex__", "__array__", "__format__")


class HostReadGuard:
    """Within ``installed()``: every value read of a tensor while ``active`` is recorded, raises."""

    def __init__(self) -> None:
        self.active = False
        self.reads: list[str] = []
        self.steps = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[HostReadGuard]:
        saved = {name: torch.Tensor.__dict__.get(name) for name in READS}
        originals = {name: getattr(torch.Tensor, name) for name in READS}
        for name in READS:
            setattr(torch.Tensor, name, self._guarded(name, originals[name]))
        try:
            yield self
        finally:
            for name, method in saved.items():
                if method is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, method)

    def _guarded(self, name: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def read(t, *args, **kwargs):
            if self.active:
                self.reads.append(name)
                raise AssertionError(f"Tensor.{name}() read a value on the host inside a step")
            return method(t, *args, **kwargs)

        return read

    @contextlib.contextmanager
    def on(self, active: bool = True) -> Iterator[None]:
        before, self.active = self.active, active
        try:
            yield
        finally:
            self.active = before

    def watch(self, fn: Callable, count: bool = False) -> Callable:
        @functools.wraps(fn)
        def watched(*args, **kwargs):
            with self.on():
                out = fn(*args, **kwargs)
            self.steps += count
            return out

        return watched

    def allow(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def allowed(*args, **kwargs):
            with self.on(False):
                return fn(*args, **kwargs)

        return allowed


class WatchedBatches:
    """An epoch's batches, each fetched inside ``context()`` (the epoch's index is made before)."""

    def __init__(self, batches: Iterator[dict], context: Callable) -> None:
        self.batches, self.context = iter(batches), context

    def __iter__(self) -> WatchedBatches:
        return self

    def __next__(self) -> dict:
        with self.context():
            return next(self.batches)


@pytest.fixture
def guard(monkeypatch) -> Iterator[HostReadGuard]:
    g = HostReadGuard()
    monkeypatch.setattr(loop._Step, "__call__", g.watch(loop._Step.__call__, count=True))
    monkeypatch.setattr(loop._Tally, "add", g.watch(loop._Tally.add))
    epoch = Split.epoch
    monkeypatch.setattr(Split, "epoch",
                        lambda self, *a, **k: WatchedBatches(epoch(self, *a, **k), g.on))
    with g.installed():
        yield g


@pytest.fixture(scope="module")
def data() -> dict:
    whole = load_split("val").tensors()
    return {k: v[:32] for k, v in whole.items()}


RUN = dict(epochs=2, lr=1e-3, batch_size=16, device="cpu", fused=True, grad_clip=1.0,
           schedule="cosine")


def test_the_guard_catches_reads(guard):
    x = torch.ones(3)
    with guard.on():
        for read in (lambda: x.sum().item(), lambda: bool(x.any()), lambda: x.tolist(),
                     lambda: int(x[0]), lambda: [0, 1][x.long()[0]], lambda: x.cpu()):
            with pytest.raises(AssertionError, match="read a value on the host"):
                read()
    assert len(guard.reads) == 6
    assert x.sum().item() == 3.0  # off again


@pytest.mark.parametrize("fusion", list(METHODS))
def test_training_steps_read_nothing_on_the_host(guard, data, fusion):
    model = build_model(fusion)
    h = fit(model, data, data, **RUN)
    assert guard.reads == [] and guard.steps == 4
    assert all(torch.isfinite(torch.tensor(h.train_loss)))


def test_modality_dropout_reads_only_its_own_draw(guard, monkeypatch, data):
    """The draw of the modalities to drop reads torch's CPU generator, never the device."""
    monkeypatch.setattr(multimodal, "_draw_dropped", guard.allow(multimodal._draw_dropped))
    base = build_model("late")
    model = MultimodalClassifier(dict(base.encoders), base.fusion, aux_heads=True,
                                 modality_dropout=0.5)
    fit(model, data, **RUN, loss_fn=MultiTaskLoss(model))
    assert guard.reads == [] and guard.steps == 4


def test_accumulated_checkpointed_steps_read_nothing_on_the_host(guard, data):
    """Micro-batches cut by their shapes, encoders recomputing their activations: no read."""
    model = build_model("late")
    for encoder in model.encoders.values():
        encoder.checkpoint_activations = True
    fit(model, data, **RUN, accumulate=3)
    assert guard.reads == [] and guard.steps == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fusion", list(METHODS))
def test_gpu_training_steps_never_sync(monkeypatch, data, fusion):
    """Eager steps on CUDA (bf16/fp16 autocast, fused AdamW) under sync debug mode "error"."""

    @contextlib.contextmanager
    def sync_is_an_error() -> Iterator[None]:
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(0)

    def no_sync(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            with sync_is_an_error():
                return fn(*args, **kwargs)

        return checked

    monkeypatch.setattr(loop._Step, "__call__", no_sync(loop._Step.__call__))
    monkeypatch.setattr(loop._Tally, "add", no_sync(loop._Tally.add))
    epoch = Split.epoch
    monkeypatch.setattr(Split, "epoch", lambda self, *a, **k: WatchedBatches(
        epoch(self, *a, **k), sync_is_an_error))
    model = build_model(fusion)
    h = fit(model, data, data, **{**RUN, "device": "cuda", "fused": None})
    assert next(model.parameters()).device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(h.train_loss)))
