import pytest
import torch
from torch import nn

from kexue.train.weissi import weissi_penalty


def relu_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double()


def linears(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def shifted(model, gammas):
    """W_l -> gamma_l W_l, b_l -> (gamma_1 ... gamma_l) b_l: the same function when prod = 1."""
    out = relu_mlp()
    out.load_state_dict(model.state_dict())
    cumulative = 1.0
    with torch.no_grad():
        for layer, gamma in zip(linears(out), gammas):
            cumulative *= gamma
            layer.weight.mul_(gamma)
            layer.bias.mul_(cumulative)
    return out


def l2(model):
    return sum(layer.weight.pow(2).sum() for layer in linears(model))


def test_formula():
    model = relu_mlp()
    expected = sum(0.3 * torch.log(w.norm()) + 0.02 * w.abs().sum() / w.norm()
                   for w in (layer.weight for layer in linears(model)))
    torch.testing.assert_close(weissi_penalty(model, 0.3, 0.02), expected)


@pytest.mark.parametrize("gammas", [(2.0, 0.5, 1.0), (3.0, 0.25, 4.0 / 3.0), (0.1, 7.0, 1 / 0.7)])
def test_invariant_to_weight_scale_shift_while_l2_is_not(gammas):
    model = relu_mlp()
    other = shifted(model, gammas)
    x = torch.randn(10, 4, dtype=torch.float64)
    torch.testing.assert_close(other(x), model(x))  # the same function
    torch.testing.assert_close(weissi_penalty(other, 1.0, 0.1), weissi_penalty(model, 1.0, 0.1))
    assert abs(l2(other) - l2(model)) > 0.1 * l2(model)
    # a shift with product != 1 changes the log term by lambda1 * log(prod gamma)
    doubled = shifted(model, (2.0, 1.0, 1.0))
    torch.testing.assert_close(weissi_penalty(doubled, 1.0, 0.0) - weissi_penalty(model, 1.0, 0.0),
                               torch.log(torch.tensor(2.0, dtype=torch.float64)))


def test_gradient_of_log_term_and_gradcheck():
    model = relu_mlp(1)
    weissi_penalty(model, 1.0, 0.0).backward()
    for layer in linears(model):
        w = layer.weight
        torch.testing.assert_close(w.grad, w / w.norm() ** 2)  # d log||W|| / dW
        assert layer.bias.grad is None  # biases are not penalised
    w1 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def penalty(a, b):
        net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)).double()
        del net[0].weight, net[1].weight
        net[0].weight, net[1].weight = a, b
        return weissi_penalty(net, 0.7, 0.3)

    assert torch.autograd.gradcheck(penalty, (w1, w2))


def test_covers_conv_and_skips_norm_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.LayerNorm(6), nn.Linear(6, 2))
    conv, norm, lin = model
    expected = sum(torch.log(w.norm()) + w.abs().sum() / w.norm() for w in (conv.weight, lin.weight))
    torch.testing.assert_close(weissi_penalty(model, 1.0, 1.0), expected)
    with torch.no_grad():
        norm.weight.mul_(5.0)
    torch.testing.assert_close(weissi_penalty(model, 1.0, 1.0), expected)
    only_linear = weissi_penalty(model, 1.0, 1.0, layer_types=(nn.Linear,))
    torch.testing.assert_close(only_linear,
                               torch.log(lin.weight.norm()) + lin.weight.abs().sum() / lin.weight.norm())


def test_zero_weight_is_finite():
    layer = nn.Linear(3, 2)
    nn.init.zeros_(layer.weight)
    value = weissi_penalty(layer, 1.0, 1.0)
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(layer.weight.grad).all()


def test_bad_input():
    model = relu_mlp()
    with pytest.raises(ValueError, match="lambda1"):
        weissi_penalty(model, -1.0, 0.0)
    with pytest.raises(ValueError, match="lambda2"):
        weissi_penalty(model, 0.0, float("nan"))
    with pytest.raises(ValueError, match="eps"):
        weissi_penalty(model, 1.0, 1.0, eps=0)
    with pytest.raises(ValueError, match="no layer"):
        weissi_penalty(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)), 1.0, 1.0)
