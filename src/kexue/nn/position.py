"""Absolute position encodings: learned and sinusoidal.

Rotary positions (RoPE) and their length-extrapolation variants are in
:mod:`kexue.nn.rope`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_position_ids(position_ids: Tensor) -> Tensor:
    """Validate integer positions ``>= 0`` given as ``(seq,)`` or ``(batch, seq)``; return
    them as ``(batch|1, seq)``."""
    if not isinstance(position_ids, Tensor) or position_ids.dim() not in (1, 2):
        shape = tuple(position_ids.shape) if isinstance(position_ids, Tensor) else position_ids
        raise ValueError(f"position_ids must be a (seq,) or (batch, seq) tensor, got {shape}")
    if position_ids.is_floating_point():
        raise ValueError(f"position_ids must be integers, got {position_ids.dtype}")
    if position_ids.numel() and int(position_ids.min()) < 0:
        raise ValueError(f"position_ids must be >= 0, got min {int(position_ids.min())}")
    return position_ids if position_ids.dim() == 2 else position_ids[None]


class LearnedPositionEmbedding(nn.Embedding):
    """Trainable absolute positions (BERT, GPT-2): a table of ``num_positions`` vectors."""

    def forward(self, position_ids: Tensor) -> Tensor:  # (batch, seq) -> (batch, seq, dim)
        if position_ids.numel() and int(position_ids.max()) >= self.num_embeddings:
            raise ValueError(
                f"position id {int(position_ids.max())} is out of range: this model has "
                f"{self.num_embeddings} learned positions (max_position_embeddings)"
            )
        return super().forward(position_ids)


def sinusoidal_embedding(position_ids: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Vaswani et al.'s table, interleaved: ``PE[p, 2i] = sin(p θ_i)``, ``PE[p, 2i+1] = cos(p θ_i)``
    with ``θ_i = base^(-2i/dim)``. Returns ``(batch, seq, dim)`` in float32."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    pos = check_position_ids(position_ids).double()  # (batch, seq)
    theta = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
    angle = pos[..., None] * theta  # (batch, seq, dim/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2).float()


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sinusoidal positions (no parameters), see :func:`sinusoidal_embedding`."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"dim must be a positive even number, got {dim}")
        self.dim, self.base = dim, base

    def forward(self, position_ids: Tensor) -> Tensor:  # (batch, seq) -> (batch, seq, dim)
        return sinusoidal_embedding(position_ids, self.dim, self.base)
