"""The trainer under torch.compile, on the course's own tri-modal model (``build_model``).

For every fusion method, model and loss trace into one graph (no graph break, no
recompilation) and train as in eager mode. Compiling with inductor on a CPU costs tens of seconds per model, so every
method is compiled through TorchDynamo and AOTAutograd only (``compile="aot_eager"``: the
tracing and the autograd graphs, no code generation), and inductor itself runs once, on the
main job's fusion method (every method with ``MMCOURSE_FULL_COMPILE=1``).
"""

import os

import pytest
import torch
from test_train import one_thread  # noqa: F401 (autouse fixture)
from torch._dynamo.testing import CompileCounterWithBackend

from mmcourse.data import load_split
from mmcourse.nn.fusion import METHODS
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.train import fit
from mmcourse.trimodal import build_model

RUN = dict(epochs=2, lr=3e-3, batch_size=16, device="cpu", amp=None)


@pytest.fixture(scope="module")
def data() -> dict:
    """32 validation examples of the course data: two equal batches of 16 (one shape)."""
    whole = load_split("val").tensors()
    return {k: v[:32] for k, v in whole.items()}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the graph-break counts of earlier tests
    yield
    torch._dynamo.reset()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, **tol) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=lambda m, name=name: f"{name}: {m}", **tol)


def graph_breaks() -> list[str]:
    """Why Dynamo broke graphs since the last reset (its own counters)."""
    return [reason.splitlines()[0] for reason in torch._dynamo.utils.counters["graph_break"]]


@pytest.mark.parametrize("fusion", list(METHODS))
def test_fit_compiles_one_graph_and_equals_eager(fusion, data):
    """The model and its loss trace into one graph for the whole run (no graph break, no
    recompilation in 4 steps), and train as in eager mode; ``inputs`` left at its default
    (a MultimodalClassifier takes the whole batch)."""
    eager, compiled = build_model(fusion), build_model(fusion)
    h_eager = fit(eager, data, **RUN)
    backend = CompileCounterWithBackend("aot_eager")  # counts the graphs Dynamo hands over
    h = fit(compiled, data, **RUN, compile=backend)
    assert graph_breaks() == [], graph_breaks()
    assert backend.frame_count == 1  # no recompilation either
    assert h.train_loss == pytest.approx(h_eager.train_loss, rel=1e-4)
    # Adam's first steps move a weight by about lr whatever its gradient's size, so rounding
    # differences in a near-zero gradient show up at the 1e-5 level
    assert_same_weights(eager, compiled, rtol=1e-3, atol=1e-4)


def test_main_job_shapes_compile_without_graph_break():
    """As in the main job: a ragged last batch (the batch axis becomes dynamic) and validation
    (inference mode): three graphs, no break."""
    whole = load_split("val").tensors()
    train = {k: v[:40] for k, v in whole.items()}  # batches of 16, 16 and 8
    val = {k: v[40:60] for k, v in whole.items()}
    backend = CompileCounterWithBackend("aot_eager")
    h = fit(build_model("late"), train, val, **{**RUN, "epochs": 1}, compile=backend)
    assert graph_breaks() == [], graph_breaks()
    assert backend.frame_count == 3  # training (B = 16), training (any B), evaluation
    assert len(h.val_loss) == 1


def test_explain_finds_no_graph_break_in_the_main_model(data):
    """The same with torch._dynamo.explain, on the main job's model in training mode."""
    model = build_model("late").train()
    with torch._dynamo.config.patch(allow_rnn=True):  # as fit compiles: LSTMs in the graph
        explained = torch._dynamo.explain(model)(data)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_fit_compiles_modality_dropout_and_aux_heads(data):
    """The modality-dropout draw runs in Python between two graphs (its one graph break);
    each subset of modalities kept compiles once."""
    def model() -> MultimodalClassifier:
        base = build_model("late")
        return MultimodalClassifier(dict(base.encoders), base.fusion, aux_heads=True,
                                    modality_dropout=0.5)

    eager, compiled = model(), model()
    fit(eager, data, **RUN, loss_fn=MultiTaskLoss(eager))
    fit(compiled, data, **RUN, loss_fn=MultiTaskLoss(compiled), compile="aot_eager")
    assert graph_breaks() == ["Skip calling `torch.compiler.disable()`d function"]
    assert_same_weights(eager, compiled, rtol=1e-3, atol=1e-4)


