"""Generative models: Dirac-GAN dynamics (T15), a gradient-normalised discriminator (T28)
and a VAE with an importance-sampled log-likelihood (T29)."""

from kexue.generative import dirac_gan  # T15, the module as the catalogue names it
from kexue.generative.dirac_gan import (  # T15: Dirac GAN
    LOSSES,
    METHODS,
    DiracGAN,
    Trajectory,
)
from kexue.generative.gradient_normalized import (  # T28: gradient normalisation
    GradientNormalized,
    gradient_penalty,
)
from kexue.generative.layers import mlp  # MLP builder
from kexue.generative.vae import LIKELIHOODS, VAE  # T29: VAE density

__all__ = [
    "LIKELIHOODS",
    "LOSSES",
    "METHODS",
    "VAE",
    "DiracGAN",
    "GradientNormalized",
    "Trajectory",
    "dirac_gan",
    "gradient_penalty",
    "mlp",
]
