"""Small building blocks shared by the generative models."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from torch import nn

__all__ = ["mlp"]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU,
        **activation_kwargs: Any) -> nn.Sequential:
    """Linear layers ``sizes[0] → … → sizes[-1]`` with ``activation(**activation_kwargs)``
    between them (none after the last), e.g. ``mlp([2, 64, 64, 1], nn.LeakyReLU,
    negative_slope=0.2)``."""
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least an input and an output size, got {sizes!r}")
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), activation(**activation_kwargs)]
    return nn.Sequential(*layers[:-1])
