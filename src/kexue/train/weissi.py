"""WEISSI: a weight-scale-shift-invariant regulariser, the alternative to L2.

Source: L2正则没有想象那么好？可能是"权重尺度偏移"惹的祸 (2020-08-14,
https://kexue.fm/archives/7681), after Liu, Cui & Chan, arXiv 2008.02965.

A positively homogeneous network (ReLU, no normalisation layers) computes the same
function when layer ``l`` is rescaled by ``gamma_l`` (weights and, cumulatively, biases)
with ``prod_l gamma_l = 1``; L2 ``sum_l ||W_l||^2`` changes under that shift, so it
penalises something the function does not depend on. The post's invariant penalty::

    L_reg = lambda1 * sum_l log ||W_l||  +  lambda2 * sum_l || W_l / ||W_l|| ||_1

with ``||.||`` the Frobenius norm. The first term is ``log prod_l ||W_l||``, unchanged
by a shift with ``prod gamma = 1``; the second is an L1 penalty on each direction,
which does not see the scale at all. Biases and normalisation gains are not penalised.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = ["weissi_penalty"]

DEFAULT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, _ConvNd)


def weissi_penalty(model: nn.Module, lambda1: float, lambda2: float, *, eps: float = 1e-12,
                   layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYERS) -> Tensor:
    """``lambda1 * sum log max(||W||, eps) + lambda2 * sum ||W||_1 / max(||W||, eps)``.

    Args:
        model: the module whose ``layer_types`` sub-modules' ``weight`` are penalised
            (``nn.Linear`` and every ``Conv``/``ConvTranspose`` by default).
        lambda1: weight of the log-norm term (>= 0).
        lambda2: weight of the L1-of-direction term (>= 0).
        eps: the norm is clamped at ``eps`` so a zero matrix gives a finite penalty.
        layer_types: module classes whose weight is penalised.

    Returns a scalar tensor in the graph of the weights: add it to the loss.
    """
    for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    weights = [m.weight for m in model.modules()
               if isinstance(m, layer_types) and isinstance(getattr(m, "weight", None), Tensor)]
    if not weights:
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(f"model has no layer of type ({names}) with a weight to penalise")
    log_norms, directions = [], []
    for w in weights:
        norm = torch.linalg.vector_norm(w).clamp_min(eps)  # Frobenius norm
        log_norms.append(norm.log())
        directions.append(w.abs().sum() / norm)  # ||W / ||W|| ||_1
    return lambda1 * torch.stack(log_norms).sum() + lambda2 * torch.stack(directions).sum()
