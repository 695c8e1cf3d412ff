"""A VAE as a density model: importance-sampled log-likelihood and the IWAE bound.

T29: 变分自编码器（八）：估计样本概率密度 (2021-12-09, https://kexue.fm/archives/8791).
The model is the infinite mixture ``p(x) = E_{z~p(z)}[p(x|z)]`` with ``p(z) = N(0, I)``;
sampling z from the prior almost never hits the z that explain x, so the encoder
``q(z|x)`` serves as an importance distribution (no posterior interpretation needed):

    p(x) = E_{z~q(z|x)}[w],   w = p(x|z) p(z) / q(z|x),
    log p(x) ≈ log (1/k) Σᵢ wᵢ,  zᵢ ~ q(z|x)        (log-sum-exp of the log-weights).

(The post writes the generative side as q and the encoder as p; here p is the model and q
the encoder, as in most code.) Training by maximum likelihood on that estimate gives the
standard VAE objective for k = 1 (the ELBO) and the IWAE bound of Burda, Grosse &
Salakhutdinov (2016) for k > 1; in expectation the estimate is a lower bound on log p(x)
that does not decrease as k grows and reaches log p(x) as k → ∞.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.generative.layers import mlp

__all__ = ["LIKELIHOODS", "VAE"]

LIKELIHOODS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def _normal_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """``log N(x; mean, diag(exp(log_std)²))`` summed over the last dim."""
    z = (x - mean) * torch.exp(-log_std)
    return -0.5 * (z.square() + _LOG_2PI).sum(-1) - log_std.sum(-1)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of importance samples) must be an int >= 1, got {k!r}")
    return k


class VAE(nn.Module):
    """A VAE with an MLP encoder and decoder and a Bernoulli or Gaussian likelihood.

    Args:
        x_dim: data dimension (images flattened).
        z_dim: latent dimension.
        hidden: hidden widths of the encoder (the decoder mirrors them); ``()`` makes both
            linear (the linear-Gaussian model, probabilistic PCA, when ``"gaussian"``).
        likelihood: ``"bernoulli"`` (x in [0, 1], the decoder gives logits) or
            ``"gaussian"`` (the decoder gives the mean; a learned per-dimension log std
            ``log_scale`` starts at 0).

    The encoder returns the mean and log std of ``q(z|x)`` (diagonal Gaussian).
    """

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (256,),
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        for name, value in (("x_dim", x_dim), ("z_dim", z_dim), *(("hidden", h) for h in hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must hold positive ints, got {value!r}")
        self.x_dim, self.z_dim, self.likelihood = x_dim, z_dim, likelihood
        self.encoder = mlp([x_dim, *hidden, 2 * z_dim])
        self.decoder = mlp([z_dim, *reversed(hidden), x_dim])
        self.log_scale = nn.Parameter(torch.zeros(x_dim)) if likelihood == "gaussian" else None

    def _check_x(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2 \
                or x.size(1) != self.x_dim:
            raise ValueError(f"x must be a floating tensor (batch, {self.x_dim}), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if self.likelihood == "bernoulli" and ((x < 0) | (x > 1)).any():
            raise ValueError("a Bernoulli VAE models x in [0, 1]; got values outside")
        return x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log std of ``q(z|x)``, each ``(batch, z_dim)``."""
        mean, log_std = self.encoder(x).chunk(2, dim=-1)
        return mean, log_std

    def decoder_log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z)``: ``x`` ``(batch, x_dim)``, ``z`` ``(..., batch, z_dim)`` → ``(..., batch)``."""
        out = self.decoder(z)  # (..., batch, x_dim): logits or means
        if self.likelihood == "bernoulli":
            target = x.expand_as(out)
            return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
        return _normal_log_prob(x, out, self.log_scale.expand_as(out))

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """``log w = log p(x|z) + log p(z) − log q(z|x)`` for ``k`` reparameterised draws
        ``z ~ q(z|x)``: ``(k, batch)``."""
        x = self._check_x(x)
        k = _check_k(k)
        mean, log_std = self.encode(x)  # (batch, z_dim)
        eps = torch.randn((k, *mean.shape), dtype=mean.dtype, device=mean.device)
        z = mean + eps * log_std.exp()  # (k, batch, z_dim)
        log_prior = -0.5 * (z.square() + _LOG_2PI).sum(-1)
        log_q = -0.5 * (eps.square() + _LOG_2PI).sum(-1) - log_std.sum(-1)
        return self.decoder_log_prob(x, z) + log_prior - log_q

    def forward(self, x: Tensor, k: int = 1) -> Tensor:
        """The training objective per sample, :meth:`iwae_bound` (maximise its mean)."""
        return self.iwae_bound(x, k)

    def iwae_bound(self, x: Tensor, k: int = 1) -> Tensor:
        """``log (1/k) Σᵢ wᵢ`` per sample, ``(batch,)``, differentiable: maximise its mean to
        train (k = 1 is the VAE's single-sample ELBO, k > 1 IWAE)."""
        return torch.logsumexp(self.log_weights(x, k), dim=0) - math.log(k)

    def elbo(self, x: Tensor) -> Tensor:
        """The ELBO ``E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))`` per sample, ``(batch,)``, with
        the KL in closed form and one reparameterised draw for the first term."""
        x = self._check_x(x)
        mean, log_std = self.encode(x)
        z = mean + torch.randn_like(mean) * log_std.exp()
        kl = 0.5 * (mean.square() + (2 * log_std).exp() - 1).sum(-1) - log_std.sum(-1)
        return self.decoder_log_prob(x, z) - kl

    @torch.no_grad()
    def log_likelihood(self, x: Tensor, k: int, chunk_size: int = 1000) -> Tensor:
        """Importance-sampled estimate of ``log p(x)`` with ``k`` samples, ``(batch,)``.

        The samples are drawn ``chunk_size`` at a time (memory ``chunk_size × batch ×
        x_dim``) and combined by a running log-sum-exp, so any ``k`` fits in memory.
        """
        k = _check_k(k)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        total = None
        for start in range(0, k, chunk_size):
            part = torch.logsumexp(self.log_weights(x, min(chunk_size, k - start)), dim=0)
            total = part if total is None else torch.logaddexp(total, part)
        return total - math.log(k)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` draws of x from the model (Bernoulli probabilities are sampled), ``(n, x_dim)``."""
        z = torch.randn(n, self.z_dim, device=self.decoder[0].weight.device)
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out))
        return out + torch.randn_like(out) * self.log_scale.exp()
