"""Training-free length extrapolation for RoPE models: one ``RoPE`` module, many variants.

Posts: Transformer升级之路：16、"复盘"长度外推技术 (2024-01-26,
https://kexue.fm/archives/9948) and Transformer升级之路：12、无限外推的ReRoPE？
(2023-08-07, https://kexue.fm/archives/9708). A model trained with plain RoPE at length
``L_train`` is evaluated at ``L_test > L_train`` with its position encoding changed at
inference time only. With ``θ_i = base^(-2i/d)`` (``i = 0 .. d/2-1``), ``s = L_test /
L_train`` (``>= 1``) and ``r_i = L_train θ_i / 2π`` (turns of pair ``i`` during training):

- ``"plain"``: ``θ_i`` unchanged.
- ``"pi"`` (position interpolation): ``θ_i / s``, i.e. positions squeezed into ``L_train``.
- ``"ntk"`` (NTK-aware scaling): base ``→ base·κ`` with ``κ = s^(d/(d-2))``, which leaves
  ``θ_0`` alone and makes the lowest frequency ``θ_{d/2-1}`` exactly PI's.
- ``"yarn"``: ``θ_i → (γ_i + (1-γ_i)/s) θ_i`` with the ramp ``γ_i = clip((r_i - α)/(β - α),
  0, 1)`` (``α = 1``, ``β = 32``: pairs turning more than β times keep their frequency,
  fewer than once are interpolated), and logits times ``λ = (1 + 0.1 ln s)²`` (the
  cos/sin are multiplied by ``1 + 0.1 ln s``).
- ``"rerope"``: relative position ``r = i - j`` used as ``min(r, w)``; ``"leaky-rerope"``:
  ``r`` if ``r < w`` else ``w + (r - w)/k``. Needs two attention logit matrices,
  ``a¹_ij = (R^i q_i)ᵀ(R^j k_j)`` and ``a²_ij = (R^{w + (i-w)/k} q_i)ᵀ(R^{j/k} k_j)``
  (``k → ∞``: ``(R^w q_i)ᵀ k_j``), and takes ``a¹`` where ``i - j < w``, ``a²`` elsewhere.
  This is the explicit (non-SDPA) path and it cannot use a KV cache of rotated keys.
- ``log_n=True`` (any variant): logits of the query at position ``i`` times
  ``max(1, log(i+1) / log L_train)`` — the entropy-invariance scale of
  https://kexue.fm/archives/8823 that leaves in-length positions untouched.

``scale=None`` picks ``s = max(1, seq_len / train_length)`` from each call (the
"dynamic" reading: each evaluation length gets its own factor); a float fixes it.
:func:`window_mask` gives sliding-window (local) attention, optionally with a few
"sink" tokens kept visible (Λ-shaped mask, LM-Infinite / StreamingLLM).

:class:`RoPE` returns an object that :class:`~kexue.nn.MultiHeadAttention` takes as its
``rotary=`` argument: a plain :class:`~kexue.nn.RotaryAngles` when nothing else is
needed (SDPA fast path), otherwise one with ``rotate_query`` (log n) or ``logits``
(ReRoPE's two passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kexue.nn.attention import RotaryAngles
from kexue.nn.position import RotaryEmbedding, _as_position_ids, apply_rotary

VARIANTS = ("plain", "pi", "ntk", "yarn", "rerope", "leaky-rerope")


def ntk_kappa(scale: float, dim: int) -> float:
    """NTK-aware base factor ``κ = s^(d/(d-2))``: with base ``base·κ`` the lowest frequency
    ``(base·κ)^(-(d-2)/d)`` equals position interpolation's ``base^(-(d-2)/d) / s``."""
    _check_scale(scale)
    if dim <= 2 or dim % 2:
        raise ValueError(f"NTK scaling needs an even dim > 2, got {dim}")
    return scale ** (dim / (dim - 2))


def yarn_ramp(inv_freq: Tensor, train_length: int, alpha: float = 1.0, beta: float = 32.0) -> Tensor:
    """YaRN's ``γ_i = clip((r_i - α)/(β - α), 0, 1)`` with ``r_i = L_train θ_i / 2π``:
    1 keeps the frequency (fast pairs), 0 interpolates it fully (slow pairs)."""
    if not 0 <= alpha < beta:
        raise ValueError(f"YaRN needs 0 <= alpha < beta, got alpha={alpha}, beta={beta}")
    turns = train_length * inv_freq / (2 * math.pi)
    return ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)


def yarn_attention_factor(scale: float) -> float:
    """``√λ = 1 + 0.1 ln s``: YaRN multiplies cos and sin by it, hence logits by ``λ``."""
    _check_scale(scale)
    return 1.0 + 0.1 * math.log(scale)


def log_n_scale(n: Tensor, train_length: int) -> Tensor:
    """``max(1, log n / log L_train)`` for ``n`` visible keys (``n = i + 1`` causally)."""
    if train_length < 2:
        raise ValueError(f"train_length must be >= 2 for log-n scaling, got {train_length}")
    return (n.double().clamp(min=1).log() / math.log(train_length)).clamp(min=1.0)


