"""WaveNet: shapes, causality, cached generation = recomputation, seeds, learning, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.nn import WaveNet, WaveNetBlock, bits_per_sample


def _model(n_labels: int = 0, seed: int = 0, **kw) -> WaveNet:
    torch.manual_seed(seed)
    kw = {"channels": 6, "skip_channels": 8, "dilations": (1, 2, 4), **kw}
    return WaveNet(quantization_channels=16, n_labels=n_labels, **kw).double().eval()


def test_shapes_and_receptive_field() -> None:
    m = _model(n_labels=3)
    codes = torch.randint(0, 16, (2, 11))
    labels = torch.tensor([0, 2])
    assert m(codes, labels).shape == (2, 16, 11)
    assert m.loss(codes, labels).shape == ()
    assert m.receptive_field == 1 + 1 + (1 + 2 + 4)  # input conv + blocks
    assert WaveNet().receptive_field == 257
    out = m.generate(7, labels)
    assert out.shape == (2, 7) and out.dtype == torch.long
    assert bool(((out >= 0) & (out < 16)).all())
    assert _model().generate(5, batch_size=3).shape == (3, 5)


@pytest.mark.parametrize("s", [0, 5, 13])
def test_changing_one_input_moves_only_the_outputs_within_the_receptive_field(s: int) -> None:
    m = _model()
    T = 25
    codes = torch.randint(0, 16, (1, T), generator=torch.Generator().manual_seed(s))
    other = codes.clone()
    other[0, s] = (codes[0, s] + 7) % 16
    changed = (m(codes) - m(other)).abs().amax(1)[0] > 0  # (T,)
    reach = torch.zeros(T, dtype=torch.bool)
    reach[s : s + m.receptive_field] = True
    assert not bool((changed & ~reach).any()), "an output moved outside [s, s + RF)"
    assert bool(changed[s]) and bool(changed[min(s + m.receptive_field - 1, T - 1)])


def test_cached_steps_equal_the_full_forward() -> None:
    m = _model(n_labels=4)
    labels = torch.tensor([3, 1])
    codes = torch.randint(0, 16, (2, 30), generator=torch.Generator().manual_seed(0))
    cache = m.new_cache(2, labels)
    with torch.no_grad():
        steps = torch.stack([m.step(codes[:, t], cache) for t in range(30)], dim=2)
        torch.testing.assert_close(steps, m(codes, labels))


@settings(max_examples=20, deadline=None)
@given(
    k=st.integers(1, 3),
    dilations=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    n_labels=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_cached_steps_equal_the_forward_for_any_stack(k, dilations, n_labels, seed) -> None:
    m = _model(n_labels=n_labels, seed=seed, kernel_size=k, dilations=tuple(dilations))
    labels = torch.arange(2) % n_labels if n_labels else None
    codes = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(seed))
    cache = m.new_cache(2, labels)
    with torch.no_grad():
        steps = torch.stack([m.step(codes[:, t], cache) for t in range(12)], dim=2)
        torch.testing.assert_close(steps, m(codes, labels))
    assert m.receptive_field == 1 + (k - 1) * (1 + sum(dilations))


def test_cached_generation_equals_recomputation_and_seeds_repeat() -> None:
    m = _model(n_labels=4)
    labels = torch.tensor([0, 1, 2, 3])

    def run(seed: int, cache: bool) -> torch.Tensor:
        return m.generate(40, labels, generator=torch.Generator().manual_seed(seed), cache=cache)

    fast, slow = run(0, True), run(0, False)
    assert torch.equal(fast, slow)
    assert torch.equal(run(0, True), fast)
    assert not torch.equal(run(1, True), fast)


def test_labels_condition_the_output() -> None:
    m = _model(n_labels=2)
    codes = torch.randint(0, 16, (1, 9))
    a, b = m(codes, torch.tensor([0])), m(codes, torch.tensor([1]))
    assert not torch.allclose(a, b)


def test_block_is_gated_with_residual_and_skip() -> None:
    torch.manual_seed(0)
    block = WaveNetBlock(3, 5, dilation=2).double()
    h = torch.randn(2, 3, 8, dtype=torch.float64)
    z = block.conv(h)
    a = torch.tanh(z[:, :3]) * torch.sigmoid(z[:, 3:])
    new_h, skip = block(h)
    torch.testing.assert_close(new_h, h + block.res(a))
    torch.testing.assert_close(skip, block.skip(a))


def test_bits_per_sample() -> None:
    uniform = torch.zeros(2, 256, 10)
    targets = torch.randint(0, 256, (2, 10))
    assert bits_per_sample(uniform, targets).item() == pytest.approx(8.0)
    sure = torch.full((1, 4, 3), -1e4)
    sure[0, 2] = 0.0
    assert bits_per_sample(sure, torch.full((1, 3), 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_it_learns_a_periodic_signal() -> None:
    torch.manual_seed(0)
    m = WaveNet(quantization_channels=16, channels=8, skip_channels=8, dilations=(1, 2, 4))
    pattern = torch.tensor([8, 12, 15, 12, 8, 4, 0, 4])
    codes = pattern.repeat(4, 8)  # (4, 64)
    opt = torch.optim.Adam(m.parameters(), lr=3e-2)
    for _ in range(60):
        loss = m.loss(codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() / math.log(2) < 0.5  # from 4 bits (uniform over 16) to nearly certain


def test_bad_arguments_get_clear_errors() -> None:
    m = _model(n_labels=3)
    with pytest.raises(ValueError, match="integer mu-law classes"):
        m(torch.rand(1, 5), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"classes in \[0, 15\]"):
        m(torch.tensor([[0, 16]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"labels of shape \(1,\)"):
        m(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]"):
        m(torch.tensor([[0, 1]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="no labels"):
        _model()(torch.tensor([[0, 1]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="n_samples"):
        m.generate(0, torch.tensor([0]))
    with pytest.raises(ValueError, match="temperature"):
        m.generate(3, torch.tensor([0]), temperature=0.0)
    with pytest.raises(ValueError, match="channels"):
        WaveNet(channels=0)
    with pytest.raises(ValueError, match="dilation"):
        WaveNet(dilations=())
