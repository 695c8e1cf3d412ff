import pytest
import torch
from torch import nn

from kexue.generative import GradientNormalized, gradient_penalty, mlp

pytestmark = pytest.mark.usefixtures("one_thread")


def relu_net(seed=0, dim=3, activation=nn.ReLU):
    torch.manual_seed(seed)
    return mlp([dim, 32, 32, 1], activation).double()


def inputs(n=400, dim=3, seed=1, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, dim, generator=g, dtype=torch.float64)


def reference(f, x):
    """f(x) / (‖∇ₓ f(x)‖ + |f(x)|), one sample at a time."""
    out = []
    for row in x:
        row = row.clone().requires_grad_()
        value = f(row[None])[0, 0]
        (grad,) = torch.autograd.grad(value, row)
        out.append(value.detach() / (grad.norm() + value.detach().abs()))
    return torch.stack(out)[:, None]


def test_matches_the_formula_per_sample():
    f = relu_net()
    x = inputs(50)
    torch.testing.assert_close(GradientNormalized(f)(x), reference(f, x))


@pytest.mark.parametrize("activation", [nn.ReLU, nn.LeakyReLU])
@pytest.mark.parametrize("scale", [0.1, 3.0, 100.0])
def test_bounded_and_gradient_norm_at_most_one(activation, scale):
    gn = GradientNormalized(relu_net(activation=activation))
    x = inputs(scale=scale).requires_grad_()
    f_hat = gn(x)
    assert (f_hat.abs() <= 1).all()
    (grad,) = torch.autograd.grad(f_hat.sum(), x)
    assert (grad.norm(dim=1) <= 1 + 1e-9).all()
    assert grad.norm(dim=1).max() > 0.1  # not vacuous


def test_lipschitz_within_a_linear_region_by_finite_differences():
    f = relu_net()
    gn = GradientNormalized(f)
    x = inputs(400)
    delta = 1e-4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)

    def pattern(x):  # which ReLUs are on
        h1 = f[0](x)
        return torch.cat([h1 > 0, f[2](torch.relu(h1)) > 0], 1)

    same = (pattern(x) == pattern(x + delta)).all(1)
    assert same.sum() > 300
    change = (gn(x + delta) - gn(x)).abs()[:, 0]
    assert (change[same] <= delta.norm(dim=1)[same] * (1 + 1e-6)).all()


def test_jumps_across_a_region_boundary():
    # f(x) = relu(x₁) + x₁/2 + 1: gradient 1/2 left of 0, 3/2 right of it; f(0) = 1
    f = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        f[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        f[0].bias.copy_(torch.tensor([0.0, 10.0]))  # second unit always on: x₁ + 10
        f[2].weight.copy_(torch.tensor([[1.0, 0.5]]))
        f[2].bias.fill_(-4.0)
    x = torch.tensor([[-1e-6, 0.0], [1e-6, 0.0]], dtype=torch.float64)
    left, right = GradientNormalized(f)(x)[:, 0].tolist()
    assert left == pytest.approx(1 / 1.5) and right == pytest.approx(1 / 2.5)


def test_samples_do_not_interact_and_no_grad_mode_works():
    gn = GradientNormalized(relu_net())
    x = inputs(20)
    torch.testing.assert_close(gn(x)[5:6], gn(x[5:6]))
    with torch.no_grad():
        out = gn(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, gn(x).detach())


def test_gradients_reach_the_discriminator_and_the_generator():
    torch.manual_seed(0)
    g, d = nn.Linear(4, 3).double(), relu_net()
    fake = g(torch.randn(16, 4, dtype=torch.float64))
    GradientNormalized(d)(fake).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


def test_gradient_penalty_matches_a_direct_computation():
    critic = relu_net()
    real, fake = inputs(8, seed=3), inputs(8, seed=4)
    torch.manual_seed(5)
    ours = gradient_penalty(critic, real, fake, center=1.0)
    torch.manual_seed(5)
    u = torch.rand(8, 1, dtype=torch.float64)
    mixed = u * real + (1 - u) * fake
    norms = []
    for row in mixed:
        row = row.clone().requires_grad_()
        (grad,) = torch.autograd.grad(critic(row[None]).sum(), row)
        norms.append(grad.norm())
    torch.testing.assert_close(ours, ((torch.stack(norms) - 1) ** 2).mean())
    ours.backward()  # differentiable in the critic's parameters
    assert critic[0].weight.grad.abs().sum() > 0


class Total(nn.Module):
    def forward(self, x):
        return x.square().sum()  # one scalar for the whole batch


@pytest.mark.parametrize("module, x, match", [
    (nn.Linear(3, 2), torch.randn(4, 3), "one scalar per sample"),
    (Total(), torch.randn(4, 3), "one scalar per sample"),
    ("not a module", torch.randn(4, 3), "nn.Module"),
])
def test_bad_modules_raise(module, x, match):
    with pytest.raises(ValueError, match=match):
        GradientNormalized(module)(x)


def test_zero_over_zero_raises_unless_eps():
    f = nn.Linear(3, 1)
    nn.init.zeros_(f.weight)
    nn.init.zeros_(f.bias)
    with pytest.raises(ValueError, match="0/0"):
        GradientNormalized(f)(torch.randn(4, 3))
    assert (GradientNormalized(f, eps=1e-8)(torch.randn(4, 3)) == 0).all()
    with pytest.raises(ValueError, match="eps"):
        GradientNormalized(f, eps=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(f, torch.randn(4, 3), torch.randn(5, 3))