def rerope_positions(relative: Tensor, window: int, leak: float | None = None) -> Tensor:
    """The relative position Leaky ReRoPE uses: ``r`` if ``r < w`` else ``w + (r - w)/k``
    (``leak=None``: ReRoPE, ``min(r, w)``)."""
    _check_window(window)
    far = torch.full_like(relative, float(window), dtype=torch.float64) if leak is None else (
        window + (relative.double() - window) / leak
    )
    return torch.where(relative < window, relative.double(), far)


def window_mask(seq_len: int, window: int, *, sink: int = 0, device=None) -> Tensor:
    """Causal sliding-window mask ``(seq, seq)``: query ``i`` sees key ``j`` iff
    ``0 <= i - j < window`` or ``j < sink`` (the first ``sink`` tokens stay visible)."""
    _check_window(window)
    if seq_len <= 0 or sink < 0:
        raise ValueError(f"window_mask needs seq_len > 0 and sink >= 0, got {seq_len}, {sink}")
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & ((i - j < window) | (j < sink))


def _check_scale(scale: float) -> None:
    if not scale >= 1.0:
        raise ValueError(f"the length scaling factor s = L_test / L_train must be >= 1, got {scale}")


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")


def _cos_sin(positions: Tensor, inv_freq: Tensor, interleaved: bool, dtype) -> tuple[Tensor, Tensor]:
    """cos/sin ``(batch, 1, seq, dim)`` for real-valued ``positions`` ``(batch, seq)``."""
    angle = positions.double()[..., None] * inv_freq  # (batch, seq, dim/2)
    angle = angle.repeat_interleave(2, dim=-1) if interleaved else torch.cat([angle, angle], -1)
    return angle.cos()[:, None].to(dtype), angle.sin()[:, None].to(dtype)


@dataclass
class ScaledRotaryAngles:
    """RoPE angles plus a per-query logit factor (log n): ``rotate_query`` scales q."""

    cos: Tensor  # (batch, 1, seq, dim)
    sin: Tensor
    query_scale: Tensor  # (batch, 1, seq, 1)
    interleaved: bool = True

    def rotate(self, x: Tensor) -> Tensor:  # (batch, heads, seq, dim)
        return apply_rotary(x, self.cos, self.sin, self.interleaved)

    def rotate_query(self, x: Tensor) -> Tensor:
        return self.rotate(x) * self.query_scale.to(x.dtype)


@dataclass
class ReRotaryAngles:
    """Positions for (Leaky) ReRoPE: ``logits(q, k)`` builds the two logit matrices from
    *unrotated* q, k ``(batch, heads, seq, dim)`` and merges them at the window."""

    positions: Tensor  # (batch, seq), integer positions of queries and keys
    inv_freq: Tensor  # (dim/2,) float64
    window: int
    leak: float | None = None  # None: ReRoPE (k = ∞)
    query_scale: Tensor | None = None  # (batch, 1, seq, 1), log n
    interleaved: bool = True

    def logits(self, q: Tensor, k: Tensor) -> Tensor:
        if q.shape[-2] != k.shape[-2] or q.shape[-2] != self.positions.shape[-1]:
            raise ValueError(
                f"ReRoPE needs queries and keys at the same {self.positions.shape[-1]} positions "
                f"(no KV cache), got q {tuple(q.shape)} and k {tuple(k.shape)}"
            )
        pos, w, dt = self.positions, self.window, q.dtype
        cos, sin = _cos_sin(pos, self.inv_freq, self.interleaved, dt)
        a1 = apply_rotary(q, cos, sin, self.interleaved) @ apply_rotary(
            k, cos, sin, self.interleaved).transpose(-1, -2)  # (b, h, t, t): plain RoPE
        if self.leak is None:  # q at position w, k at position 0
            qpos, kpos = torch.full_like(pos, w, dtype=torch.float64), torch.zeros_like(pos, dtype=torch.float64)
        else:  # q at w + (i - w)/k, k at j/k: relative w + (i - j - w)/k
            qpos, kpos = w + (pos.double() - w) / self.leak, pos.double() / self.leak
        qc, qs = _cos_sin(qpos, self.inv_freq, self.interleaved, dt)
        kc, ks = _cos_sin(kpos, self.inv_freq, self.interleaved, dt)
        a2 = apply_rotary(q, qc, qs, self.interleaved) @ apply_rotary(
            k, kc, ks, self.interleaved).transpose(-1, -2)
        near = (pos[:, :, None] - pos[:, None, :]) < w  # (b, t, t)
        logits = torch.where(near[:, None], a1, a2)
        if self.query_scale is not None:
            logits = logits * self.query_scale.to(dt)
        return logits


