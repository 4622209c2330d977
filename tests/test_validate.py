"""Argument checks shared by the modules, and where value checks may read a tensor."""

import pytest
import torch

from mmcourse.nn import TextEncoder
from mmcourse.nn.image import ImageEncoder
from mmcourse.nn.sequence import SequenceEncoder, check_lengths
from mmcourse.nn.validate import positive_int, trusted_inputs, value_checks_enabled


def test_positive_int():
    assert positive_int("width", 3) == 3
    for bad in (0, -2, 1.5, True, "4", None):
        with pytest.raises(ValueError, match=f"expected width to be a positive int, got {bad!r}"):
            positive_int("width", bad)
    # the encoders share it
    with pytest.raises(ValueError, match="expected grid to be a positive int, got 0"):
        ImageEncoder(grid=0)
    with pytest.raises(ValueError, match="expected vocab_size to be a positive int, got 0"):
        TextEncoder(0)


def test_trusted_inputs_switch_value_checks_off_and_back():
    assert value_checks_enabled()
    with trusted_inputs():
        assert not value_checks_enabled()
        with trusted_inputs():
            assert not value_checks_enabled()
        assert not value_checks_enabled()
    assert value_checks_enabled()
    with pytest.raises(RuntimeError), trusted_inputs():
        raise RuntimeError
    assert value_checks_enabled()  # restored after an error too


def test_value_checks_skip_only_inside_trusted_inputs():
    enc = TextEncoder(10, 4, backbone="bag")
    tokens, lengths = torch.tensor([[1, 2, 3]]), torch.tensor([4])
    with pytest.raises(ValueError, match=r"expected every length in \[1, 3\]"):
        enc(tokens, lengths)
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 10\)"):
        enc(torch.tensor([[1, 12, 3]]), torch.tensor([3]))
    with trusted_inputs():  # the trainer checked its split before: no host read per step
        assert check_lengths(lengths, 1, 3).tolist() == [4]
    with pytest.raises(ValueError, match="expected tokens of shape"), trusted_inputs():
        enc(tokens[0])  # shape checks read no value: they always run


def test_lengths_stay_on_their_device():
    lengths = check_lengths(torch.tensor([2, 3], dtype=torch.int32), 2, 3)
    assert lengths.dtype == torch.int64 and lengths.device.type == "cpu"
    assert check_lengths(None, 2, 3, device=torch.device("meta")).device.type == "meta"
    enc = SequenceEncoder(2, 3)
    enc.check_input(torch.randn(2, 3, 2), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match=r"expected every length in \[1, 3\]"):
        enc.check_input(torch.randn(2, 3, 2), torch.tensor([1, 4]))
