import pytest
import torch
import torch.nn.functional as F

from kexue.losses.flooding import AlternatingFlooding, flooding


def test_flooding_value_and_gradient_sign():
    w = torch.tensor(2.0, requires_grad=True)
    loss = w**2  # 4
    torch.testing.assert_close(flooding(loss, 1.0), loss)  # above b: unchanged
    (g,) = torch.autograd.grad(flooding(loss, 1.0), w)
    torch.testing.assert_close(g, torch.tensor(4.0))
    torch.testing.assert_close(flooding(loss, 5.0), 2 * 5.0 - loss)  # below b: mirrored
    (g,) = torch.autograd.grad(flooding(w**2, 5.0), w)
    torch.testing.assert_close(g, torch.tensor(-4.0))  # gradient ascent
    torch.testing.assert_close(flooding(loss, 0.0), loss)


def logistic_problem(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(20, 3, dtype=torch.float64)
    y = (torch.randn(20) > 0).double()
    theta = torch.randn(3, dtype=torch.float64)
    return x, y, theta


def loss_of(theta, x, y):
    return F.binary_cross_entropy_with_logits(x @ theta, y)


def run_pair(theta0, x, y, lr, ratio):
    theta = torch.nn.Parameter(theta0.clone())
    opt = AlternatingFlooding(torch.optim.SGD([theta], lr=lr), ascent_ratio=ratio)
    for _ in range(2):
        opt.zero_grad()
        loss_of(theta, x, y).backward()
        opt.step()
    return theta.detach()


def grad_and_penalty_grad(theta0, x, y):
    theta = theta0.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss_of(theta, x, y), theta, create_graph=True)
    (pg,) = torch.autograd.grad(g.pow(2).sum(), theta)  # grad ||grad L||^2
    return g.detach(), pg


def test_descent_ascent_pair_is_a_step_on_the_gradient_penalty():
    x, y, theta0 = logistic_problem()
    _, pg = grad_and_penalty_grad(theta0, x, y)
    errors = []
    for eps in (1e-2, 5e-3):
        after = run_pair(theta0, x, y, eps, 1.0)
        predicted = theta0 - 0.5 * eps**2 * pg
        errors.append((after - predicted).norm())
        assert errors[-1] < 0.05 * (0.5 * eps**2 * pg).norm()  # the eps^2 term dominates
    assert errors[0] / errors[1] > 6  # remainder is O(eps^3): halving eps divides it by ~8


def test_author_variant_eps1_eps2():
    x, y, theta0 = logistic_problem(1)
    g, pg = grad_and_penalty_grad(theta0, x, y)
    errors = []
    for eps1 in (1e-2, 5e-3):
        eps2 = 0.6 * eps1
        after = run_pair(theta0, x, y, eps1, 0.6)
        # (eps1 - eps2) * [g + eps1 eps2 / (2 (eps1 - eps2)) grad ||g||^2]
        predicted = theta0 - (eps1 - eps2) * g - 0.5 * eps1 * eps2 * pg
        errors.append((after - predicted).norm())
        assert errors[-1] < 0.05 * (0.5 * eps1 * eps2 * pg).norm()
    assert errors[0] / errors[1] > 6


def test_wrapper_restores_lr_and_grads_and_works_with_a_scheduler():
    theta = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    inner = torch.optim.SGD([theta], lr=0.1)
    opt = AlternatingFlooding(inner, ascent_ratio=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 / (i + 1))
    moves = []
    for _ in range(4):
        opt.zero_grad()
        theta.pow(2).sum().backward()
        grad = theta.grad.clone()
        before = theta.detach().clone()
        lr = opt.param_groups[0]["lr"]
        opt.step()
        scheduler.step()
        assert torch.equal(theta.grad, grad)  # gradients given back unchanged
        moves.append(((theta.detach() - before) / grad)[0].item() / lr)
    assert moves == pytest.approx([-1.0, 0.5, -1.0, 0.5])
    assert inner.param_groups[0]["lr"] == pytest.approx(0.1 / 5)  # the schedule reached it
    state = opt.state_dict()
    fresh = AlternatingFlooding(torch.optim.SGD([theta], lr=0.1), ascent_ratio=0.5)
    fresh.load_state_dict(state)
    assert fresh.ascending is False and fresh.param_groups[0]["lr"] == pytest.approx(0.02)


def test_in_fit():
    from kexue.train.loop import TrainConfig, fit

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(3), torch.randn(1)) for _ in range(8)]

    def loss_fn(m, b):
        return flooding(F.mse_loss(m(b[0]), b[1]), 0.05)

    opt = AlternatingFlooding(torch.optim.SGD(model.parameters(), lr=0.1), ascent_ratio=0.5)
    result = fit(model, loss_fn, data, TrainConfig(steps=4, batch_size=4, progress=False),
                 optimizer=opt)
    assert result.step == 4 and opt.ascending is False


def test_bad_input():
    with pytest.raises(ValueError, match="b"):
        flooding(torch.tensor(1.0), -0.1)
    with pytest.raises(ValueError, match="scalar"):
        flooding(torch.ones(3), 0.1)
    theta = torch.nn.Parameter(torch.ones(2))
    for ratio in (0, 1.5, -0.5, float("inf")):
        with pytest.raises(ValueError, match="ascent_ratio"):
            AlternatingFlooding(torch.optim.SGD([theta], lr=0.1), ratio)
    with pytest.raises(TypeError, match="optimizer"):
        AlternatingFlooding([theta], 0.5)
