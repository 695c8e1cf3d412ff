import random

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from kexue.explain.inequality import gradient_penalty_inequality

ACTIVATIONS = [nn.Tanh, nn.ReLU, nn.Sigmoid, nn.GELU, nn.Softplus, nn.SiLU, nn.Identity]


def random_mlp(rng: random.Random, d_in: int) -> nn.Sequential:
    layers, width = [], d_in
    depth = rng.randint(1, 3)
    for t in range(depth):
        out = rng.randint(1, 6)
        layers.append(nn.Linear(width, out, bias=rng.random() < 0.8))
        if t < depth - 1 or rng.random() < 0.5:
            layers.append(rng.choice(ACTIVATIONS)())
        width = out
    return nn.Sequential(*layers).double()


def test_holds_on_1000_random_mlps():
    rng = random.Random(0)
    torch.manual_seed(0)
    ratios = []
    for _ in range(1000):
        d_in = rng.randint(1, 5)
        mlp = random_mlp(rng, d_in)
        x = torch.randn(4, d_in, dtype=torch.float64) * rng.choice([0.1, 1.0, 3.0])
        sides = gradient_penalty_inequality(mlp, x)
        assert (sides.lhs <= sides.rhs * (1 + 1e-10) + 1e-300).all()
        assert torch.isfinite(sides.lhs).all()
        ratios.append((sides.lhs / sides.rhs.clamp_min(1e-300)).max().item())
    assert max(ratios) <= 1 + 1e-10 and max(ratios) > 0.5  # tight enough to be a real test


def reference_sides(mlp, x):
    """Both sides per example with torch.func: Jacobians and per-example gradients."""
    params = {k: v.detach() for k, v in mlp.named_parameters()}
    linears = [i for i, m in enumerate(mlp) if isinstance(m, nn.Linear)]

    def f(p, xi):
        return functional_call(mlp, p, (xi[None],)).sum()

    per_example = vmap(grad(f), in_dims=(None, 0))(params, x)
    rhs = sum(g.flatten(1).pow(2).sum(1) for g in per_example.values())
    gx = vmap(grad(lambda xi: f(params, xi)))(x)
    lhs = torch.zeros(x.shape[0], dtype=x.dtype)
    for i in linears:
        layer = mlp[i]

        def h_t(xi, i=i):
            return mlp[:i](xi[None])[0]  # the input of layer i

        jac = vmap(jacrev(h_t))(x)  # (batch, d_t, d_in)
        hs = vmap(h_t)(x).pow(2).sum(1) + (1.0 if layer.bias is not None else 0.0)
        den = (torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
               * torch.linalg.matrix_norm(jac, ord=2)) ** 2
        lhs = lhs + hs / den
    return gx.pow(2).sum(1) * lhs, rhs, gx.pow(2).sum(1)


def test_matches_torch_func_reference():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Softplus(),
                        nn.Linear(5, 3, bias=False), nn.Sigmoid()).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    sides = gradient_penalty_inequality(mlp, x)
    lhs, rhs, gx2 = reference_sides(mlp, x)
    torch.testing.assert_close(sides.lhs, lhs)
    torch.testing.assert_close(sides.rhs, rhs)
    torch.testing.assert_close(sides.input_grad_sq, gx2)


def test_custom_f_and_non_elementwise_activation():
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    sides = gradient_penalty_inequality(mlp, x, f=lambda out: out[:, 0] ** 2)
    params = {k: v.detach() for k, v in mlp.named_parameters()}

    def f(p, xi):
        return functional_call(mlp, p, (xi[None],))[0, 0] ** 2

    per_example = vmap(grad(f), in_dims=(None, 0))(params, x)
    rhs = sum(g.flatten(1).pow(2).sum(1) for g in per_example.values())
    torch.testing.assert_close(sides.rhs, rhs)
    assert (sides.lhs <= sides.rhs).all()


def test_equality_for_a_single_linear_layer_with_one_output():
    # l = 1: grad_x f = W^T delta, and ||W^T delta|| = ||W|| |delta| when W has one row
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(5, 1)).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    sides = gradient_penalty_inequality(mlp, x)
    torch.testing.assert_close(sides.lhs, sides.rhs)
    # with several outputs, equality needs f along the top left singular vector of W
    mlp = nn.Sequential(nn.Linear(5, 3)).double()
    u = torch.linalg.svd(mlp[0].weight.detach())[0][:, 0]
    sides = gradient_penalty_inequality(mlp, x, f=lambda out: out @ u)
    torch.testing.assert_close(sides.lhs, sides.rhs)


def test_dead_relu_gives_zero_not_nan():
    mlp = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        mlp[0].weight.zero_()
        mlp[0].bias.fill_(-1.0)  # every unit dead: grad_x h(2) = 0
    sides = gradient_penalty_inequality(mlp, torch.randn(3, 2, dtype=torch.float64))
    assert torch.equal(sides.lhs, torch.zeros(3)) and (sides.rhs > 0).all()


def test_in_place_activation_is_safe():
    torch.manual_seed(3)
    a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).double()
    b = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    for got, want in zip(gradient_penalty_inequality(a, x), gradient_penalty_inequality(b, x)):
        torch.testing.assert_close(got, want)


def test_bad_input():
    mlp = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    with pytest.raises(ValueError, match="Sequential"):
        gradient_penalty_inequality(nn.Linear(3, 2), torch.randn(2, 3))
    with pytest.raises(ValueError, match="start with nn.Linear"):
        gradient_penalty_inequality(nn.Sequential(nn.Tanh(), nn.Linear(3, 2)), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(batch >= 1, 3\)"):
        gradient_penalty_inequality(mlp, torch.randn(2, 4))
    with pytest.raises(ValueError, match="floating"):
        gradient_penalty_inequality(mlp, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        gradient_penalty_inequality(nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)),
                                    torch.randn(2, 3))
    with pytest.raises(ValueError, match="f must map"):
        gradient_penalty_inequality(mlp, torch.randn(2, 3), f=lambda out: out)
