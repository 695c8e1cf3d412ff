"""Attention masks: padding, causal (LM), sliding window, UniLM seq2seq and permutation LM.

From 从语言模型到Seq2Seq：Transformer如戏，全靠Mask (2019-09-18,
https://kexue.fm/archives/6933): one Transformer becomes a bidirectional encoder,
a left-to-right LM, a seq2seq model or a permutation LM just by changing the mask.

Convention everywhere in kexue: a mask is **boolean, True = may attend**, indexed
``mask[..., i, j]`` with ``i`` the query (output) position and ``j`` the key (input)
position. Shapes are ``(batch, q, k)`` or broadcastable to it (``(q, k)``,
``(batch, 1, k)``), so masks combine with ``&`` (see :func:`combine_masks`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_ids(name: str, ids: Tensor) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a 2-D (batch, seq) tensor, got {shape}")
    if ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"{name} must be an integer or bool tensor, got {ids.dtype}")


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Key-padding mask ``(batch, 1, k)`` from a 0/1 ``attention_mask`` ``(batch, k)``.

    ``mask[b, 0, j] = attention_mask[b, j] != 0``: every query may attend to every
    real (non-padding) key. Broadcasts against any ``(batch, q, k)`` mask.
    """
    _check_ids("attention_mask", attention_mask)
    return (attention_mask != 0)[:, None, :]


def causal_mask(
    q_len: int, k_len: int | None = None, *, device: torch.device | str | None = None
) -> Tensor:
    """Lower-triangular LM mask ``(q_len, k_len)``: ``mask[i, j] = j <= i + (k_len - q_len)``.

    With ``k_len > q_len`` the queries are the *last* ``q_len`` positions of the
    sequence (the keys before them come from a KV cache), bottom-right aligned.
    """
    k_len = q_len if k_len is None else k_len
    if q_len <= 0 or k_len < q_len:
        raise ValueError(
            f"causal_mask expects 0 < q_len <= k_len, got q_len={q_len}, k_len={k_len}"
        )
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return j <= i


def window_mask(seq_len: int, window: int, *, sink: int = 0, device=None) -> Tensor:
    """Causal sliding-window mask ``(seq, seq)``: query ``i`` sees key ``j`` iff
    ``0 <= i - j < window`` or ``j < sink``.

    Local attention as the baseline of Transformer升级之路：16、"复盘"长度外推技术
    (2024-01-26, https://kexue.fm/archives/9948); ``sink > 0`` keeps the first tokens
    visible (the Λ-shaped mask of LM-Infinite, StreamingLLM's attention sinks).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if seq_len <= 0 or sink < 0:
        raise ValueError(f"window_mask needs seq_len > 0 and sink >= 0, got {seq_len}, {sink}")
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & ((i - j < window) | (j < sink))


def unilm_mask(segment_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """UniLM seq2seq mask ``(batch, seq, seq)`` from ``segment_ids`` ``(batch, seq)``.

    Input ``[CLS] source [SEP] target [SEP]`` with segment 0 on the source part and 1
    on the target part. With ``idx = cumsum(segment_ids)``::

        mask[b, i, j] = idx[b, j] <= idx[b, i]

    so the source attends bidirectionally within itself, and each target token sees
    the whole source and the target tokens up to itself. Padding (segment 0) after
    the target would get the largest ``idx`` and be visible to the last target
    tokens, so pass ``attention_mask`` (0 = padding): the result is AND-ed with the
    key-padding mask.
    """
    _check_ids("segment_ids", segment_ids)
    idx = segment_ids.long().cumsum(dim=1)  # (batch, seq)
    mask = idx[:, None, :] <= idx[:, :, None]  # (batch, q, k)
    if attention_mask is not None:
        _check_ids("attention_mask", attention_mask)
        if attention_mask.shape != segment_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of segment_ids {tuple(segment_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        mask = mask & padding_mask(attention_mask)
    return mask


def permutation_mask(order: Tensor) -> Tensor:
    """Permutation-LM mask (XLNet's factorisation order, without two-stream attention).

    ``order`` ``(seq,)`` or ``(batch, seq)`` lists positions in generation order:
    ``order[t]`` is the position predicted at step ``t``. With ``rank[order[t]] = t``::

        mask[..., i, j] = rank[j] <= rank[i]

    i.e. position ``i`` sees the positions generated no later than itself. Feeding
    the tokens and position ids permuted by ``order`` under an ordinary causal mask
    gives the same outputs, permuted (the post's simpler equivalent).
    Returns ``(seq, seq)`` or ``(batch, seq, seq)``.
    """
    if not isinstance(order, Tensor) or order.dim() not in (1, 2):
        shape = tuple(order.shape) if isinstance(order, Tensor) else type(order).__name__
        raise ValueError(f"order must be a (seq,) or (batch, seq) tensor, got {shape}")
    n = order.shape[-1]
    sorted_order = order.sort(dim=-1).values
    if not torch.equal(sorted_order, torch.arange(n, device=order.device).expand_as(order)):
        raise ValueError(f"order must be a permutation of 0..{n - 1} along its last dim")
    steps = torch.arange(n, device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, steps)  # rank[order[t]] = t
    return rank.unsqueeze(-2) <= rank.unsqueeze(-1)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable boolean masks; ``None`` entries are skipped."""
    out = None
    for m in masks:
        if m is None:
            continue
        if m.dtype != torch.bool:
            raise ValueError(f"masks must be boolean (True = may attend), got {m.dtype}")
        out = m if out is None else out & m
    return out
