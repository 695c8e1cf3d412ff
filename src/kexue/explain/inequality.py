"""An inequality between the input-gradient and the parameter-gradient penalty of an MLP.

Source: 输入梯度惩罚与参数梯度惩罚的一个不等式 (2021-12-11, https://kexue.fm/archives/8796),
after Dherin et al., "The Geometric Occam's Razor Implicit in Deep Learning" (2021).

For an MLP ``h(t+1) = g_t(W_t h(t) + b_t)``, ``t = 1..l``, ``h(1) = x``, parameters
``theta = {W_t, b_t}`` and any scalar function ``f`` of ``h(l+1)``::

    ||grad_x f||^2 * sum_t (1 + ||h(t)||^2) / (||W_t||^2 * ||grad_x h(t)||^2)  <=  ||grad_theta f||^2

per example, with L2 norms for vectors and spectral norms for the matrices ``W_t`` and
the Jacobians ``grad_x h(t)`` (``grad_x h(1) = I``). The proof is per layer:
``h(t) (grad_x f)^T = (grad_{W_t} f) W_t (grad_x h(t))`` bounds the ``||h||^2`` term by
``||grad_{W_t} f||_F^2``, and the same argument for ``b_t`` gives the ``1``. So a
penalty on the parameter gradient (implicit in SGD) contains an input-gradient penalty.

A layer without bias contributes ``||h(t)||^2`` instead of ``1 + ||h(t)||^2`` (its bias is
not a parameter). A term whose denominator is 0 is 0: then ``grad_x f = 0`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["InequalitySides", "gradient_penalty_inequality"]


class InequalitySides(NamedTuple):
    """Both sides of the inequality, per example (``lhs <= rhs``)."""

    lhs: Tensor  # (batch,) ||grad_x f||^2 * sum_t (1 + ||h_t||^2) / (||W_t||^2 ||grad_x h_t||^2)
    rhs: Tensor  # (batch,) ||grad_theta f||^2 over all weights and biases
    input_grad_sq: Tensor  # (batch,) ||grad_x f||^2


def _layers(mlp: nn.Sequential) -> list[tuple[nn.Linear, list[nn.Module]]]:
    """Split ``mlp`` into (Linear, activations after it) pairs."""
    if not isinstance(mlp, nn.Sequential) or len(mlp) == 0:
        raise ValueError(f"mlp must be a non-empty nn.Sequential of Linear and activation "
                         f"layers, got {type(mlp).__name__}")
    layers: list[tuple[nn.Linear, list[nn.Module]]] = []
    for i, module in enumerate(mlp):
        if isinstance(module, nn.Linear):
            layers.append((module, []))
        elif not layers:
            raise ValueError(f"mlp must start with nn.Linear, got {type(module).__name__} at "
                             f"position {i}")
        else:
            layers[-1][1].append(module)
    return layers


# Activations that act on each entry separately: their Jacobian is diag(g'(z)).
ELEMENTWISE = (nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU,
               nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.LogSigmoid, nn.Hardsigmoid, nn.Tanh,
               nn.Hardtanh, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink)


def _jacobian_through(activations: list[nn.Module], z: Tensor, jac: Tensor) -> Tensor:
    """Push the Jacobian ``jac = dz/dx`` (batch, d, d_in) through the activations."""
    def g(v: Tensor) -> Tensor:
        for act in activations:
            v = act(v)
        return v

    if all(isinstance(act, ELEMENTWISE) for act in activations):
        slope = torch.func.jvp(g, (z,), (torch.ones_like(z),))[1]  # (batch, d): g'(z)
        return slope.unsqueeze(-1) * jac

    def push(tangent: Tensor) -> Tensor:  # tangent (batch, d): one column of dz/dx
        return torch.func.jvp(g, (z,), (tangent,))[1]

    return torch.func.vmap(push, in_dims=2, out_dims=2)(jac)  # (batch, d_out, d_in)


def gradient_penalty_inequality(
    mlp: nn.Sequential, x: Tensor, f: Callable[[Tensor], Tensor] | None = None
) -> InequalitySides:
    """Both sides of the input- vs parameter-gradient-penalty inequality, per example.

    Args:
        mlp: ``nn.Sequential`` of ``nn.Linear`` layers, each followed by zero or more
            activation modules (which must act on each example separately and keep
            the shape ``(batch, features)``). Put it in ``eval()`` mode if it has dropout.
        x: inputs, shape ``(batch, in_features)``.
        f: scalar function of the output per example, ``(batch, out) -> (batch,)``;
            default the sum of the outputs.

    Returns :class:`InequalitySides` ``(lhs, rhs, input_grad_sq)``, each ``(batch,)``.
    Gradients are exact (autograd; the per-example parameter gradient of layer ``t`` is
    ``delta_t h_t^T``, so ``||grad_{W_t} f||^2 = ||delta_t||^2 ||h_t||^2``).
    """
    layers = _layers(mlp)
    in_features = layers[0][0].in_features
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError(f"x must be a floating (batch, {in_features}) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
                         + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else ""))
    if x.shape[1] != in_features or x.shape[0] == 0:
        raise ValueError(f"x must have shape (batch >= 1, {in_features}), got {tuple(x.shape)}")

    with torch.enable_grad():
        x = x.detach().requires_grad_()
        h, jac = x, None  # jac = d h_t / d x, (batch, d_t, d_in); None means the identity
        hs, zs, jac_norms = [], [], []
        for linear, activations in layers:
            hs.append(h)
            jac_norms.append(x.new_ones(x.shape[0]) if jac is None
                             else torch.linalg.matrix_norm(jac, ord=2))  # (batch,)
            z = linear(h)  # (batch, d_out)
            zs.append(z)
            h = z.clone() if activations else z  # clone: an in-place activation keeps z intact
            for act in activations:
                h = act(h)
            if h.shape != z.shape:
                raise ValueError(f"activations must keep the shape {tuple(z.shape)}, got "
                                 f"{tuple(h.shape)}")
            with torch.no_grad():
                jac_z = linear.weight.unsqueeze(0) if jac is None else linear.weight @ jac
                jac_z = jac_z.expand(x.shape[0], -1, -1)  # (batch, d_out, d_in)
                jac = (_jacobian_through(activations, z.detach().clone(), jac_z)
                       if activations else jac_z)
        out = h.sum(-1) if f is None else f(h)
        if not isinstance(out, Tensor) or out.shape != (x.shape[0],):
            raise ValueError(f"f must map the (batch, features) output to shape "
                             f"({x.shape[0]},), got {tuple(getattr(out, 'shape', ()))}")
        # Examples do not interact, so the gradient of the sum is the per-example gradient.
        grads = torch.autograd.grad(out.sum(), [x, *zs])
    grad_x, deltas = grads[0], grads[1:]

    input_grad_sq = grad_x.pow(2).sum(-1)  # (batch,)
    rhs = torch.zeros_like(input_grad_sq)
    coefficient = torch.zeros_like(input_grad_sq)
    for (linear, _), h_t, delta, jac_norm in zip(layers, hs, deltas, jac_norms):
        bias_term = 1.0 if linear.bias is not None else 0.0
        h_sq = h_t.detach().pow(2).sum(-1)  # (batch,)
        rhs = rhs + delta.pow(2).sum(-1) * (bias_term + h_sq)
        denominator = (torch.linalg.matrix_norm(linear.weight.detach(), ord=2) * jac_norm) ** 2
        safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
        coefficient = coefficient + torch.where(denominator > 0, (bias_term + h_sq) / safe,
                                                torch.zeros_like(safe))
    return InequalitySides(lhs=input_grad_sq * coefficient, rhs=rhs, input_grad_sq=input_grad_sq)
