"""Unpadded execution: token-wise layers on the real tokens only.

A padded batch ``(batch, seq)`` of sentences with ``n`` real tokens wastes
``batch·seq − n`` rows in every token-wise layer (embeddings, projections,
feed-forward, LayerNorm, output heads); on real text (STS-B, SST-2 batches of 32)
padding is 2.5–3× the real tokens. :class:`Packing` records where the real tokens sit
and moves tensors between the two layouts::

    packing = Packing.from_mask(keep)     # keep: (batch, seq) bool, True = real token
    h = packing.pack(x)                   # (batch, seq, hidden) -> (n, hidden)
    x = packing.unpack(h)                 # (n, hidden) -> (batch, seq, hidden), 0 at padding

:class:`~kexue.nn.MultiHeadAttention` given ``packing=`` takes and returns packed rows
and runs attention itself in the padded layout (the projections stay packed). On CPU
(torch 2.13) nested jagged tensors have no SDPA kernel, and one SDPA call per sequence
measured about as fast as padded attention (``benchmarks/encoder.py``, section
``layout``) while supporting less; with attention padded, everything it accepts (any
boolean mask, causality, RoPE, biases, a KV cache) works unchanged, and the real
tokens' outputs equal the padded computation's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a padded ``(batch, seq)`` layout are.

    Attributes:
        indices: ``(n,)`` flat positions ``row·seq + col`` of the real tokens, row-major.
        batch, seq: the padded layout's shape.
    """

    indices: Tensor
    batch: int
    seq: int

    @classmethod
    def from_mask(cls, keep: Tensor) -> Packing:
        """The packing of the True entries of a boolean ``(batch, seq)`` mask."""
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.dim() != 2:
            got = (tuple(keep.shape), keep.dtype) if isinstance(keep, Tensor) else keep
            raise ValueError(f"keep must be a boolean (batch, seq) tensor, got {got}")
        batch, seq = keep.shape
        return cls(keep.flatten().nonzero().squeeze(1), batch, seq)

    @property
    def num_tokens(self) -> int:
        return self.indices.numel()

    def pack(self, x: Tensor) -> Tensor:
        """``(batch, seq, ...)`` -> ``(n, ...)``: the real tokens' rows, row-major."""
        if x.shape[:2] != (self.batch, self.seq):
            raise ValueError(
                f"expected a ({self.batch}, {self.seq}, ...) tensor to pack, got {tuple(x.shape)}"
            )
        return x.reshape(self.batch * self.seq, *x.shape[2:]).index_select(0, self.indices)

    def unpack(self, x: Tensor) -> Tensor:
        """``(n, ...)`` -> ``(batch, seq, ...)`` with zeros at the padding."""
        if x.shape[0] != self.num_tokens:
            raise ValueError(f"expected {self.num_tokens} packed rows, got {tuple(x.shape)}")
        full = x.new_zeros(self.batch * self.seq, *x.shape[1:])
        return full.index_copy(0, self.indices, x).view(self.batch, self.seq, *x.shape[1:])


def real_tokens(mask: Tensor | None, batch: int, seq: int) -> Packing | None:
    """The packing of the new tokens some query may attend to; None when that is all of
    them (nothing to skip).

    ``mask`` is boolean ``(batch|1, heads|1, seq|1, past + seq)``, True = may attend. A
    new token that no query of this call attends to cannot change any other token's
    output, so it counts as padding: it is skipped and its output and cached
    keys/values are zero. With a 0/1 padding mask that is exactly the padding; with a
    UniLM mask too (every real token sees itself).
    """
    if mask is None:
        return None
    keep = mask[..., -seq:].flatten(1, 2).any(dim=1).expand(batch, seq)  # (batch, seq)
    if bool(keep.all()):
        return None
    return Packing.from_mask(keep)
