import math

import pytest
import torch

from kexue.generative import DiracGAN

pytestmark = pytest.mark.usefixtures("one_thread")


def sorted_eig(values):
    values = torch.as_tensor(values, dtype=torch.complex128)
    return values[torch.argsort(values.real * 1000 + values.imag)]


def close(ours, expected, tol=1e-10):
    torch.testing.assert_close(sorted_eig(ours), sorted_eig(expected), atol=tol, rtol=0)


def test_ns_gan_is_a_centre_with_eigenvalues_plus_minus_i_over_2():
    close(DiracGAN("ns-gan").eigenvalues(dim=2), [0.5j, -0.5j, 0.5j, -0.5j])


@pytest.mark.parametrize("lam", [0.1, 0.5, 2.0])
def test_zero_centred_penalty_on_the_bilinear_game(lam):
    root = complex(lam**2 - 1) ** 0.5  # μ² + 2λμ + 1 = 0
    close(DiracGAN("wgan-gp", gp_weight=lam).eigenvalues(dim=1), [-lam + root, -lam - root])


@pytest.mark.parametrize("mu", [0.2, 3.0])
def test_weight_decay_on_ns_gan(mu):
    root = complex(mu**2 - 1) ** 0.5  # μ_J² + μ μ_J + 1/4 = 0
    close(DiracGAN("ns-gan", weight_decay=mu).eigenvalues(dim=1), [(-mu + root) / 2,
                                                                   (-mu - root) / 2])


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_consensus_moves_the_centre_into_the_left_half_plane(gamma):
    close(DiracGAN("ns-gan", consensus=gamma).eigenvalues(dim=1),
          [complex(-gamma / 4, 0.5), complex(-gamma / 4, -0.5)])


def test_discrete_maps_spiral_out_or_cycle():
    lr = 0.3
    gan = DiracGAN("ns-gan")
    close(gan.eigenvalues(1, "simultaneous", lr), [1 + 0.5j * lr, 1 - 0.5j * lr])
    # alternating: [[1, -lr/2], [lr/2, 1 - lr²/4]], determinant 1, trace 2 - lr²/4
    c = 1 - lr**2 / 8
    close(gan.eigenvalues(1, "alternating", lr), [complex(c, math.sqrt(1 - c * c)),
                                                  complex(c, -math.sqrt(1 - c * c))])


def post_losses(loss, phi, theta, qp=1.0):
    """The post's discriminator and generator losses of the Dirac GAN (to minimise)."""
    s = (theta * phi).sum(-1)
    if loss == "ns-gan":
        return -torch.log1p(-torch.sigmoid(s)), -torch.log(torch.sigmoid(s))
    if loss == "wgan":
        return s / phi.norm(dim=-1), -s / phi.norm(dim=-1)
    if loss == "wgan-gp":
        return s, -s
    return s + s**2 / (2 * qp * theta.norm(dim=-1)), -s  # gan-qp


@pytest.mark.parametrize("loss", ["ns-gan", "wgan", "wgan-gp", "gan-qp"])
@pytest.mark.parametrize("extra", [{}, {"gp_weight": 0.3, "gp_center": 1.0}, {"weight_decay": 0.2}])
def test_vector_field_is_minus_the_post_loss_gradients(loss, extra):
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    theta = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    d_loss, g_loss = post_losses(loss, phi, theta, qp=0.7)
    if extra.get("gp_weight"):  # λ (‖∇ₓD‖ − c)², ∇ₓD = φ
        d_loss = d_loss + extra["gp_weight"] * (phi.norm(dim=-1) - extra["gp_center"]) ** 2
    if extra.get("weight_decay"):
        d_loss = d_loss + extra["weight_decay"] / 2 * phi.square().sum(-1)
    (gd,) = torch.autograd.grad(d_loss.sum(), phi, retain_graph=True)
    (gg,) = torch.autograd.grad(g_loss.sum(), theta)
    dphi, dtheta = DiracGAN(loss, qp_scale=0.7, **extra).vector_field(phi.detach(), theta.detach())
    torch.testing.assert_close(dphi, -gd)
    torch.testing.assert_close(dtheta, -gg)


