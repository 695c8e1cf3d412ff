"""Tests for kexue.losses.multitask: the weighting strategies of post 8870."""

import itertools
import math

import pytest
import torch

from kexue.losses import MultiTaskLoss


def _task_losses(theta, scale2=1.0, shift2=0.0):
    """Two positive task losses of very different form sharing the parameters theta."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 2, generator=g, dtype=torch.float64)
    c = torch.randn(8, 2, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    l1 = torch.nn.functional.softplus(a @ theta[:2]).mean()  # classification-like
    l2 = ((c @ theta[1:] - b) ** 2).mean() * scale2 + shift2  # regression-like
    return [l1, l2]


def _grad(mtl, scale2=1.0, shift2=0.0, calls=1):
    theta = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    for _ in range(calls - 1):  # lets 'initial' record its normalisers first
        mtl(_task_losses(theta.detach(), scale2, shift2))
    mtl(_task_losses(theta, scale2, shift2)).backward()
    return theta.grad


def _cos(u, v):
    return (u @ v / (u.norm() * v.norm())).item()


def test_realtime_and_log_have_the_same_gradient():
    g_rt = _grad(MultiTaskLoss("realtime", 2))
    g_log = _grad(MultiTaskLoss("log", 2))
    torch.testing.assert_close(g_rt, g_log)  # sum grad L_i / L_i, exactly
    g_geo = _grad(MultiTaskLoss("gmean", 2, gamma=0.0))
    assert _cos(g_geo, g_rt) == pytest.approx(1.0, abs=1e-12)  # same direction
    assert _cos(_grad(MultiTaskLoss("fixed", 2)), g_rt) < 0.99  # the plain sum differs


@pytest.mark.parametrize(
    "make",
    [
        lambda s: MultiTaskLoss("realtime", 2),
        lambda s: MultiTaskLoss("log", 2),
        lambda s: MultiTaskLoss("gmean", 2, gamma=0.0),
        lambda s: MultiTaskLoss("initial", 2),  # normalisers recorded from the scaled losses
        lambda s: MultiTaskLoss("prior", 2, prior_losses=[0.7, 2.0 * s]),
    ],
)
def test_scale_invariant_strategies_ignore_a_1000x_loss(make):
    g1 = _grad(make(1.0), calls=2)
    g1000 = _grad(make(1000.0), scale2=1000.0, calls=2)
    assert _cos(g1, g1000) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(
    "make", [lambda: MultiTaskLoss("fixed", 2), lambda: MultiTaskLoss("gmean", 2, gamma=1.0)]
)
def test_other_strategies_follow_the_1000x_loss(make):
    assert _cos(_grad(make()), _grad(make(), scale2=1000.0)) < 0.99


def test_realtime_is_not_shift_invariant():
    # post 8870: scale- but not translation-invariant (adding 10 to L_2 changes the direction)
    g0, g10 = _grad(MultiTaskLoss("realtime", 2)), _grad(MultiTaskLoss("realtime", 2), shift2=10.0)
    assert _cos(g0, g10) < 0.99


def test_values():
    L = [torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)]
    assert MultiTaskLoss("realtime", 2)(L).item() == pytest.approx(2.0)  # always n
    assert MultiTaskLoss("log", 2)(L).item() == pytest.approx(math.log(2.0) + math.log(0.5))
    assert MultiTaskLoss("fixed", 2, weights=[1.0, 4.0])(L).item() == pytest.approx(4.0)
    assert MultiTaskLoss("prior", 2, prior_losses=[4.0, 0.25])(L).item() == pytest.approx(2.5)
    assert MultiTaskLoss("gmean", 2, gamma=0.0)(L).item() == pytest.approx(1.0)
    assert MultiTaskLoss("gmean", 2, gamma=math.inf)(L).item() == 2.0
    assert MultiTaskLoss("gmean", 2, gamma=-math.inf)(L).item() == 0.5
    # dict input, values in order
    assert MultiTaskLoss("fixed", 2, weights=[1.0, 4.0])({"a": L[0], "b": L[1]}).item() == 4.0
    # initial: first call records L_init, later calls divide by it
    mtl = MultiTaskLoss("initial", 2)
    assert mtl(L).item() == pytest.approx(2.0)
    assert mtl([L[0] * 3, L[1] * 0.5]).item() == pytest.approx(3.5)
    given = MultiTaskLoss("initial", 2, initial_losses=[math.log(10), 1.0])
    assert given(L).item() == pytest.approx(2.0 / math.log(10) + 0.5)


@pytest.mark.parametrize("gamma", [-1.0, 0.5, 1.0, 2.0, 50.0])
def test_generalised_mean_formula(gamma):
    L = torch.tensor([0.3, 2.0, 7.0], dtype=torch.float64)
    ref = ((L**gamma).mean()) ** (1 / gamma)
    got = MultiTaskLoss("gmean", 3, gamma=gamma)(list(L))
    torch.testing.assert_close(got, ref)


def test_generalised_mean_is_monotone_in_gamma():
    L = list(torch.tensor([0.3, 2.0, 7.0], dtype=torch.float64))
    gammas = [-math.inf, -5.0, -1.0, 0.0, 0.5, 1.0, 3.0, math.inf]
    values = [MultiTaskLoss("gmean", 3, gamma=g)(L).item() for g in gammas]
    assert all(a < b for a, b in itertools.pairwise(values))


def test_uncertainty_at_its_optimum_is_half_the_log_gradient():
    mtl = MultiTaskLoss("uncertainty", 2).double()
    assert [p.shape for p in mtl.parameters()] == [torch.Size([2])]
    theta = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    losses = _task_losses(theta)
    with torch.no_grad():
        mtl.log_vars.copy_(torch.stack(losses).log())  # sigma_i^2 = L_i minimises over s
    mtl(losses).backward()
    assert torch.allclose(mtl.log_vars.grad, torch.zeros(2, dtype=torch.float64), atol=1e-12)
    torch.testing.assert_close(theta.grad, 0.5 * _grad(MultiTaskLoss("log", 2)))


def test_gradcheck_float64():
    L = torch.tensor([0.4, 3.0, 1.2], dtype=torch.float64, requires_grad=True)
    # 'realtime' is excluded by design: its value is constant (n) but its gradient is not
    for mtl in (
        MultiTaskLoss("log", 3),
        MultiTaskLoss("gmean", 3, gamma=0.0),
        MultiTaskLoss("gmean", 3, gamma=2.0),
        MultiTaskLoss("fixed", 3, weights=[1.0, 0.2, 3.0]),
        MultiTaskLoss("prior", 3, prior_losses=[1.0, 2.0, 0.5]),
    ):
        assert torch.autograd.gradcheck(lambda x, m=mtl: m(list(x)), (L,))
    unc = MultiTaskLoss("uncertainty", 3).double()
    s = torch.tensor([0.1, -0.5, 0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, sv: torch.func.functional_call(unc, {"log_vars": sv}, (list(x),)), (L, s)
    )


def test_tiny_losses_stay_finite():
    L = [torch.tensor(1e-30, requires_grad=True), torch.tensor(5.0, requires_grad=True)]
    for strategy in ("realtime", "log", "initial"):
        out = MultiTaskLoss(strategy, 2)(L)
        out.backward()
        assert torch.isfinite(out) and all(torch.isfinite(x.grad) for x in L)
        for x in L:
            x.grad = None
    zero = [torch.tensor(0.0, requires_grad=True), torch.tensor(5.0, requires_grad=True)]
    out = MultiTaskLoss("realtime", 2)(zero)
    out.backward()
    assert torch.isfinite(zero[0].grad)


def test_bad_input_raises():
    L = [torch.tensor(1.0), torch.tensor(2.0)]
    with pytest.raises(ValueError, match="strategy must be one of"):
        MultiTaskLoss("geometric", 2)
    with pytest.raises(ValueError, match="expected 2 task losses, got 3"):
        MultiTaskLoss("realtime", 2)(L + [torch.tensor(1.0)])
    with pytest.raises(ValueError, match=r"task loss 1 must be a scalar tensor, got \(3,\)"):
        MultiTaskLoss("realtime", 2)([L[0], torch.ones(3)])
    with pytest.raises(ValueError, match=r"'log' needs task losses > 0, got \[1.0, -2.0\]"):
        MultiTaskLoss("log", 2)([L[0], -L[1]])
    with pytest.raises(ValueError, match=r"'realtime' needs task losses >= 0"):
        MultiTaskLoss("realtime", 2)([L[0], -L[1]])
    with pytest.raises(ValueError, match="needs prior_losses"):
        MultiTaskLoss("prior", 2)
    with pytest.raises(ValueError, match="weights must have 2 entries, got 3"):
        MultiTaskLoss("fixed", 2, weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"prior_losses must be finite and > 0, got \[1.0, 0.0\]"):
        MultiTaskLoss("prior", 2, prior_losses=[1.0, 0.0])
    with pytest.raises(ValueError, match="weights applies to strategy 'fixed' only"):
        MultiTaskLoss("realtime", 2, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="num_tasks must be >= 1, got 0"):
        MultiTaskLoss("realtime", 0)
