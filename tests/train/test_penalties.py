import pytest
import torch
from torch import nn

from kexue.train import parameter_gradient_penalty, squared_gradient_norm


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 3)
    return model, x


def test_squared_norm_equals_the_sum_over_parameter_grads():
    model, x = _setup()
    loss = model(x).pow(2).mean()
    loss.backward(retain_graph=True)
    expected = sum(p.grad.pow(2).sum() for p in model.parameters())
    torch.testing.assert_close(squared_gradient_norm(loss, model.parameters()), expected)


def test_penalty_value_and_its_gradient_against_finite_differences():
    model, x = _setup()
    params = list(model.parameters())

    def objective(flat: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(flat, params)
        return parameter_gradient_penalty(model(x).pow(2).mean(), model, epsilon=0.3)

    flat = torch.nn.utils.parameters_to_vector(params).detach().double()
    model.double()
    x = x.double()
    value = objective(flat.clone())
    grads = torch.autograd.grad(value, params)
    analytic = torch.cat([g.flatten() for g in grads])
    h, i = 1e-6, 7
    up, down = flat.clone(), flat.clone()
    up[i] += h
    down[i] -= h
    with torch.enable_grad():
        numeric = (objective(up) - objective(down)) / (2 * h)
    assert analytic[i].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-8)


def test_frozen_parameters_are_skipped_and_bad_input_raises():
    model, x = _setup()
    model[0].requires_grad_(False)
    full = squared_gradient_norm(model(x).sum(), model[2].parameters())
    torch.testing.assert_close(squared_gradient_norm(model(x).sum(), model.parameters()), full)
    loss = model(x).sum()
    with pytest.raises(ValueError, match="scalar"):
        squared_gradient_norm(model(x), model.parameters())
    with pytest.raises(ValueError, match="requires_grad"):
        squared_gradient_norm(loss, model[0].parameters())
    with pytest.raises(ValueError, match="epsilon"):
        parameter_gradient_penalty(loss, model, epsilon=0)
