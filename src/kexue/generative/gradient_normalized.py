"""Gradient-normalised discriminator ``f̂ = f / (‖∇ₓf‖ + |f|)``, and the WGAN gradient penalty.

T28: WGAN新方案：通过梯度归一化来实现L约束 (2021-11-15, https://kexue.fm/archives/8757),
on Wu, Shuai, Tam & Chiu, "Gradient Normalization for Generative Adversarial Networks"
(ICCV 2021). A ReLU/LeakyReLU network is piecewise linear, so inside each linear region
``∇ₓf`` is a constant ``g`` and

    ‖∇ₓ f̂‖ = ‖g‖² / (‖g‖ + |f|)² ≤ 1,     |f̂| ≤ 1,

a Lipschitz bound that holds region by region (f̂ jumps across region boundaries, where g
jumps: the discontinuity the post questions). The gradient norm is per sample and the
normalised output keeps its graph (``create_graph=True``), so both the discriminator's and
the generator's updates differentiate through it (a second-order gradient in both steps;
the post's cost remark). The paper's code feeds ``f̂`` to the usual losses (e.g.
``BCEWithLogitsLoss``) in place of the logits.

:func:`gradient_penalty` is the baseline it replaces: WGAN-GP's
``E_x̂[(‖∇ₓD(x̂)‖ − c)²]`` on random interpolates of real and fake samples (Gulrajani et al.,
2017; ``c = 0`` is the zero-centred penalty of WGAN-div / Mescheder et al. 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GradientNormalized", "gradient_penalty"]


def _per_sample_scores(f: Tensor, batch: int, what: str) -> Tensor:
    """``f`` as ``(batch,)``: the module must give one score per sample, (batch,) or (batch, 1)."""
    if not isinstance(f, Tensor) or not f.is_floating_point():
        raise ValueError(f"{what} must return a floating tensor, got {type(f).__name__}")
    if f.shape not in ((batch,), (batch, 1)):
        raise ValueError(f"{what} must return one scalar per sample, shape ({batch},) or "
                         f"({batch}, 1), got {tuple(f.shape)}")
    return f.reshape(batch)


def _input_gradient(f: Tensor, x: Tensor) -> Tensor:
    """``∇ₓ Σ f`` with its graph kept, flattened per sample: (batch, features)."""
    (grad,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    return grad.flatten(1)


class GradientNormalized(nn.Module):
    """Wrap a discriminator ``f`` so that it returns ``f̂(x) = f(x) / (‖∇ₓf(x)‖ + |f(x)|)``.

    Args:
        module: the discriminator; ``module(x)`` with ``x`` ``(batch, ...)`` must return one
            score per sample, ``(batch,)`` or ``(batch, 1)``, and samples must not interact
            (no batch norm), since the gradient norm is taken per sample.
        eps: added to the denominator; the default 0 is the paper's formula (0/0 only where
            both ``f`` and ``∇ₓf`` vanish, which then raises instead of giving NaN).

    ``forward(x)`` returns ``f̂`` in ``f``'s shape, with values in ``[−1, 1]``. It works
    under ``torch.no_grad()`` too (the input gradient is taken anyway; the result is then
    detached).
    """

    def __init__(self, module: nn.Module, eps: float = 0.0) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")  # noqa: TRY004
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.module = module
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
            raise ValueError("x must be a floating tensor (batch, ...)")
        outer_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_()
            raw = self.module(x)
            f = _per_sample_scores(raw, x.size(0), type(self.module).__name__)
            grad_norm = _input_gradient(f, x).norm(dim=1)  # (batch,)
            denominator = grad_norm + f.abs() + self.eps
            if (denominator == 0).any():
                raise ValueError("f and its input gradient are both 0 at some sample: f̂ = 0/0; "
                                 "pass eps > 0")
            f_hat = (f / denominator).reshape(raw.shape)
        return f_hat if outer_grad else f_hat.detach()

    def extra_repr(self) -> str:
        return f"eps={self.eps}" if self.eps else ""


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, center: float = 1.0) -> Tensor:
    """``mean_x̂ (‖∇ₓ critic(x̂)‖ − center)²`` at ``x̂ = u·real + (1 − u)·fake``, u ~ U(0, 1)
    per sample (WGAN-GP's penalty; multiply by its weight, λ = 10 in the paper).

    ``real``, ``fake``: ``(batch, ...)`` of one shape; ``critic`` returns ``(batch,)`` or
    ``(batch, 1)``. The result is a differentiable scalar (double backward).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    u = torch.rand((real.size(0),) + (1,) * (real.dim() - 1), dtype=real.dtype,
                   device=real.device)
    mixed = (u * real.detach() + (1 - u) * fake.detach()).requires_grad_()
    f = _per_sample_scores(critic(mixed), real.size(0), type(critic).__name__)
    return (_input_gradient(f, mixed).norm(dim=1) - center).square().mean()
