import math

import pytest
import torch

from kexue.nn.position import (
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    check_position_ids,
)


def test_sinusoidal_values():
    pe = SinusoidalPositionEmbedding(6)(torch.tensor([[0, 7]]))
    assert pe.shape == (1, 2, 6)
    for i in range(3):
        theta = 10000 ** (-2 * i / 6)
        assert pe[0, 1, 2 * i].item() == pytest.approx(math.sin(7 * theta), abs=1e-6)
        assert pe[0, 1, 2 * i + 1].item() == pytest.approx(math.cos(7 * theta), abs=1e-6)
    assert torch.equal(pe[0, 0], torch.tensor([0.0, 1.0] * 3))


def test_check_position_ids():
    assert check_position_ids(torch.arange(5)).shape == (1, 5)
    assert check_position_ids(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5)


def test_errors():
    with pytest.raises(ValueError, match="out of range.*4 learned positions"):
        LearnedPositionEmbedding(4, 8)(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=">= 0"):
        check_position_ids(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="integers"):
        check_position_ids(torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"\(seq,\) or \(batch, seq\)"):
        check_position_ids(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="positive even number, got 7"):
        SinusoidalPositionEmbedding(7)
