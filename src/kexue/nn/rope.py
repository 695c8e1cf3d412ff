"""Rotary position embedding (RoPE) and its length-extrapolation variants: one module.

RoPE — Transformer升级之路：2、博采众长的旋转式位置编码 (2021-03-23,
https://kexue.fm/archives/8265). Feature pair ``i`` (``i = 0 .. d/2-1``) of a query or
key at position ``m`` is rotated by the angle ``m θ_i``, ``θ_i = base^(-2i/d)``. In
complex form, with ``z_i = x_{2i} + j·x_{2i+1}``::

    RoPE(x, m)_i = z_i · e^{j m θ_i},    <RoPE(q, m), RoPE(k, n)> = Re Σ_i z_q,i conj(z_k,i) e^{j (m-n) θ_i}

so the logit depends on the relative position ``m - n`` only. ``interleaved=True``
pairs ``(x_{2i}, x_{2i+1})`` (RoFormer, the post); ``False`` pairs ``(x_i, x_{i+d/2})``
(GPT-NeoX / LLaMA / Hugging Face "rotate half").

Inference-time variants — Transformer升级之路：16、"复盘"长度外推技术 (2024-01-26,
https://kexue.fm/archives/9948) and 12、无限外推的ReRoPE？ (2023-08-07,
https://kexue.fm/archives/9708). A model trained with plain RoPE at ``L_train`` is run
at ``L_test``; ``s = L_test / L_train >= 1`` and ``r_i = L_train θ_i / 2π`` is the
number of turns pair ``i`` makes during training:

- ``"plain"``: ``θ_i``.
- ``"pi"`` (position interpolation): ``θ_i / s``.
- ``"ntk"`` (NTK-aware, RoPE-ABF): base ``→ base·κ``, ``κ = s^(d/(d-2))``: ``θ_0`` is kept
  and the lowest frequency ``θ_{d/2-1}`` becomes exactly PI's.
- ``"yarn"``: ``θ_i → (γ_i + (1 - γ_i)/s) θ_i`` and logits times ``λ = (1 + 0.1 ln s)²``
  (cos and sin are multiplied by ``√λ``). The post's ramp is linear in turns,
  ``γ_i = clip((r_i - α)/(β - α), 0, 1)`` with ``α = 1``, ``β = 32`` (``ramp="turns"``,
  the default). YaRN's reference code and transformers' ``rope_type="yarn"`` ramp
  linearly in the dimension index ``i`` between the (rounded) indices where
  ``r_i = β`` and ``r_i = α`` (``ramp="index"``); the two agree at the ends and differ
  in between (by up to 0.53 in ``θ_i`` at ``L_train = 64``, ``s = 4``, ``d = 16``).
- ``"rerope"``: relative position ``r = i - j`` used as ``min(r, w)``; ``"leaky-rerope"``:
  ``r`` if ``r < w`` else ``w + (r - w)/k``. Two logit matrices,
  ``a¹_ij = (R^i q_i)ᵀ(R^j k_j)`` and ``a²_ij = (R^{w + (i-w)/k} q_i)ᵀ(R^{j/k} k_j)``
  (ReRoPE, ``k → ∞``: ``(R^w q_i)ᵀ k_j``), ``a¹`` where ``i - j < w`` and ``a²``
  elsewhere. Bidirectional attention also gets the mirror image for future keys
  (``j - i >= w``: relative ``w + (j - i - w)/k``); causal attention never computes it.
  Explicit (non-SDPA) attention only, and no KV cache of rotated keys.
- ``log_n=True`` (any variant): the logits of the query at position ``i`` times
  ``λ_i = max(1, log(i+1) / log L_train)`` (post 9948's eq. clip-logn, the
  entropy-invariance scale of https://kexue.fm/archives/8823; 1 within the training
  length).

``scale=None`` derives ``s = max(1, seq_len / L_train)`` from each call (the dynamic
reading: every evaluation length gets its own factor); a float fixes it.

Protocol: ``RoPE(position_ids)`` returns a :class:`Rotary`, built once per forward pass
and handed to every attention layer. Attention calls ``rotary.apply(q, k)`` (rotated
and scaled q, k: SDPA and a KV cache work) unless ``rotary.two_pass``, in which case
it calls ``rotary.logits(q, k, causal=...)`` on its explicit path.
:func:`apply_rope` switches the RoPE of a kexue model or of a Hugging Face Llama-style
model to a variant in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kexue.nn.position import check_position_ids

VARIANTS = ("plain", "pi", "ntk", "yarn", "rerope", "leaky-rerope")
SCALED = ("pi", "ntk", "yarn")  # variants that change the frequencies with s
TWO_PASS = ("rerope", "leaky-rerope")
RAMPS = ("turns", "index")
# keyword options of RoPE beyond dim and base (model configs' ``rope_options``)
ROPE_OPTIONS = ("variant", "train_length", "scale", "window", "leak", "log_n", "alpha", "beta",
                "ramp", "interleaved")
LOG_N_ATTENTION = "kexue_log_n_"  # + train_length: the registered Hugging Face attention


# --------------------------------------------------------------------------- formulas


def ntk_kappa(scale: float, dim: int) -> float:
    """NTK-aware base factor ``κ = s^(d/(d-2))``: with base ``base·κ`` the lowest frequency
    ``(base·κ)^(-(d-2)/d)`` equals position interpolation's ``base^(-(d-2)/d) / s``."""
    _check_scale(scale)
    if dim <= 2 or dim % 2:
        raise ValueError(f"NTK scaling needs an even dim > 2, got {dim}")
    return scale ** (dim / (dim - 2))