def test_fit_compile_names_bad_backends(data):
    with pytest.raises(TypeError, match="compile must be True/False, a torch.compile backend"):
        fit(build_model("late"), data, **RUN, compile=3)


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Inductor draws dropout masks from its own generator: switch dropout off to compare."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


# Inductor compiles each model for 25-60 s of CPU (cold cache): the suite runs the main
# job's fusion; MMCOURSE_FULL_COMPILE=1 runs every fusion method (about 3.5 minutes cold).
FULL_COMPILE = os.environ.get("MMCOURSE_FULL_COMPILE") == "1"


@pytest.mark.slow
@pytest.mark.parametrize("fusion", list(METHODS))
def test_fit_compiled_with_inductor(fusion, data):
    """compile=True: inductor's generated code, on the tri-modal model of each fusion method."""
    if fusion != "late" and not FULL_COMPILE:
        pytest.skip("inductor for every fusion method: set MMCOURSE_FULL_COMPILE=1")
    start = without_dropout(build_model(fusion))
    eager, compiled = without_dropout(build_model(fusion)), without_dropout(build_model(fusion))
    h_eager = fit(eager, data, **RUN)
    h = fit(compiled, data, **RUN, compile=True)
    assert h.train_loss == pytest.approx(h_eager.train_loss, rel=1e-3)
    # Inductor's fused kernels round differently, and training amplifies it: BatchNorm divides
    # by a batch's small standard deviations, and Adam's first steps move a weight by about lr
    # whatever the size of its gradient (a near-zero gradient of the other sign flips a step).
    # On this machine's CPU up to 9% of a model's weights differ from eager mode by more than
    # 1e-4, all but 0.5% by less than lr / 3, the largest by 1.4e-2; the trained models still
    # give the same predictions, logits within 8e-3. A wrong kernel would break all of that.
    agree = moved = total = 0
    for p, q, p0 in zip(eager.state_dict().values(), compiled.state_dict().values(),
                        start.state_dict().values(), strict=True):
        if not p.is_floating_point():
            continue
        agree += int(torch.isclose(q, p, rtol=1e-2, atol=1e-3).sum())
        moved += int((q - p0).abs().gt(1e-6).sum())
        total += p.numel()
    assert agree >= 0.99 * total, f"{fusion}: only {agree} of {total} weights agree with eager"
    assert moved >= 0.5 * total, f"{fusion}: training moved only {moved} of {total} weights"
    eager.eval(), compiled.eval()
    with torch.no_grad():
        y_eager, y = eager(data), compiled(data)  # (B, C)
    torch.testing.assert_close(y, y_eager, rtol=0, atol=2e-2)
    assert torch.equal(y.argmax(-1), y_eager.argmax(-1))


def test_fit_compiles_accumulation_and_activation_checkpointing(data):
    """Micro-batches of 8 (accumulate=2) and every encoder checkpointing its activations:
    still one graph, no break, and the run of eager mode without checkpointing (BatchNorm's
    running statistics included: the compiled recomputation does not update them again)."""
    eager, compiled = build_model("late"), build_model("late")
    for encoder in compiled.encoders.values():
        encoder.checkpoint_activations = True
    h_eager = fit(eager, data, **RUN, accumulate=2)
    backend = CompileCounterWithBackend("aot_eager")
    h = fit(compiled, data, **RUN, compile=backend, accumulate=2)
    assert graph_breaks() == [], graph_breaks()
    assert backend.frame_count == 1
    assert h.train_loss == pytest.approx(h_eager.train_loss, rel=1e-4)
    assert_same_weights(eager, compiled, rtol=1e-3, atol=1e-4)
