"""Transformer blocks (post-LN as in BERT, pre-LN as in GPT-2) and a stack with recompute.

Recompute (gradient checkpointing): 节省显存的重计算技巧也有了Keras版了 (2020-04-29,
https://kexue.fm/archives/7367). With ``recompute=True`` each block keeps only its
input during the forward pass and re-runs itself in the backward pass
(``torch.utils.checkpoint``, non-reentrant, RNG state restored so dropout masks
repeat): activations memory drops from O(layers × block internals) to O(layers ×
hidden) for about one extra forward pass of time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kexue.nn.attention import KVCache, MultiHeadAttention
from kexue.nn.packing import Packing
from kexue.nn.rope import Rotary

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact (erf), BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation called ``name`` in Hugging Face configs (``hidden_act``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """``down(dropout?(act(up(x))))``: the position-wise two-layer MLP."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu"):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)
        self.act = get_activation(activation)

    def forward(self, x: Tensor) -> Tensor:  # (batch, seq, hidden)
        return self.down(self.act(self.up(x)))


class TransformerBlock(nn.Module):
    """One attention + feed-forward block.

    ``norm="post"`` (BERT): ``x = LN(x + drop(attn(x)))``, ``x = LN(x + drop(ffn(x)))``.
    ``norm="pre"`` (GPT-2): ``x = x + drop(attn(LN(x)))``, ``x = x + drop(ffn(LN(x)))``.
    ``attention`` holds extra :class:`MultiHeadAttention` options (``key_size``,
    ``talking_heads``, ``scale``, ``head_size``, ``use_sdpa``).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        *,
        norm: str = "post",
        activation: str = "gelu",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_eps: float = 1e-12,
        attention: dict[str, Any] | None = None,
    ):
        super().__init__()
        if norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre', got {norm!r}")
        self.norm = norm
        self.attn = MultiHeadAttention(
            hidden_size, num_heads, dropout=attention_dropout, **(attention or {})
        )
        self.ln1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.ffn = FeedForward(hidden_size, intermediate_size, activation)
        self.ln2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        is_causal: bool = False,
        rotary: Rotary | None = None,
        attn_bias: Tensor | None = None,
        past_key_value: KVCache | None = None,
        use_cache: bool = False,
        packing: Packing | None = None,
    ) -> tuple[Tensor, KVCache | None]:
        """``x`` ``(batch, seq, hidden)``, or ``(n, hidden)`` real tokens with ``packing``
        (every layer but attention is token-wise, so only attention needs the layout)."""
        kw = {"is_causal": is_causal, "rotary": rotary, "attn_bias": attn_bias,
              "past_key_value": past_key_value, "use_cache": use_cache,
              "packing": packing}  # fmt: skip
        if self.norm == "post":
            a, present = self.attn(x, attention_mask, **kw)
            x = self.ln1(self.dropout(a) + x)
            x = self.ln2(self.dropout(self.ffn(x)) + x)
        else:
            a, present = self.attn(self.ln1(x), attention_mask, **kw)
            x = self.dropout(a) + x
            x = self.dropout(self.ffn(self.ln2(x))) + x
        return x, present


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` s; ``recompute=True`` checkpoints each block
    while training with gradients enabled (``use_reentrant=False``, RNG preserved)."""

    def __init__(self, num_layers: int, *args: Any, recompute: bool = False, **kwargs: Any):
        super().__init__()
        if num_layers <= 0:
            raise ValueError(f"num_layers must be > 0, got {num_layers}")
        self.layers = nn.ModuleList(TransformerBlock(*args, **kwargs) for _ in range(num_layers))
        self.recompute = recompute

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        rotary: Rotary | None = None,
        attn_bias: Tensor | None = None,
        past_key_values: tuple[KVCache, ...] | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        packing: Packing | None = None,
    ) -> tuple[Tensor, tuple[KVCache, ...] | None, tuple[Tensor, ...] | None]:
        """``x`` ``(batch, seq, hidden)`` -> ``(output, caches or None, hidden states or None)``;
        the hidden states are the input followed by each block's output. With ``packing``
        ``x`` and the outputs hold the real tokens only, ``(n, hidden)``."""
        if past_key_values is not None and len(past_key_values) != len(self.layers):
            raise ValueError(
                f"past_key_values must hold {len(self.layers)} layers, got {len(past_key_values)}"
            )
        hidden = [x] if output_hidden_states else None
        presents = [] if use_cache else None
        recompute = self.recompute and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            past = None if past_key_values is None else past_key_values[i]
            args = (x, attention_mask, is_causal, rotary, attn_bias, past, use_cache, packing)
            if recompute:
                x, present = checkpoint(layer, *args, use_reentrant=False, preserve_rng_state=True)
            else:
                x, present = layer(*args)
            if use_cache:
                presents.append(present)
            if output_hidden_states:
                hidden.append(x)
        return (
            x,
            None if presents is None else tuple(presents),
            None if hidden is None else tuple(hidden),
        )


def saved_activation_bytes(module: nn.Module, forward: Callable[[], Any]) -> int:
    """Bytes of tensors autograd saves for backward while ``forward()`` runs.

    Counts each storage once and leaves out ``module``'s parameters, so the figure is
    the activation memory a training step holds between forward and backward — what
    recompute shrinks. Measured with ``torch.autograd.graph.saved_tensors_hooks``; it
    does not depend on the allocator or on what else the process holds.
    """
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(seen.values())
