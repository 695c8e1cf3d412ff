import math

import pytest
import torch
from torch import nn

from kexue.nn.init import (
    AVERAGES,
    average_dimension,
    fan_average_normal_,
    fan_average_uniform_,
    fans,
)


def test_average_dimensions_are_the_posts_means_in_their_order():
    m, n = 64, 256
    d = {a: average_dimension(m, n, a) for a in AVERAGES}
    assert d == pytest.approx({"fan_in": 64, "fan_out": 256, "arithmetic": 160,
                               "geometric": 128, "quadratic": (64**2 + 256**2) / 320})
    assert d["quadratic"] >= d["arithmetic"] >= d["geometric"]
    assert {a: average_dimension(7, 7, a) for a in AVERAGES} == dict.fromkeys(AVERAGES, 7.0)


def test_quadratic_minimises_the_per_layer_squared_deviation():
    m, n = 48, 300

    def deviation(t):
        return (m * t - 1) ** 2 + (n * t - 1) ** 2

    best = 1 / average_dimension(m, n, "quadratic")
    assert all(deviation(best) < deviation(best * (1 + e)) for e in (-1e-3, 1e-3, 0.1, -0.1))


def test_geometric_keeps_the_moment_through_m_to_n_to_m():
    m, n = 64, 256
    t = 1 / average_dimension(m, n, "geometric")
    assert (m * t) * (n * t) == pytest.approx(1.0)  # forward; backward is (n t)(m t)


def test_fans_follow_torch_layouts():
    assert fans(torch.empty(30, 20)) == (20, 30)  # Linear: (out, in)
    assert fans(torch.empty(8, 4, 3, 3)) == (36, 72)  # conv: kernel area counts
    w = torch.empty(8, 4, 3, 3)
    a, b = nn.init._calculate_fan_in_and_fan_out(w)
    assert fans(w) == (a, b)


@pytest.mark.parametrize("fill", [fan_average_normal_, fan_average_uniform_])
@pytest.mark.parametrize("average", AVERAGES)
def test_empirical_variance_is_gain_squared_over_d(fill, average):
    torch.manual_seed(0)
    w = fill(torch.empty(400, 100), average, gain=math.sqrt(2))
    expected = 2 / average_dimension(100, 400, average)
    assert w.var().item() == pytest.approx(expected, rel=0.02)
    assert abs(w.mean().item()) < 0.01 * math.sqrt(expected)


def test_arithmetic_is_xavier():
    torch.manual_seed(0)
    ours = fan_average_uniform_(torch.empty(50, 20), "arithmetic", gain=1.3)
    torch.manual_seed(0)
    xavier = nn.init.xavier_uniform_(torch.empty(50, 20), gain=1.3)
    torch.testing.assert_close(ours, xavier)


@pytest.mark.parametrize("call, match", [
    (lambda: average_dimension(0, 3), "fan_in"),
    (lambda: average_dimension(3, 2.5), "fan_out"),
    (lambda: average_dimension(3, 4, "harmonic"), "average"),
    (lambda: fan_average_normal_(torch.empty(5)), "at least 2"),
    (lambda: fan_average_normal_(torch.empty(5, 5), gain=0.0), "gain"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_normal_init_is_bert_initialisation():
    from torch import nn

    from kexue.nn import normal_init_

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.LayerNorm(256), nn.Embedding(500, 256))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    model.apply(lambda m: normal_init_(m, 0.02))
    for layer in (model[0], model[2]):
        assert abs(layer.weight.std().item() - 0.02) < 0.001 and abs(layer.weight.mean().item()) < 0.001
    assert torch.equal(model[0].bias, torch.zeros(256))
    assert torch.equal(model[1].weight, torch.full((256,), 3.0))  # LayerNorm untouched