def yarn_ramp(inv_freq: Tensor, train_length: int, alpha: float = 1.0, beta: float = 32.0) -> Tensor:
    """YaRN's ``γ_i`` as in post 9948: ``clip((r_i - α)/(β - α), 0, 1)``, linear in the turns
    ``r_i = L_train θ_i / 2π``. 1 keeps the frequency (fast pairs), 0 interpolates it fully."""
    _check_ramp_bounds(alpha, beta)
    turns = train_length * inv_freq / (2 * math.pi)
    return ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)


def yarn_ramp_by_index(dim: int, base: float, train_length: int, alpha: float = 1.0,
                       beta: float = 32.0) -> Tensor:
    """YaRN's ``γ_i`` as its reference code and transformers' ``rope_type="yarn"`` compute
    it: linear in the pair index ``i`` from ``floor(i_β)`` (``γ = 1``) to ``ceil(i_α)``
    (``γ = 0``), where ``i_n = d·ln(L_train / 2πn) / (2 ln base)`` is the (fractional)
    index at which pair ``i`` makes ``n`` turns, clipped to ``[0, d-1]``. ``(dim/2,)``
    float64."""
    _check_ramp_bounds(alpha, beta)

    def index(turns: float) -> float:  # where L_train θ_i / 2π = turns
        return dim * math.log(train_length / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(math.floor(index(beta)), 0), min(math.ceil(index(alpha)), dim - 1)
    high = high + 0.001 if low == high else high  # as transformers: no division by zero
    i = torch.arange(dim // 2, dtype=torch.float64)
    return 1 - ((i - low) / (high - low)).clamp(0.0, 1.0)


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
    """The relative position (Leaky) ReRoPE uses for ``r = i - j >= 0``: ``r`` if ``r < w``
    else ``w + (r - w)/k`` (``leak=None``: ReRoPE, ``min(r, w)``)."""
    _check_window(window)
    far = torch.full_like(relative, float(window), dtype=torch.float64) if leak is None else (
        window + (relative.double() - window) / leak
    )
    return torch.where(relative < window, relative.double(), far)


def _check_scale(scale: float) -> None:
    if not scale >= 1.0:
        raise ValueError(f"the length scaling factor s = L_test / L_train must be >= 1, got {scale}")


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")


def _check_ramp_bounds(alpha: float, beta: float) -> None:
    if not 0 < alpha < beta:
        raise ValueError(f"YaRN needs 0 < alpha < beta, got alpha={alpha}, beta={beta}")


def _cos_sin(positions: Tensor, inv_freq: Tensor, interleaved: bool, dtype: torch.dtype,
             factor: float = 1.0) -> tuple[Tensor, Tensor]:
    """``factor·cos, factor·sin`` ``(batch, 1, seq, dim)`` of the angles ``positions ⊗ θ``
    (``positions`` ``(batch, seq)``, any real values; computed in float64)."""
    angle = positions.double()[..., None] * inv_freq  # (batch, seq, dim/2)
    angle = angle.repeat_interleave(2, dim=-1) if interleaved else torch.cat([angle, angle], -1)
    cos, sin = angle.cos() * factor, angle.sin() * factor
    return cos[:, None].to(dtype), sin[:, None].to(dtype)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """``x·cos + turn(x)·sin`` with ``turn`` the 90° turn of each pair, ``(a, b) -> (-b, a)``;
    ``x`` ``(batch, heads, seq, dim)``, ``cos, sin`` ``(batch|1, 1, seq, dim)``."""
    if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(
            f"RoPE: x (..., seq, dim) = {tuple(x.shape)} does not match the angles "
            f"(..., seq, dim) = {tuple(cos.shape)}"
        )
    if interleaved:
        pairs = x.unflatten(-1, (-1, 2))  # (..., dim/2, 2)
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    else:
        a, b = x.chunk(2, dim=-1)
        turned = torch.cat([-b, a], dim=-1)
    return x * cos + turned * sin


# --------------------------------------------------------------------------- protocol


@dataclass(frozen=True, eq=False)
class Rotary:
    """RoPE for one forward pass, what :class:`~kexue.nn.MultiHeadAttention` calls.

    ``apply(q, k)`` returns rotated ``q, k`` ``(batch, heads, seq, dim)`` (queries also
    scaled by log n) for one-pass variants; for ``two_pass`` (ReRoPE) variants,
    ``logits(q, k)`` builds ``q·k`` logits ``(batch, heads, seq, seq)`` from unrotated
    q, k. ``logits`` works for every variant (one-pass: ``apply`` then ``q kᵀ``).

    Fields: ``cos, sin`` ``(batch, 1, seq, dim)`` (times YaRN's ``√λ``), ``query_scale``
    ``(batch, 1, seq, 1)`` (log n) or None, and for ReRoPE the angles of the far
    pass for past keys and for future keys (``(q_cos, q_sin, k_cos, k_sin)`` each),
    ``relative`` ``(batch, 1, seq, seq)`` integer ``i - j`` and the ``window``.
    """

    cos: Tensor
    sin: Tensor
    interleaved: bool = True
    query_scale: Tensor | None = None
    past: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    future: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    relative: Tensor | None = None
    window: int | None = None

    @property
    def two_pass(self) -> bool:
        return self.past is not None

    def rotate(self, x: Tensor) -> Tensor:  # (batch, heads, seq, dim)
        return _rotate(x, self.cos, self.sin, self.interleaved)

    def apply(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        if self.two_pass:
            raise ValueError("ReRoPE positions build the logits themselves: call logits(q, k)")
        q = self.rotate(q)
        if self.query_scale is not None:
            q = q * self.query_scale.to(q.dtype)
        return q, self.rotate(k)

    def logits(self, q: Tensor, k: Tensor, *, causal: bool = False) -> Tensor:
        """``(batch, heads, seq, seq)`` logits (before the attention's ``1/√d``);
        ``causal=True`` skips the future-key pass that causal attention masks anyway."""
        if not self.two_pass:
            q, k = self.apply(q, k)
            return q @ k.transpose(-1, -2)
        if q.shape[-2] != k.shape[-2] or q.shape[-2] != self.relative.shape[-1]:
            raise ValueError(
                f"ReRoPE needs queries and keys at the same {self.relative.shape[-1]} positions "
                f"(no KV cache), got q {tuple(q.shape)} and k {tuple(k.shape)}"
            )
        logits = self._pass(q, k, self.cos, self.sin, self.cos, self.sin)  # plain RoPE
        logits = torch.where(self.relative >= self.window, self._pass(q, k, *self.past), logits)
        if not causal:
            logits = torch.where(-self.relative >= self.window, self._pass(q, k, *self.future), logits)
        if self.query_scale is not None:
            logits = logits * self.query_scale.to(q.dtype)
        return logits

    def _pass(self, q: Tensor, k: Tensor, qc: Tensor, qs: Tensor, kc: Tensor, ks: Tensor) -> Tensor:
        return _rotate(q, qc, qs, self.interleaved) @ _rotate(k, kc, ks, self.interleaved).transpose(-1, -2)


# --------------------------------------------------------------------------- module


class RoPE(nn.Module):
    """Rotary positions with an inference-time extrapolation ``variant`` (see the module doc).

    Args:
        dim: rotated features per head (the attention's ``key_size``), even.
        base: RoPE base (10000).
        variant: ``"plain"``, ``"pi"``, ``"ntk"``, ``"yarn"``, ``"rerope"`` or ``"leaky-rerope"``.
        train_length: the training length ``L_train``; needed by pi/ntk/yarn with
            ``scale=None``, by yarn's ramp and by ``log_n``.
        scale: fixed ``s = L_test / L_train >= 1`` (pi/ntk/yarn); ``None`` derives it per
            call as ``max(1, seq_len / train_length)``.
        window: ReRoPE's ``w`` (required by the two ReRoPE variants).
        leak: Leaky ReRoPE's ``k > 1`` (slope ``1/k`` beyond the window).
        log_n: multiply the logits of query ``i`` by ``max(1, log(i+1) / log train_length)``.
        alpha, beta: YaRN's ramp ends in turns (1 and 32).
        ramp: YaRN's ramp, ``"turns"`` (post 9948, the paper's formula) or ``"index"``
            (YaRN's code and transformers).
        interleaved: pairs ``(x_{2i}, x_{2i+1})``; ``False``: ``(x_i, x_{i+d/2})``.

    ``forward(position_ids (batch, seq) or (seq,), dtype)`` returns the :class:`Rotary`
    that attention layers take as ``rotary=``.
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
        ramp: str = "turns",
        interleaved: bool = True,
    ):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 2:
            raise ValueError(f"RoPE dim must be a positive even number, got {dim}")
        if not base > 1.0:
            raise ValueError(f"RoPE base must be > 1, got {base}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if train_length is not None and (isinstance(train_length, bool) or train_length < 2):
            raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
        if scale is not None:
            if variant not in SCALED:
                raise ValueError(f"scale is used by the variants {SCALED}, not by {variant!r}")
            _check_scale(scale)
        needs_length = (variant in SCALED and scale is None) or variant == "yarn" or log_n
        if needs_length and train_length is None:
            raise ValueError(f"variant {variant!r} (log_n={log_n}, scale={scale}) needs train_length")
        if variant in TWO_PASS:
            if window is None:
                raise ValueError(f"variant {variant!r} needs a window w, got None")
            _check_window(window)
        if variant == "leaky-rerope" and (leak is None or not leak > 1):
            raise ValueError(f"leaky-rerope needs leak k > 1, got {leak!r}")
        if variant == "ntk" and dim <= 2:
            raise ValueError(f"NTK scaling needs dim > 2, got {dim}")
        if variant == "yarn":
            _check_ramp_bounds(alpha, beta)
            if ramp not in RAMPS:
                raise ValueError(f"ramp must be one of {RAMPS}, got {ramp!r}")
        self.dim, self.base, self.variant = dim, float(base), variant
        self.train_length, self.scale, self.window, self.leak = train_length, scale, window, leak
        self.log_n, self.alpha, self.beta, self.ramp = log_n, alpha, beta, ramp
        self.interleaved = interleaved

    @property
    def inv_freq(self) -> Tensor:
        """``θ_i = base^(-2i/d)`` ``(dim/2,)`` in float64 (computed, not a buffer, so that
        casting the model to half precision leaves the angles exact)."""
        return self.base ** (-torch.arange(0, self.dim, 2, dtype=torch.float64) / self.dim)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, base={self.base}, variant={self.variant!r}, "
                f"train_length={self.train_length}, scale={self.scale}, window={self.window}, "
                f"leak={self.leak}, log_n={self.log_n}, interleaved={self.interleaved}")

    def factor(self, seq_len: int) -> float:
        """``s`` for a call whose largest position is ``seq_len - 1``."""
        if self.scale is not None:
            return float(self.scale)
        return max(1.0, seq_len / self.train_length)

    def frequencies(self, seq_len: int) -> tuple[Tensor, float]:
        """The variant's ``θ_i`` ``(dim/2,)`` (float64) and cos/sin factor ``√λ`` at ``seq_len``
        (ReRoPE rotates with the plain ``θ_i``)."""
        theta = self.inv_freq
        if self.variant not in SCALED:
            return theta, 1.0
        s = self.factor(seq_len)
        if self.variant == "pi":
            return theta / s, 1.0
        if self.variant == "ntk":
            i2 = torch.arange(0, self.dim, 2, dtype=torch.float64)
            return theta * ntk_kappa(s, self.dim) ** (-i2 / self.dim), 1.0
        if self.ramp == "turns":
            gamma = yarn_ramp(theta, self.train_length, self.alpha, self.beta)
        else:
            gamma = yarn_ramp_by_index(self.dim, self.base, self.train_length, self.alpha, self.beta)
        return (gamma + (1 - gamma) / s) * theta, yarn_attention_factor(s)

    def forward(self, position_ids: Tensor, dtype: torch.dtype = torch.float32) -> Rotary:
        """``position_ids`` ``(batch, seq)`` or ``(seq,)`` -> the attention's ``rotary=``."""
        pos = check_position_ids(position_ids)  # (batch, seq)
        query_scale = None
        if self.log_n:
            query_scale = log_n_scale(pos + 1, self.train_length)[:, None, :, None].to(dtype)
        seq_len = int(pos.max()) + 1 if pos.numel() else 0
        theta, factor = self.frequencies(seq_len)
        cos, sin = _cos_sin(pos, theta.to(pos.device), self.interleaved, dtype, factor)
        if self.variant not in TWO_PASS:
            return Rotary(cos, sin, self.interleaved, query_scale)
        return Rotary(cos, sin, self.interleaved, query_scale, *self._far_angles(pos, dtype),
                      window=self.window)

    def _far_angles(self, pos: Tensor, dtype: torch.dtype):
        """ReRoPE's second pass: past keys (``i - j >= w``) at relative ``w + (i-j-w)/k``
        (q at ``w + (i-w)/k``, k at ``j/k``), future keys (``j - i >= w``) mirrored
        (q at ``i/k``, k at ``w + (j-w)/k``); ``k = ∞`` for ReRoPE."""
        w, theta = self.window, self.inv_freq.to(pos.device)
        p = pos.double()
        if self.variant == "rerope":
            shifted, scaled = torch.full_like(p, float(w)), torch.zeros_like(p)
        else:
            shifted, scaled = w + (p - w) / self.leak, p / self.leak
        a, b = _cos_sin(shifted, theta, self.interleaved, dtype), _cos_sin(scaled, theta, self.interleaved, dtype)
        relative = (pos[:, :, None] - pos[:, None, :])[:, None]  # (batch, 1, seq, seq)
        return (*a, *b), (*b, *a), relative


# --------------------------------------------------------------------------- models


def apply_rope(model: nn.Module, variant: str = "plain", **options: Any) -> nn.Module:
    """Switch the rotary positions of ``model`` to ``variant`` in place (no retraining).

    ``options`` are :class:`RoPE`'s (``train_length``, ``scale``, ``window``, ``leak``,
    ``log_n``, ``alpha``, ``beta``, ``ramp``); ``dim``, ``base`` and the layout come from
    the model. Works on kexue models (every :class:`RoPE` submodule is replaced; every
    variant) and on Hugging Face Llama-style models (every rotary module with an
    ``inv_freq`` buffer, e.g. ``LlamaRotaryEmbedding``, is replaced by
    :class:`HFRotaryEmbedding`, half-split layout, base from the config). Hugging Face
    attention takes one set of cos/sin for q and k, so the two ReRoPE variants need
    kexue's attention and raise here; ``log_n`` on a Hugging Face model routes its
    attention through ``sdpa`` with the queries scaled (a registered
    ``AttentionInterface`` function, see :func:`log_n_attention`).

    Against transformers' ``rope_type`` values: ``"pi"`` with ``scale=f`` is
    ``"linear"`` with ``factor=f``; ``"ntk"`` with ``scale=None`` is ``"dynamic"`` with
    ``factor=1`` (``s = seq_len / max_position_embeddings``); ``"yarn"`` with
    ``scale=f``, ``ramp="index"`` is ``"yarn"`` with ``factor=f`` (default
    ``beta_fast=32``, ``beta_slow=1``, ``truncate``); the default ``ramp="turns"`` is
    post 9948's formula, which transformers does not offer. Returns ``model``.

    Example: ``apply_rope(llama, "yarn", train_length=4096, scale=4.0, ramp="index")``.
    """
    allowed = tuple(o for o in ROPE_OPTIONS if o not in ("variant", "interleaved"))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown apply_rope options {unknown}; expected some of {allowed}")
    log_n, train_length = options.pop("log_n", False), options.get("train_length")
    if log_n and train_length is None:
        raise ValueError("log_n needs train_length")
    targets = list(_rotary_modules(model))
    if not targets:
        raise ValueError(f"{type(model).__name__} has no RoPE module (a kexue RoPE, or a Hugging Face "
                         "rotary embedding with an inv_freq buffer) to switch")
    hf = False
    for parent, name, child in targets:
        if isinstance(child, RoPE):
            new = RoPE(child.dim, child.base, variant, log_n=log_n, interleaved=child.interleaved,
                       **options)
        else:
            if variant in TWO_PASS:
                raise ValueError(
                    f"variant {variant!r} needs two logit passes, which only kexue's attention "
                    "computes; a Hugging Face model takes the one-pass variants (plain, pi, ntk, yarn)"
                )
            new, hf = HFRotaryEmbedding(_hf_rope(child, variant, options)), True
        setattr(parent, name, new)
    if hf:
        _set_log_n_attention(model, train_length if log_n else None)
    return model


def _rotary_modules(module: nn.Module):
    """``(parent, name, child)`` for every kexue :class:`RoPE` and Hugging Face rotary
    embedding (a module with an ``inv_freq`` buffer) under ``module``."""
    for name, child in module.named_children():
        if isinstance(child, (RoPE, HFRotaryEmbedding)) or "inv_freq" in dict(child.named_buffers(recurse=False)):
            yield module, name, child
        else:
            yield from _rotary_modules(child)


class HFRotaryEmbedding(nn.Module):
    """A kexue :class:`RoPE` behind the Hugging Face rotary-embedding interface:
    ``forward(x, position_ids)`` -> ``cos, sin`` ``(batch, seq, dim)`` in ``x.dtype``."""

    def __init__(self, rope: RoPE):
        super().__init__()
        if rope.variant in TWO_PASS or rope.log_n:
            raise ValueError("a Hugging Face rotary embedding gives cos/sin only: no ReRoPE, no log_n")
        self.rope = rope

    def forward(self, x: Tensor, position_ids: Tensor, layer_type: str | None = None) -> tuple[Tensor, Tensor]:
        rotary = self.rope(position_ids, dtype=x.dtype)
        return rotary.cos[:, 0], rotary.sin[:, 0]


def _hf_rope(module: nn.Module, variant: str, options: dict) -> RoPE:
    """A half-split :class:`RoPE` matching a Hugging Face rotary module's plain frequencies."""
    if isinstance(module, HFRotaryEmbedding):
        return RoPE(module.rope.dim, module.rope.base, variant, interleaved=False, **options)
    config = getattr(module, "config", None)
    params = getattr(config, "rope_parameters", None) or {}
    base = params.get("rope_theta", getattr(config, "rope_theta", None))
    if base is None:
        raise ValueError(f"cannot read rope_theta from the config of {type(module).__name__}")
    original = getattr(module, "original_inv_freq", module.inv_freq)
    rope = RoPE(2 * original.numel(), base, variant, interleaved=False, **options)
    if not torch.allclose(original.double().cpu(), rope.inv_freq, rtol=1e-5, atol=0):
        raise ValueError(
            f"{type(module).__name__}'s frequencies are not base^(-2i/d) with base {base} "
            f"(rope_type {params.get('rope_type')!r}?); apply_rope needs a model with plain RoPE"
        )
    return rope


def log_n_attention(train_length: int):
    """A Hugging Face ``AttentionInterface`` function: the queries times ``max(1, log(i+1) /
    log train_length)`` (``i`` from the ``position_ids`` the model passes), then transformers'
    ``sdpa_attention_forward``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, *args, position_ids=None, **kwargs):
        if position_ids is None:
            raise ValueError("log-n attention needs the position_ids of the queries")
        scale = log_n_scale(position_ids + 1, train_length)[:, None, :, None].to(query.dtype)
        return sdpa_attention_forward(module, query * scale, key, value, attention_mask, *args,
                                      position_ids=position_ids, **kwargs)

    return attention


def _set_log_n_attention(model: nn.Module, train_length: int | None) -> None:
    """Register and select the log-n attention (``train_length``), or go back to ``sdpa``
    from an earlier one (``None``)."""
    from transformers import AttentionInterface

    current = model.config._attn_implementation
    if train_length is None:
        if current.startswith(LOG_N_ATTENTION):
            model.set_attn_implementation("sdpa")
        return
    name = f"{LOG_N_ATTENTION}{train_length}"
    AttentionInterface.register(name, log_n_attention(train_length))
    model.set_attn_implementation(name)
