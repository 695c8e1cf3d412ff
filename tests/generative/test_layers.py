import pytest
from torch import nn

from kexue.generative import mlp


def test_mlp_puts_the_activation_between_linear_layers_only():
    net = mlp([4, 8, 8, 2], nn.LeakyReLU, negative_slope=0.3)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.LeakyReLU, nn.Linear, nn.LeakyReLU, nn.Linear]
    assert net[1].negative_slope == 0.3
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [8, 8, 2]
    assert [type(m) for m in mlp([3, 5])] == [nn.Linear]


def test_mlp_needs_two_sizes():
    with pytest.raises(ValueError, match="at least"):
        mlp([3])
