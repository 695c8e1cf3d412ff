import math

import pytest
import torch

from kexue.generative import VAE

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_gaussian(exact_encoder: bool = True, seed: int = 0):
    """A linear-Gaussian VAE (probabilistic PCA): x = W z + b + σ ε, z ~ N(0, I), whose
    marginal is N(b, W Wᵀ + σ² I). W has orthogonal columns so that the true posterior
    is a diagonal Gaussian, which the encoder is set to (or perturbed from)."""
    g = torch.Generator().manual_seed(seed)
    x_dim, z_dim, sigma = 5, 2, 0.4
    q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=g, dtype=torch.float64))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)  # columns orthogonal
    b = torch.randn(x_dim, generator=g, dtype=torch.float64)
    post_var = sigma**2 / (sigma**2 + (w * w).sum(0))  # (I + WᵀW/σ²)⁻¹, diagonal
    gain = post_var[:, None] * w.T / sigma**2  # posterior mean = gain (x − b)
    vae = VAE(x_dim, z_dim, hidden=(), likelihood="gaussian").double()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(w)
        vae.decoder[0].bias.copy_(b)
        vae.log_scale.fill_(math.log(sigma))
        enc = vae.encoder[0]
        enc.weight.zero_()
        enc.weight[:z_dim] = gain
        enc.bias[:z_dim] = -gain @ b
        enc.bias[z_dim:] = 0.5 * post_var.log()
        if not exact_encoder:  # a wider, shifted importance distribution
            enc.bias[:z_dim] += 0.3
            enc.bias[z_dim:] += 0.4
    covariance = w @ w.T + sigma**2 * torch.eye(x_dim, dtype=torch.float64)
    marginal = torch.distributions.MultivariateNormal(b, covariance)
    x = marginal.sample((6,))
    return vae, x, marginal.log_prob(x)


def test_exact_posterior_makes_every_weight_the_marginal():
    vae, x, exact = linear_gaussian()
    torch.manual_seed(0)
    log_w = vae.log_weights(x, 50)  # (k, batch)
    torch.testing.assert_close(log_w, exact.expand(50, -1), atol=1e-10, rtol=0)
    for k in (1, 7, 2500):
        torch.testing.assert_close(vae.log_likelihood(x, k, chunk_size=1000), exact,
                                   atol=1e-10, rtol=0)


def test_estimate_rises_with_k_towards_the_exact_marginal():
    vae, x, exact = linear_gaussian(exact_encoder=False)
    torch.manual_seed(0)
    log_w = vae.log_weights(x, 20000)  # (k, batch)
    means = {}
    for k in (1, 10, 100, 1000):
        blocks = log_w[: (20000 // k) * k].reshape(-1, k, x.size(0))
        means[k] = (torch.logsumexp(blocks, 1) - math.log(k)).mean(0)  # E[log p̂_k], per x
    gap = {k: (exact - m).mean().item() for k, m in means.items()}
    assert gap[1] > gap[10] > gap[100] > gap[1000] > -0.01  # a lower bound that tightens
    assert gap[1] > 0.1 and gap[1000] < 0.02


def test_elbo_is_the_mean_log_weight_with_the_kl_in_closed_form():
    vae, x, _ = linear_gaussian(exact_encoder=False)
    torch.manual_seed(0)
    n = 100_000
    mc = vae.log_weights(x, n).mean(0)  # E_q[log w], Monte Carlo
    analytic = vae.elbo(x.repeat(n, 1)).view(n, -1).mean(0)  # closed-form KL, sampled recon.
    torch.testing.assert_close(analytic, mc, atol=0.03, rtol=0)
    assert (mc.std() > 0.1)  # the 6 points differ: the comparison is not vacuous


def test_log_likelihood_combines_chunks_by_log_sum_exp(monkeypatch):
    vae, x, _ = linear_gaussian(exact_encoder=False)
    torch.manual_seed(0)
    fixed = vae.log_weights(x, 1000)
    expected = torch.logsumexp(fixed, 0) - math.log(1000)
    position = 0

    def replay(x, k):
        nonlocal position
        position += k
        return fixed[position - k:position]

    monkeypatch.setattr(vae, "log_weights", replay)
    torch.testing.assert_close(vae.log_likelihood(x, 1000, chunk_size=300), expected)
    assert position == 1000


def test_bernoulli_bound_is_differentiable_and_bounded_by_zero():
    torch.manual_seed(0)
    vae = VAE(12, 3, hidden=(16,))
    x = (torch.rand(8, 12) > 0.5).float()
    bound = vae(x, k=5)
    assert bound.shape == (8,) and (bound < 0).all()
    bound.mean().backward()
    grads = [p.grad for p in vae.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert vae.log_likelihood(x, 30).shape == (8,)
    assert set(vae.sample(4).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("call, match", [
    (lambda v, x: v.log_likelihood(x, 0), "k"),
    (lambda v, x: v.log_likelihood(x, -3), "k"),
    (lambda v, x: v.iwae_bound(x, 2.0), "k"),
    (lambda v, x: v.log_likelihood(x, 10, chunk_size=0), "chunk_size"),
    (lambda v, x: v.log_weights(x[:, :3], 2), "x must be"),
    (lambda v, x: v.log_weights(2 * x, 2), r"\[0, 1\]"),
    (lambda v, x: VAE(4, 2, likelihood="poisson"), "likelihood"),
    (lambda v, x: VAE(4, 0), "z_dim"),
])
def test_bad_input_raises(call, match):
    vae, x = VAE(4, 2, hidden=(8,)), torch.full((3, 4), 0.75)
    with pytest.raises(ValueError, match=match):
        call(vae, x)
