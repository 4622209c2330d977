"""The 2-D embedding plot: its PCA against scikit-learn, and the figure it draws."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from mmcourse.viz.embedding import pca_2d, plot_embedding


def test_pca_matches_sklearn_up_to_sign():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 3, 1, 1, 1, 1])
    mine = pca_2d(x).numpy()
    ref = PCA(n_components=2).fit_transform(x.numpy())
    for j in range(2):
        sign = np.sign(mine[:, j] @ ref[:, j])
        np.testing.assert_allclose(sign * mine[:, j], ref[:, j], atol=1e-10)


def test_plot_draws_every_point_with_one_marker_per_group():
    gen = torch.Generator().manual_seed(1)
    groups = {"image": torch.randn(12, 5, generator=gen), "audio": torch.randn(7, 5, generator=gen)}
    labels = {"image": torch.arange(12) % 3, "audio": torch.arange(7) % 3}
    fig = plot_embedding(groups, labels, classes=["a", "b", "c"])
    ax = fig.axes[0]
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [12, 7]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["image", "audio", "a", "b", "c"]
    plt.close(fig)


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        pca_2d(torch.randn(5))
    with pytest.raises(ValueError, match="one d"):
        plot_embedding({"a": torch.randn(3, 4), "b": torch.randn(3, 5)}, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) for 'a'"):
        plot_embedding({"a": torch.randn(3, 4)}, {"a": torch.zeros(4, dtype=torch.long)})
