"""Gradient-norm penalties on the parameters.

Flooding (kexue.fm/archives/7643, 2020-07-31): with learning rate ``eps``, a step of gradient
descent followed by a step of ascent is, to second order, one step on
``L(θ) + (eps / 4) ||∇θ L||²`` — flooding regularises the squared parameter gradient. The
penalty on the *input* gradient, which FGM approximates, is
:func:`kexue.train.gradient_penalty`; post 8796 relates the two
(:func:`kexue.explain.gradient_penalty_inequality`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["parameter_gradient_penalty", "squared_gradient_norm"]


def squared_gradient_norm(loss: Tensor, tensors: Iterable[Tensor], *,
                          create_graph: bool = False) -> Tensor:
    """``Σ ||∂ loss / ∂ t||²`` over ``tensors`` (parameters or inputs), a 0-dim tensor.

    With ``create_graph=True`` the result is differentiable (double backward), so it can be
    added to a loss; tensors the loss does not depend on contribute 0.
    """
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss must be a scalar floating tensor, got {got}")
    tensors = [t for t in tensors if t.requires_grad]
    if not tensors:
        raise ValueError("expected at least one tensor with requires_grad=True, got none")
    grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
    return sum((g.pow(2).sum() for g in grads if g is not None), loss.new_zeros(()))


def parameter_gradient_penalty(loss: Tensor, model: nn.Module | Iterable[Tensor],
                               epsilon: float = 1.0) -> Tensor:
    """``loss + 0.5 * epsilon * ||∇θ loss||²`` over the trainable parameters of ``model``
    (or the given tensors), differentiable: back-propagating it costs a double backward."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    params = model.parameters() if isinstance(model, nn.Module) else model
    return loss + 0.5 * epsilon * squared_gradient_norm(loss, params, create_graph=True)