class RoPE(nn.Module):
    """Rotary positions with an inference-time extrapolation ``variant`` (see the module doc).

    Args:
        dim: rotated features per head (the attention's ``key_size``), even.
        base: RoPE base (10000).
        variant: one of ``"plain"``, ``"pi"``, ``"ntk"``, ``"yarn"``, ``"rerope"``,
            ``"leaky-rerope"``.
        train_length: the training length ``L_train``; needed by pi/ntk/yarn with
            ``scale=None``, by yarn's ramp and by ``log_n``.
        scale: fixed ``s = L_test / L_train >= 1``; ``None`` derives it per call as
            ``max(1, seq_len / train_length)``.
        window: ReRoPE's ``w`` (required for the two ReRoPE variants).
        leak: Leaky ReRoPE's ``k > 1`` (slope ``1/k`` beyond the window).
        log_n: multiply logits by ``max(1, log(i+1) / log train_length)``.
        alpha, beta: YaRN's ramp boundaries in turns (1 and 32).
        interleaved: pair convention as in :class:`~kexue.nn.RotaryEmbedding`.

    ``forward(position_ids)`` returns the ``rotary=`` argument of
    :class:`~kexue.nn.MultiHeadAttention` / :class:`~kexue.nn.Transformer`.
    """

    def __init__(
        self,
        dim: int,
        base: float = 10000.0,
        variant: str = "plain",
        *,
        train_length: int | None = None,
        scale: float | None = None,
        window: int | None = None,
        leak: float | None = None,
        log_n: bool = False,
        alpha: float = 1.0,
        beta: float = 32.0,
        interleaved: bool = True,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if train_length is not None and (isinstance(train_length, bool) or train_length < 2):
            raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
        if scale is not None:
            _check_scale(scale)
        needs_length = (variant in ("pi", "ntk", "yarn") and scale is None) or variant == "yarn" or log_n
        if needs_length and train_length is None:
            raise ValueError(f"variant {variant!r} (log_n={log_n}, scale={scale}) needs train_length")
        if variant in ("rerope", "leaky-rerope"):
            if window is None:
                raise ValueError(f"variant {variant!r} needs a window w, got None")
            _check_window(window)
        if variant == "leaky-rerope" and (leak is None or not leak > 1):
            raise ValueError(f"leaky-rerope needs leak k > 1, got {leak!r}")
        if variant == "ntk" and dim <= 2:
            raise ValueError(f"NTK scaling needs dim > 2, got {dim}")
        if variant == "yarn" and not 0 <= alpha < beta:
            raise ValueError(f"YaRN needs 0 <= alpha < beta, got alpha={alpha}, beta={beta}")
        self.variant, self.train_length, self.scale = variant, train_length, scale
        self.window, self.leak, self.log_n = window, leak, log_n
        self.alpha, self.beta, self.interleaved = alpha, beta, interleaved
        self.rotary = RotaryEmbedding(dim, base, interleaved=interleaved, scaling=self._scaling)

    @property
    def dim(self) -> int:
        return self.rotary.dim

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, base={self.rotary.base}, variant={self.variant!r}, "
                f"train_length={self.train_length}, scale={self.scale}, window={self.window}, "
                f"leak={self.leak}, log_n={self.log_n}")

    def factor(self, seq_len: int) -> float:
        """``s`` for a call whose largest position is ``seq_len - 1``."""
        if self.scale is not None:
            return float(self.scale)
        return max(1.0, seq_len / self.train_length)

    def frequencies(self, seq_len: int) -> tuple[Tensor, float]:
        """The variant's ``θ_i`` ``(dim/2,)`` (float64) and cos/sin factor at ``seq_len``."""
        return self._scaling(self.rotary.inv_freq, seq_len)

    def _scaling(self, inv_freq: Tensor, seq_len: int) -> tuple[Tensor, float]:
        if self.variant not in ("pi", "ntk", "yarn"):
            return inv_freq, 1.0
        s = self.factor(seq_len)
        if self.variant == "pi":
            return inv_freq / s, 1.0
        if self.variant == "ntk":
            return inv_freq * ntk_kappa(s, self.dim) ** (-torch.arange(
                0, self.dim, 2, dtype=torch.float64, device=inv_freq.device) / self.dim), 1.0
        gamma = yarn_ramp(inv_freq, self.train_length, self.alpha, self.beta)
        return (gamma + (1 - gamma) / s) * inv_freq, yarn_attention_factor(s)

    def forward(self, position_ids: Tensor, dtype: torch.dtype = torch.float32):
        """``position_ids`` ``(batch, seq)`` or ``(seq,)`` -> the attention's ``rotary=``."""
        pos = _as_position_ids(position_ids)  # (batch, seq)
        query_scale = None
        if self.log_n:
            query_scale = log_n_scale(pos + 1, self.train_length)[:, None, :, None].to(dtype)
        if self.variant in ("rerope", "leaky-rerope"):
            return ReRotaryAngles(pos, self.rotary.inv_freq.to(pos.device), self.window,
                                  self.leak if self.variant == "leaky-rerope" else None,
                                  query_scale, self.interleaved)
        cos, sin = self.rotary(pos, dtype)
        if query_scale is None:
            return RotaryAngles(cos, sin, self.interleaved)
        return ScaledRotaryAngles(cos, sin, query_scale, self.interleaved)