def test_consensus_field_is_v_minus_gamma_j_transpose_v():
    gan, gamma = DiracGAN("ns-gan"), 0.7
    x = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64)

    def field(x):
        return torch.cat(gan.vector_field(x[:2], x[2:]))

    jac = torch.autograd.functional.jacobian(field, x)
    v = field(x)
    ours = torch.cat(DiracGAN("ns-gan", consensus=gamma).vector_field(x[:2], x[2:]))
    torch.testing.assert_close(ours, v - gamma * jac.T @ v)


def test_rk4_matches_the_rotation_of_the_bilinear_game():
    phi0 = torch.tensor([0.1, 0.2], dtype=torch.float64)
    theta0 = torch.tensor([0.2, 0.1], dtype=torch.float64)
    path = DiracGAN("wgan-gp").simulate(phi0, theta0, 300, 0.01, "continuous")  # t = 3
    t = 3.0  # φ̇ = −θ, θ̇ = φ
    torch.testing.assert_close(path.phi[-1], phi0 * math.cos(t) - theta0 * math.sin(t))
    torch.testing.assert_close(path.theta[-1], theta0 * math.cos(t) + phi0 * math.sin(t))
    assert path.phi.shape == (301, 2) and path.distance().shape == (301,)


def test_batched_runs_are_independent():
    g = torch.Generator().manual_seed(1)
    phi, theta = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    gan = DiracGAN("ns-gan", consensus=0.5)
    batch = gan.simulate(phi, theta, 20, 0.1, "alternating")
    single = gan.simulate(phi[2], theta[2], 20, 0.1, "alternating")
    torch.testing.assert_close(batch.theta[:, 2], single.theta)


def test_claims_of_the_post_on_short_runs():
    phi0, theta0 = torch.tensor([0.1, 0.2]), torch.tensor([0.2, 0.1])
    start = torch.cat([phi0, theta0]).norm()

    def final(gan, method):
        return (gan.simulate(phi0, theta0, 1000, 0.1, method).distance()[-1] / start).item()

    assert final(DiracGAN("ns-gan"), "simultaneous") > 1  # spirals out
    assert 0.5 < final(DiracGAN("ns-gan"), "alternating") < 1.5  # cycles
    assert final(DiracGAN("wgan-gp", gp_weight=0.5), "continuous") < 1e-6  # converges


@pytest.mark.parametrize("kwargs", [{"loss": "wgan"}, {"loss": "gan-qp"},
                                    {"loss": "wgan-gp", "gp_weight": 1.0, "gp_center": 1.0}])
def test_jacobian_refuses_fields_that_are_not_differentiable_at_zero(kwargs):
    with pytest.raises(ValueError, match="not differentiable"):
        DiracGAN(**kwargs).jacobian()


@pytest.mark.parametrize("call, match", [
    (lambda: DiracGAN("lsgan"), "loss"),
    (lambda: DiracGAN(gp_weight=-1.0), "gp_weight"),
    (lambda: DiracGAN(consensus=float("nan")), "consensus"),
    (lambda: DiracGAN(qp_scale=0.0), "qp_scale"),
    (lambda: DiracGAN().simulate(torch.zeros(2), torch.zeros(2), 10, 0.1, "euler"), "method"),
    (lambda: DiracGAN().simulate(torch.zeros(2), torch.zeros(2), 0, 0.1), "steps"),
    (lambda: DiracGAN().simulate(torch.zeros(2), torch.zeros(2), 5, -0.1), "lr"),
    (lambda: DiracGAN().simulate(torch.zeros(2), torch.zeros(3), 5, 0.1), "same shape"),
    (lambda: DiracGAN().eigenvalues(method="adam"), "method"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
