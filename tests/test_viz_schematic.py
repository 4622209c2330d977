"""The schematic figures (mmcourse.viz.schematic): each draws, with the labels it promises."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from mmcourse.viz import schematic


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


EXPECTED = {
    "lstm_cell": ["$c_{t-1}$", "$c_t$", "$h_{t-1}$", "$x_t$", "forget", "input", "candidate",
                  "output", "σ", "tanh", "i, f, g, o"],
    "split_heads": ["(B, T, E)", ".transpose(1, 2)", "head 0", "head 3", "wrong: .view(B, H, T"],
    "im2col": ["im2col", "cols: ($C k^2$, L) = (9, 4)", "Y: (O, L)", "reshape to\n(O, 2, 2)"],
    "mfcc_pipeline": ["waveform", "frames", "× window", "|DFT|²", "mel filters", "log (dB)",
                      "DCT-II", "MFCC", "torch.stft", "not yet MFCC"],
    "fusion_map": ['"concat"', '"linear"', '"nonlinear"', '"gated"', '"tensor"', '"lowrank"',
                   '"attention"', '"late" (logits)', '"late" (probs)', "image", "audio", "text"],
    "ring_allreduce": ["worker 0", "worker 3", "reduce-scatter 1", "all-gather 3", "Σ"],
}


@pytest.mark.parametrize("name", sorted(schematic.FIGURES))
def test_each_figure_draws_its_labels(name):
    fig = schematic.FIGURES[name]()
    assert isinstance(fig, Figure)
    text = _texts(fig)
    missing = [label for label in EXPECTED[name] if label not in text]
    assert not missing, f"{name}: labels missing from the figure: {missing}"
    fig.canvas.draw()  # renders (mathtext included) without error
    assert fig.get_size_inches()[0] <= 11.5  # fits a notebook column at the stored dpi


def test_every_figure_is_tested():
    assert set(EXPECTED) == set(schematic.FIGURES)


def test_fusion_map_names_every_method_of_the_package():
    from mmcourse.nn.fusion import METHODS

    text = _texts(schematic.fusion_map_figure())
    assert all(f'"{m}"' in text for m in METHODS), sorted(METHODS)


def test_split_heads_wrong_view_mixes_positions():
    # the correct split gives each head all T positions; the single view gives head 0 position 0
    fig = schematic.split_heads_figure(T=3, H=4, d_k=2)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "'head 0'" in labels and labels.count("0") >= 4 * 2 + 6


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_ring_allreduce_ends_with_the_full_sum_everywhere(n):
    states = schematic.ring_allreduce_steps(n)
    assert len(states) == 1 + 2 * (n - 1)
    everyone = frozenset(range(n))
    assert all(state[k][j] == frozenset({k}) for state in states[:1] for k in range(n) for j in range(n))
    after_reduce_scatter = states[n - 1]
    for k in range(n):  # worker k owns the finished chunk k + 1
        assert after_reduce_scatter[k][(k + 1) % n] == everyone
    assert all(part == everyone for row in states[-1] for part in row)
    for before, after in zip(states, states[1:], strict=False):  # one chunk changes per worker
        for k in range(n):
            assert sum(a != b for a, b in zip(before[k], after[k], strict=True)) <= 1


def test_ring_allreduce_needs_two_workers():
    with pytest.raises(ValueError, match="at least 2 workers"):
        schematic.ring_allreduce_steps(1)
