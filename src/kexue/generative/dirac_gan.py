"""Dirac GAN: the training dynamics of a GAN whose data is one point, and how to fix them.

T15: 从动力学角度看优化算法（四）：GAN的第三个阶段 (2019-05-03,
https://kexue.fm/archives/6583), after Mescheder, Geiger & Nowozin, "Which Training Methods
for GANs do actually Converge?" (ICML 2018). The real data is the point 0, the generator is
the fake point θ ∈ Rᵈ and the discriminator is linear, ``D(x) = x·φ`` (before its
activation). Training is the flow ``(φ̇, θ̇) = (−∇_φ L_D, −∇_θ L_G)`` and its equilibrium is
``φ = θ = 0``. The post's fields, with ``s = θ·φ``:

- ``"ns-gan"`` (non-saturating): ``φ̇ = −σ(s) θ``, ``θ̇ = σ(−s) φ``; near 0
  ``θ̈ ≈ −θ/4``, a centre: the Jacobian's eigenvalues are ``±i/2``, it cycles for ever.
- ``"wgan"`` (hard Lipschitz constraint, ``D = x·φ/‖φ‖``):
  ``φ̇ = −θ/‖φ‖ + (θ·φ) φ/‖φ‖³``, ``θ̇ = φ/‖φ‖``; oscillates.
- ``"wgan-gp"`` (the unconstrained critic of WGAN-GP, ``L_D = θ·φ + penalty``, ``L_G = −θ·φ``):
  ``φ̇ = −θ``, ``θ̇ = φ`` before the penalty, the bare bilinear game (eigenvalues ``±i``).
- ``"gan-qp"``: ``φ̇ = −θ − (θ·φ) θ / (λ_qp ‖θ‖)``, ``θ̇ = φ``; oscillates.

The fixes add to the discriminator's side:

- a gradient penalty ``λ (‖∇ₓD‖ − c)² = λ (‖φ‖ − c)²``: ``φ̇ += −2λ (1 − c/‖φ‖) φ``.
  Zero-centred (``c = 0``) makes the equilibrium locally convergent (eigenvalues
  ``−λ ± √(λ² − 1)`` on the bilinear game); ``c = 1`` (WGAN-GP) ends on the circle ``‖φ‖ = 1``
  not at 0;
- L2 weight decay ``μ/2 ‖φ‖²``: ``φ̇ += −μ φ`` (the post's fix for GAN-QP);
- consensus optimisation (Mescheder, Nowozin & Geiger, "The Numerics of GANs", 2017), on
  both players: ``v ← v − γ ∇(½‖v‖²) = v − γ Jᵀ v``; near a centre ``J − γ JᵀJ`` has
  eigenvalues ``−γ|μ|² + μ`` for each eigenvalue ``μ = ±i|μ|`` of ``J``.

Training is the continuous flow (RK4) or discrete gradient steps with learning rate ``lr``:
*simultaneous* ``x ← x + lr v(x)``, or *alternating* (φ first, then θ at the new φ). On the
bilinear games simultaneous GD spirals out (``|1 + lr·μ| > 1`` for imaginary μ) and
alternating GD cycles (its step map has determinant 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LOSSES", "METHODS", "DiracGAN", "Trajectory"]

LOSSES = ("ns-gan", "wgan", "wgan-gp", "gan-qp")
METHODS = ("continuous", "simultaneous", "alternating")


class Trajectory(NamedTuple):
    """The players along training: ``phi`` and ``theta`` of shape ``(steps + 1, ..., d)``."""

    phi: Tensor
    theta: Tensor

    def distance(self) -> Tensor:
        """Distance to the equilibrium ``‖(φ, θ)‖`` per step: ``(steps + 1, ...)``."""
        return torch.cat([self.phi, self.theta], -1).norm(dim=-1)


def _norm(x: Tensor, eps: float) -> Tensor:
    return x.norm(dim=-1, keepdim=True).clamp_min(eps)  # (..., 1)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)  # (..., 1)


@dataclass(frozen=True)
class DiracGAN:
    """The Dirac GAN of a ``loss`` with optional fixes; states are ``phi, theta`` ``(..., d)``.

    Args:
        loss: one of :data:`LOSSES`.
        gp_weight: λ of the gradient penalty ``λ (‖∇ₓD‖ − c)²`` on the discriminator.
        gp_center: its centre ``c`` (0: zero-centred, 1: WGAN-GP).
        weight_decay: μ of an L2 penalty ``μ/2 ‖φ‖²`` on the discriminator.
        consensus: γ of consensus optimisation (both players).
        qp_scale: λ of GAN-QP's quadratic term.
        eps: floor of ``‖φ‖``/``‖θ‖`` in the fields that divide by them.
    """

    loss: str = "ns-gan"
    gp_weight: float = 0.0
    gp_center: float = 0.0
    weight_decay: float = 0.0
    consensus: float = 0.0
    qp_scale: float = 1.0
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("gp_weight", "gp_center", "weight_decay", "consensus"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.qp_scale > 0:
            raise ValueError(f"qp_scale must be > 0, got {self.qp_scale!r}")

    # -- the vector field --------------------------------------------------------------
    def _base_field(self, phi: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        s = _dot(theta, phi)
        if self.loss == "ns-gan":
            return -torch.sigmoid(s) * theta, torch.sigmoid(-s) * phi
        if self.loss == "wgan":
            r = _norm(phi, self.eps)
            return -theta / r + s * phi / r**3, phi / r
        if self.loss == "wgan-gp":
            return -theta, phi
        return -theta - s * theta / (self.qp_scale * _norm(theta, self.eps)), phi  # gan-qp

    def _field(self, phi: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        dphi, dtheta = self._base_field(phi, theta)
        if self.gp_weight:
            dphi = dphi - 2 * self.gp_weight * phi
            if self.gp_center:  # + 2λ c φ/‖φ‖ (not differentiable at φ = 0)
                dphi = dphi + 2 * self.gp_weight * self.gp_center * phi / _norm(phi, self.eps)
        if self.weight_decay:
            dphi = dphi - self.weight_decay * phi
        return dphi, dtheta

    def vector_field(self, phi: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ̇, θ̇)``, each ``(..., d)``: the players' negative loss gradients and the fixes."""
        _check_state(phi, theta)
        if not self.consensus:
            return self._field(phi, theta)
        graph = phi.requires_grad or theta.requires_grad  # e.g. inside jacobian()
        with torch.enable_grad():
            if not graph:
                phi, theta = phi.detach().requires_grad_(), theta.detach().requires_grad_()
            dphi, dtheta = self._field(phi, theta)
            half_sq = 0.5 * (dphi.square().sum() + dtheta.square().sum())
            # ∇(½‖v‖²) = Jᵀ v, point by point (the points do not interact)
            gphi, gtheta = torch.autograd.grad(half_sq, (phi, theta), create_graph=graph)
        dphi, dtheta = dphi - self.consensus * gphi, dtheta - self.consensus * gtheta
        return (dphi, dtheta) if graph else (dphi.detach(), dtheta.detach())

    # -- training ----------------------------------------------------------------------
    def step(self, phi: Tensor, theta: Tensor, lr: float, method: str = "simultaneous"
             ) -> tuple[Tensor, Tensor]:
        """One update of size ``lr``: an RK4 step of the flow (``"continuous"``) or a
        simultaneous / alternating gradient step."""
        if method == "simultaneous":
            dphi, dtheta = self.vector_field(phi, theta)
            return phi + lr * dphi, theta + lr * dtheta
        if method == "alternating":
            phi = phi + lr * self.vector_field(phi, theta)[0]
            return phi, theta + lr * self.vector_field(phi, theta)[1]
        if method == "continuous":
            k1 = self.vector_field(phi, theta)
            k2 = self.vector_field(phi + lr / 2 * k1[0], theta + lr / 2 * k1[1])
            k3 = self.vector_field(phi + lr / 2 * k2[0], theta + lr / 2 * k2[1])
            k4 = self.vector_field(phi + lr * k3[0], theta + lr * k3[1])
            return tuple(x + lr / 6 * (a + 2 * b + 2 * c + d)  # type: ignore[return-value]
                         for x, a, b, c, d in zip((phi, theta), k1, k2, k3, k4))
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def simulate(self, phi: Tensor, theta: Tensor, steps: int, lr: float,
                 method: str = "simultaneous") -> Trajectory:
        """Train from ``(phi, theta)`` ``(..., d)`` for ``steps`` updates of size ``lr`` (the
        time step of RK4 for ``"continuous"``); any leading dims are independent runs."""
        _check_state(phi, theta)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        phis, thetas = [phi], [theta]
        with torch.no_grad():
            for _ in range(steps):  # time stepping: each state needs the previous one
                phi, theta = self.step(phi, theta, lr, method)
                phis.append(phi)
                thetas.append(theta)
        return Trajectory(torch.stack(phis), torch.stack(thetas))

    # -- local analysis at the equilibrium ---------------------------------------------
    def jacobian(self, dim: int = 2, method: str = "continuous", lr: float = 0.1) -> Tensor:
        """The Jacobian at the equilibrium ``φ = θ = 0``, ``(2d, 2d)`` over ``(φ, θ)``: of the
        vector field (``"continuous"``) or of the one-step map of simultaneous /
        alternating GD with learning rate ``lr``.

        Raises ``ValueError`` where the field is not differentiable at 0 (``"wgan"``,
        ``"gan-qp"``, a penalty with ``gp_center != 0``).
        """
        if self.loss in ("wgan", "gan-qp") or (self.gp_weight and self.gp_center):
            raise ValueError(f"the {self.loss!r} field (gp_center={self.gp_center}) divides by "
                             "‖φ‖ or ‖θ‖ and is not differentiable at the equilibrium")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")

        def flat(x: Tensor) -> Tensor:
            phi, theta = x[:dim], x[dim:]
            if method == "continuous":
                return torch.cat(self.vector_field(phi, theta))
            return torch.cat(self.step(phi, theta, lr, method))

        return torch.autograd.functional.jacobian(flat, torch.zeros(2 * dim, dtype=torch.float64))

    def eigenvalues(self, dim: int = 2, method: str = "continuous", lr: float = 0.1) -> Tensor:
        """Eigenvalues of :meth:`jacobian` (complex, ``(2d,)``). The equilibrium is locally
        convergent iff all real parts are < 0 (continuous) or all moduli < 1 (discrete)."""
        return torch.linalg.eigvals(self.jacobian(dim, method, lr))


def _check_state(phi: Tensor, theta: Tensor) -> None:
    if not (isinstance(phi, Tensor) and isinstance(theta, Tensor)):
        raise ValueError("phi and theta must be tensors")  # noqa: TRY004
    if phi.shape != theta.shape or phi.dim() == 0:
        raise ValueError(f"phi and theta must have the same shape (..., d), got "
                         f"{tuple(phi.shape)} and {tuple(theta.shape)}")
