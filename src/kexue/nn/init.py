"""Initialisation of non-square weights: which average of the two dimensions to use.

T27: 初始化方法中非方阵的维度平均策略思考 (2021-10-18, https://kexue.fm/archives/8725).
For ``y = x W`` with ``W ∈ R^{m×n}`` (m inputs, n outputs) drawn i.i.d. with mean 0 and
variance ``t``, the forward second moment is multiplied by ``m t`` and the backward one
(``∂l/∂x`` from ``∂l/∂y``) by ``n t``. ``t = 1/d`` for an average dimension ``d``:

================  ======================  ==============================================
``average``       d                       what it keeps
================  ======================  ==============================================
``"fan_in"``      m                       the forward moment, layer by layer
``"fan_out"``     n                       the backward moment, layer by layer
``"arithmetic"``  (m + n) / 2             Xavier's compromise
``"geometric"``   √(mn)                   both moments end to end through any product of
                                          layers that returns to its input width
                                          (m→n→m: (m t)(n t) = 1), the post's "global"
                                          optimum
``"quadratic"``   (m² + n²) / (m + n)     minimises (m t − 1)² + (n t − 1)², the post's
                                          per-layer ("local") optimum
================  ======================  ==============================================

and ``(m² + n²)/(m + n) ≥ (m + n)/2 ≥ √(mn)``. torch stores a ``Linear`` weight as
``(out, in)``, so ``m = in_features = weight.size(1)``; a convolution's fans include the
kernel area, as in :func:`torch.nn.init.xavier_normal_`. An activation's gain multiplies
the standard deviation on top (``gain=math.sqrt(2)`` for ReLU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AVERAGES", "average_dimension", "fan_average_normal_", "fan_average_uniform_",
           "fans",
           "normal_init_"]

AVERAGES = ("fan_in", "fan_out", "arithmetic", "geometric", "quadratic")


def average_dimension(fan_in: int, fan_out: int, average: str = "geometric") -> float:
    """The dimension ``d`` whose inverse is the variance, ``t = 1/d``, for a ``fan_in × fan_out``
    weight under one of :data:`AVERAGES`."""
    for name, value in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    m, n = fan_in, fan_out
    if average == "fan_in":
        return float(m)
    if average == "fan_out":
        return float(n)
    if average == "arithmetic":
        return (m + n) / 2
    if average == "geometric":
        return math.sqrt(m * n)
    if average == "quadratic":
        return (m * m + n * n) / (m + n)
    raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")


def fans(tensor: Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight stored torch-style as ``(out, in, *kernel)``."""
    if not isinstance(tensor, Tensor) or tensor.dim() < 2:
        raise ValueError("expected a weight with at least 2 dimensions (out, in, *kernel), got "
                         f"{tuple(tensor.shape) if isinstance(tensor, Tensor) else tensor!r}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.size(1) * receptive, tensor.size(0) * receptive


def _std(tensor: Tensor, average: str, gain: float) -> float:
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    return gain / math.sqrt(average_dimension(*fans(tensor), average))


def fan_average_normal_(tensor: Tensor, average: str = "geometric", gain: float = 1.0) -> Tensor:
    """Fill ``tensor`` in place from ``N(0, gain² / d)``, ``d`` the ``average`` of its fans.

    ``average="arithmetic"`` is :func:`torch.nn.init.xavier_normal_`; ``"fan_in"`` is
    :func:`torch.nn.init.kaiming_normal_` with ``gain`` in place of its nonlinearity.

    Args:
        tensor: a weight ``(out, in, *kernel)``.
        average: one of :data:`AVERAGES`.
        gain: multiplies the standard deviation (an activation's gain).
    """
    std = _std(tensor, average, gain)
    with torch.no_grad():
        return tensor.normal_(0.0, std)


def fan_average_uniform_(tensor: Tensor, average: str = "geometric", gain: float = 1.0) -> Tensor:
    """Fill ``tensor`` in place from ``U(−a, a)`` with the variance ``a²/3 = gain² / d`` of
    :func:`fan_average_normal_`."""
    bound = math.sqrt(3.0) * _std(tensor, average, gain)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


def normal_init_(module: nn.Module, std: float) -> None:
    """BERT/GPT-2 initialisation of one module: Linear and Embedding weights N(0, std²),
    Linear biases zero (LayerNorm keeps its ones and zeros). Use with ``model.apply``."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
