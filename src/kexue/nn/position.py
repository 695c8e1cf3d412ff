"""Position encodings: learned, sinusoidal and rotary (RoPE).

RoPE (Su Jianlin, Transformer升级之路：2、博采众长的旋转式位置编码, 2021-03-23,
https://kexue.fm/archives/8265) rotates each pair of query/key features by an angle
proportional to the position, so ``<R_m q, R_n k> = <q, R_{n-m} k>`` depends only on
the relative position. :class:`RotaryEmbedding` takes a ``base`` and a ``scaling``
hook so that the length-extrapolation variants reviewed in Transformer升级之路：16、
"复盘"长度外推技术 (2024-01-26, https://kexue.fm/archives/9948) — position
interpolation, NTK, YaRN, dynamic scaling — are functions of the frequencies, not
new classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# scaling(inv_freq, seq_len) -> (new_inv_freq, attention_factor); see RotaryEmbedding.
RopeScaling = Callable[[Tensor, int], tuple[Tensor, float]]


def _as_position_ids(position_ids: Tensor) -> Tensor:
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
    pos = _as_position_ids(position_ids).double()  # (batch, seq)
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


class RotaryEmbedding(nn.Module):
    """RoPE angles for given positions: returns ``(cos, sin)`` to feed :func:`apply_rotary`.

    Frequencies ``θ_i = base^(-2i/dim)``, ``i = 0 .. dim/2-1``; position ``m`` rotates
    feature pair ``i`` by ``m θ_i``. In complex form, with ``z_i = x_{2i} + j·x_{2i+1}``,
    ``RoPE(x, m)_i = z_i · e^{j m θ_i}``.

    Args:
        dim: rotated feature size per head (even; the attention's ``key_size``).
        base: the ``10000`` above (RoPE-ABF / NTK variants change it).
        interleaved: pairs are ``(x_{2i}, x_{2i+1})`` (RoFormer, Su's convention); with
            ``False`` they are ``(x_i, x_{i+dim/2})`` (GPT-NeoX / LLaMA "rotate half").
        scaling: optional hook ``scaling(inv_freq, seq_len) -> (inv_freq, factor)``
            called with the float64 frequencies ``(dim/2,)`` and ``seq_len = max
            position + 1``; it returns new frequencies and a factor multiplying cos and
            sin (YaRN's attention temperature). Position interpolation by ``s`` is
            ``lambda f, n: (f / s, 1.0)``.
    """

    def __init__(
        self,
        dim: int,
        base: float = 10000.0,
        *,
        interleaved: bool = True,
        scaling: RopeScaling | None = None,
    ):
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"RoPE dim must be a positive even number, got {dim}")
        if not base > 1.0:
            raise ValueError(f"RoPE base must be > 1, got {base}")
        self.dim, self.base, self.interleaved, self.scaling = dim, float(base), interleaved, scaling
        inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(
        self, position_ids: Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``position_ids`` ``(batch, seq)`` or ``(seq,)`` -> ``cos, sin`` ``(batch, 1, seq, dim)``."""
        pos = _as_position_ids(position_ids)
        inv_freq, factor = self.inv_freq.to(pos.device), 1.0
        if self.scaling is not None:
            seq_len = int(pos.max()) + 1 if pos.numel() else 0
            inv_freq, factor = self.scaling(inv_freq, seq_len)
        # (batch, seq, dim/2), in float64 so long positions keep their precision
        angle = pos.double()[..., None] * inv_freq
        if self.interleaved:
            angle = angle.repeat_interleave(2, dim=-1)
        else:
            angle = torch.cat([angle, angle], dim=-1)
        cos, sin = angle.cos() * factor, angle.sin() * factor
        return cos[:, None].to(dtype), sin[:, None].to(dtype)  # (batch, 1, seq, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, interleaved={self.interleaved}"


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool = True) -> Tensor:
    """Rotate ``x`` ``(batch, heads, seq, dim)`` by the angles behind ``cos, sin``
    ``(batch, 1, seq, dim)``: ``x·cos + rotate(x)·sin`` with ``rotate`` the 90° turn of
    each pair, ``(a, b) -> (-b, a)``."""
    if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(
            f"apply_rotary: x (..., seq, dim) = {tuple(x.shape)} does not match "
            f"cos/sin (..., seq, dim) = {tuple(cos.shape)}"
        )
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))  # (..., dim/2, 2)
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        a, b = x.chunk(2, dim=-1)
        rotated = torch.cat([-b, a], dim=-1)
    return x * cos + rotated * sin
