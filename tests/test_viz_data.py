"""The data plots (mmcourse.viz.images, mmcourse.viz.audio): what they draw, and their errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mmcourse.viz.audio import plot_spectrogram, plot_waveform, spectrogram_db
from mmcourse.viz.images import image_grid, mosaic, show_image


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_mosaic_places_each_image_in_its_class_row():
    images = torch.rand(30, 1, 8, 8)
    labels = torch.arange(30) % 3
    canvas, classes = mosaic(images, labels, per_class=4, gap=1)
    assert canvas.shape == (3 * 9 - 1, 4 * 9 - 1) and classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(canvas[9:17, 18:26], images[7, 0].numpy())  # class 1, third: item 7
    assert np.isnan(canvas[8]).all() and np.isnan(canvas[:, 8]).all()  # the gaps


def test_mosaic_leaves_places_empty_when_a_class_is_short():
    canvas, _ = mosaic(np.random.default_rng(0).random((3, 8, 8)), [0, 0, 1], per_class=2)
    assert np.isnan(canvas[9:, 9:]).all() and not np.isnan(canvas[9:, :8]).any()


def test_image_grid_labels_the_rows():
    fig = image_grid(torch.rand(30, 8, 8), torch.arange(30) % 3, 4, ["a", "b", "c"], title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.get_yticks(), [3.5, 12.5, 21.5])  # the middle of each row
    assert ax.get_title() == "t"


def test_image_errors():
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, 1, H, W\)"):
        image_grid(torch.rand(4, 3, 8, 8), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="one label per image"):
        image_grid(torch.rand(4, 8, 8), [0, 1])
    ax = show_image(torch.rand(1, 8, 8), title="x")
    assert ax.get_title() == "x"


def test_waveform_time_axis_is_in_seconds():
    ax = plot_waveform(torch.zeros(4000), 8000, title="w")
    assert ax.get_xlim() == (0.0, 0.5)
    np.testing.assert_allclose(ax.lines[0].get_xdata()[-1], 3999 / 8000)
    with pytest.raises(ValueError, match=r"\(L,\)"):
        plot_waveform(torch.zeros(2, 10), 8000)


def test_spectrogram_db_matches_torch_stft_and_finds_a_tone():
    sr, f0 = 8000, 1000.0
    t = torch.arange(4000, dtype=torch.float64) / sr
    wave = torch.sin(2 * torch.pi * f0 * t)
    s = spectrogram_db(wave, n_fft=256, hop=80)
    ref = (
        torch.stft(
            wave, 256, 80, window=torch.hann_window(256, dtype=torch.float64), return_complex=True
        ).abs()
        ** 2
    )
    np.testing.assert_allclose(s, 10 * np.log10(ref.numpy() + 1e-10))
    assert s.shape == (129, 4000 // 80 + 1)
    assert int(np.argmax(s[:, 10])) == round(f0 / (sr / 256))  # bin 32 = 1000 Hz


def test_plot_spectrogram_extent_and_errors():
    ax = plot_spectrogram(wave=torch.randn(8000), sample_rate=8000, hop=80)
    assert ax.images[0].get_extent() == [0.0, 101 * 80 / 8000, 0.0, 4000.0]
    ax = plot_spectrogram(torch.randn(32, 50), 8000, 80, ylabel="mel band")
    assert ax.get_ylabel() == "mel band" and ax.images[0].get_extent()[1] == 0.5
    with pytest.raises(ValueError, match="exactly one of spec"):
        plot_spectrogram()
    with pytest.raises(ValueError, match=r"\(bins, frames\)"):
        plot_spectrogram(torch.randn(3, 4, 5))
