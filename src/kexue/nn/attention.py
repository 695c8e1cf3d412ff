"""Multi-head attention with a decoupled key size, Talking-Heads and an entropy-invariant scale.

- ``key_size`` independent of ``head_size`` and Talking-Heads attention:
  突破瓶颈，打造更强大的Transformer (2020-04-13, https://kexue.fm/archives/7325).
  Queries and keys get ``key_size`` features per head, values ``head_size``; a small
  ``key_size`` is the low-rank bottleneck of ``softmax(QKᵀ)``. Talking heads mix the
  heads' logits with a learned ``h × h`` matrix before the softmax,
  ``J^(g) = Σ_h λ_gh Q^(h) K^(h)ᵀ``, and the weights with a second one after it;
  both start at the identity (= vanilla attention) and the mask is applied *after*
  the pre-softmax mixing (mixing ``-inf`` logits would give NaN).
- ``scale="entropy"``: 从熵不变性看Attention的Scale操作 (2021-12-21,
  https://kexue.fm/archives/8823). ``softmax(log_512(n)/√d · QKᵀ)`` with ``n`` the
  number of keys each query can see (padding and causality counted), ``n >= 16``,
  keeps the attention entropy roughly independent of the length.

The fast path is :func:`torch.nn.functional.scaled_dot_product_attention`; the
explicit path (``use_sdpa=False``, and always with talking heads or two-pass ReRoPE
positions) is the readable reference the tests compare against. Rotary positions come
as a :class:`~kexue.nn.rope.Rotary` built once per forward pass by
:class:`~kexue.nn.RoPE`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.nn.masks import causal_mask
from kexue.nn.packing import Packing
from kexue.nn.rope import Rotary

SCALE_POLICIES = ("sqrt", "entropy")
KVCache = tuple[Tensor, Tensor]  # keys (batch, heads, past, key_size), values (..., head_size)


def entropy_scale(n: Tensor, key_size: int, *, train_len: int = 512, min_n: int = 16) -> Tensor:
    """``log(max(n, min_n)) / log(train_len) / √key_size`` — Attention-E's scale for a
    query that sees ``n`` keys (at ``n = train_len`` it equals the usual ``1/√d``)."""
    return n.clamp(min=min_n).double().log() / (math.log(train_len) * math.sqrt(key_size))


class MultiHeadAttention(nn.Module):
    """Self-attention ``softmax(scale · Q Kᵀ + bias, masked) V`` over ``num_heads`` heads.

    Args:
        hidden_size: input and output features.
        num_heads: number of heads ``h``.
        head_size: value features per head (default ``hidden_size / h``).
        key_size: query/key features per head (default ``head_size``).
        bias: biases in the projections.
        dropout: dropout on the attention weights.
        talking_heads: learned ``h × h`` head mixing before and after the softmax.
        scale: ``"sqrt"`` (``1/√key_size``), ``"entropy"`` (``log_512(n)/√key_size``)
            or a float multiplying the logits.
        use_sdpa: use ``F.scaled_dot_product_attention`` when the options allow it.

    Parameters: ``qkv`` (one fused projection, output ``[q | k | v]`` of widths
    ``h·key_size, h·key_size, h·head_size``), ``out``, and ``pre_mix``/``post_mix``
    with talking heads.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        head_size: int | None = None,
        key_size: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        talking_heads: bool = False,
        scale: str | float = "sqrt",
        use_sdpa: bool = True,
    ):
        super().__init__()
        if hidden_size <= 0 or num_heads <= 0:
            raise ValueError(
                f"hidden_size and num_heads must be > 0, got {hidden_size} and {num_heads}"
            )
        if head_size is None:
            if hidden_size % num_heads:
                raise ValueError(
                    f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads}) "
                    "unless head_size is given"
                )
            head_size = hidden_size // num_heads
        key_size = head_size if key_size is None else key_size
        if head_size <= 0 or key_size <= 0:
            raise ValueError(f"head_size and key_size must be > 0, got {head_size} and {key_size}")
        if isinstance(scale, str) and scale not in SCALE_POLICIES:
            raise ValueError(f"scale must be one of {SCALE_POLICIES} or a float, got {scale!r}")
        if not isinstance(scale, str) and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"a numeric scale must be a positive float, got {scale!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_size, self.key_size = head_size, key_size
        self.scale, self.dropout, self.use_sdpa = scale, dropout, use_sdpa
        self.split_sizes = [num_heads * key_size, num_heads * key_size, num_heads * head_size]
        self.qkv = nn.Linear(hidden_size, sum(self.split_sizes), bias=bias)
        self.out = nn.Linear(num_heads * head_size, hidden_size, bias=bias)
        self.talking_heads = talking_heads
        if talking_heads:
            self.pre_mix = nn.Parameter(torch.eye(num_heads))
            self.post_mix = nn.Parameter(torch.eye(num_heads))

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, head_size={self.head_size}, key_size={self.key_size}, "
            f"scale={self.scale!r}, talking_heads={self.talking_heads}"
        )

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        rotary: Rotary | None = None,
        attn_bias: Tensor | None = None,
        past_key_value: KVCache | None = None,
        use_cache: bool = False,
        packing: Packing | None = None,
    ) -> tuple[Tensor, KVCache | None]:
        """Attend ``x`` ``(batch, seq, hidden)`` to itself (and to a KV cache).

        Args:
            attention_mask: boolean, True = may attend; ``(q, k)``, ``(batch, q, k)`` or
                ``(batch, heads, q, k)``, any of them broadcastable (e.g. ``(batch, 1, k)``).
            is_causal: add the causal mask (bottom-right aligned with a cache).
            rotary: RoPE for the new positions (a :class:`~kexue.nn.rope.Rotary` from
                :class:`~kexue.nn.RoPE`): ``rotary.apply(q, k)`` rotates q and k (keys
                are cached after rotation), or, when ``rotary.two_pass`` (ReRoPE),
                ``rotary.logits(q, k)`` builds the logits on the explicit path.
            attn_bias: additive logit bias broadcastable to ``(batch, heads, q, k)``
                (relative-position biases, ALiBi, ...), added after scaling.
            past_key_value: ``(keys, values)`` of earlier positions.
            use_cache: also return the updated ``(keys, values)``.
            packing: ``x`` holds only the real tokens, ``(n, hidden)``, laid out by this
                :class:`~kexue.nn.Packing`; the projections run on them and attention
                in the padded layout (padding rows zero; the mask must hide them). The
                output is packed too; the cache is in the padded layout.

        Returns ``(output (batch, seq, hidden) or (n, hidden), cache or None)``.
        """
        want = 2 if packing is not None else 3
        if x.dim() != want or x.shape[-1] != self.hidden_size or not x.is_floating_point():
            shape = "(n, " if packing is not None else "(batch, seq, "
            raise ValueError(
                f"x must be a float {shape}{self.hidden_size}) tensor, got {tuple(x.shape)} {x.dtype}"
            )
        qkv = self.qkv(x)  # (batch, seq, 2·h·ks + h·hs), or (n, ...) packed
        if packing is not None:
            qkv = packing.unpack(qkv)  # (batch, seq, ...), zero rows at the padding
        b, t, _ = qkv.shape
        h = self.num_heads
        q, k, v = qkv.split(self.split_sizes, dim=-1)
        q = q.view(b, t, h, self.key_size).transpose(1, 2)  # (b, h, t, ks)
        k = k.view(b, t, h, self.key_size).transpose(1, 2)  # (b, h, t, ks)
        v = v.view(b, t, h, self.head_size).transpose(1, 2)  # (b, h, t, hs)
        two_pass = rotary is not None and rotary.two_pass  # ReRoPE: rotary builds the logits
        if rotary is not None and not two_pass:
            q, k = rotary.apply(q, k)
        if past_key_value is not None:
            if two_pass:
                raise ValueError("two-pass positions (ReRoPE) do not support a KV cache here")
            pk, pv = past_key_value
            if pk.shape[:2] != (b, h) or pk.shape[-1] != self.key_size:
                raise ValueError(
                    f"past keys must be ({b}, {h}, past, {self.key_size}), got {tuple(pk.shape)}"
                )
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        present = (k, v) if use_cache else None
        s = k.shape[2]  # number of keys

        mask = self._mask(attention_mask, b, t, s, x.device)
        causal_fast = is_causal and mask is None and s == t
        if is_causal and not causal_fast:
            causal = causal_mask(t, s, device=x.device)
            mask = causal if mask is None else mask & causal
        scale = self._scale(mask, causal_fast, t, s, x.device)  # float or (b|1, h|1, t|1, 1)

        if self.use_sdpa and not self.talking_heads and not two_pass:
            y = self._sdpa(q, k, v, mask, causal_fast, scale, attn_bias)
        else:
            if causal_fast:
                mask = causal_mask(t, s, device=x.device)
            y = self._explicit(q, k, v, mask, scale, attn_bias, rotary if two_pass else None, is_causal)
        y = y.transpose(1, 2).reshape(b, t, h * self.head_size)  # (b, t, h*hs)
        if packing is not None:
            y = packing.pack(y)  # (n, h*hs)
        return self.out(y), present

    def _mask(self, mask: Tensor | None, b: int, t: int, s: int, device) -> Tensor | None:
        if mask is None:
            return None
        if mask.dtype != torch.bool or mask.dim() not in (2, 3, 4):
            raise ValueError(
                "attention_mask must be boolean (True = may attend) with shape (q, k), "
                f"(batch, q, k) or (batch, heads, q, k); got {tuple(mask.shape)} {mask.dtype}"
            )
        mask = mask[None, None] if mask.dim() == 2 else mask
        mask = mask[:, None] if mask.dim() == 3 else mask
        want = (b, self.num_heads, t, s)
        if any(m not in (1, w) for m, w in zip(mask.shape, want)):
            raise ValueError(
                f"attention_mask {tuple(mask.shape)} does not broadcast to (batch, heads, q, k) = {want}"
            )
        return mask.to(device)

    def _scale(self, mask: Tensor | None, causal: bool, t: int, s: int, device) -> float | Tensor:
        if self.scale == "sqrt":
            return 1.0 / math.sqrt(self.key_size)
        if self.scale != "entropy":
            return float(self.scale)
        if mask is not None:
            n = mask.sum(dim=-1, keepdim=True)  # visible keys per query, (b|1, h|1, t|1, 1)
        elif causal:
            n = torch.arange(s - t + 1, s + 1, device=device)[:, None]  # (t, 1)
        else:
            n = torch.tensor(s, device=device)
        return entropy_scale(n, self.key_size)

    def _sdpa(self, q, k, v, mask, is_causal, scale, attn_bias) -> Tensor:
        if isinstance(scale, Tensor):  # per-query scale: fold it into q
            q, scale = q * scale.to(q.dtype), 1.0
        if attn_bias is not None:
            bias = attn_bias.to(q.dtype)
            if is_causal:
                mask, is_causal = causal_mask(q.shape[2], k.shape[2], device=q.device), False
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        p = self.dropout if self.training else 0.0
        # The fused kernels need one head dim for q, k and v; otherwise PyTorch falls back
        # to the math kernel (4x slower at 2048 tokens). Zero padding is exact: padded
        # q/k columns add 0 to every dot product, padded v columns are dropped after.
        dk, dv = q.shape[-1], v.shape[-1]
        if dk < dv:
            q, k = F.pad(q, (0, dv - dk)), F.pad(k, (0, dv - dk))
        y = F.scaled_dot_product_attention(
            q, k, v if dk <= dv else F.pad(v, (0, dk - dv)),
            attn_mask=mask, dropout_p=p, is_causal=is_causal, scale=scale,
        )
        return y[..., :dv]

    def _explicit(self, q, k, v, mask, scale, attn_bias, rotary=None, is_causal=False) -> Tensor:
        scale = scale.to(q.dtype) if isinstance(scale, Tensor) else scale
        qk = q @ k.transpose(-1, -2) if rotary is None else rotary.logits(q, k, causal=is_causal)
        logits = qk * scale  # (b, h, t, s)
        if attn_bias is not None:
            logits = logits + attn_bias
        if self.talking_heads:
            logits = torch.einsum("bhts,gh->bgts", logits, self.pre_mix.to(logits.dtype))
        if mask is not None:
            # a query that may see nothing gets zero weights (as SDPA does), not NaN
            any_visible = mask.any(dim=-1, keepdim=True)
            logits = logits.masked_fill(~(mask | ~any_visible), float("-inf"))
        probs = logits.softmax(dim=-1)
        if mask is not None:
            probs = probs * any_visible
        if self.talking_heads:
            probs = torch.einsum("bhts,gh->bgts", probs, self.post_mix.to(probs.dtype))
        probs = F.dropout(probs, self.dropout, self.training)
        return probs @ v  # (b, h, t, hs)
