"""The trainer under torch.compile, on the course's own tri-modal model (``build_model``).

For every fusion method, model and loss trace into one graph (no graph break, no
recompilation) and train as in eager mode. Compiling with inductor on a CPU costs tens of seconds per model, so every
method is compiled through TorchDynamo and AOTAutograd only (``compile="aot_eager"``: the
tracing and the autograd graphs, no code generation), and inductor itself runs once, on the
main job's fusion method.
"""

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


@pytest.mark.slow
def test_fit_compiled_with_inductor_main_fusion(data):
    """compile=True: inductor's generated code, on the main job's model (late fusion)."""
    eager, compiled = without_dropout(build_model("late")), without_dropout(build_model("late"))
    h_eager = fit(eager, data, **RUN)
    h = fit(compiled, data, **RUN, compile=True)
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.train_loss == pytest.approx(h_eager.train_loss, rel=1e-3)
    # Inductor's fused kernels round differently. Through the audio CNN's BatchNorm (division
    # by a batch's small standard deviations) and Adam (whose first steps move a weight by
    # about lr whatever the size of its gradient, so a near-zero gradient of the other sign
    # flips a step) that shows: on this machine's CPU about 2% of the audio CNN's weights differ by
    # more than 1e-4, by up to 4.8e-3. Every weight stays within 2 lr per step of eager mode;
    # the rest of the model (no batch statistics) agrees to rounding.
    steps = RUN["epochs"] * len(data["label"]) // RUN["batch_size"]
    for (name, p), q in zip(eager.state_dict().items(), compiled.state_dict().values(),
                            strict=True):
        if not p.is_floating_point():
            continue
        assert (q - p).abs().max() <= 2 * RUN["lr"] * steps, name
        if not name.startswith("encoders.audio."):
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


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
