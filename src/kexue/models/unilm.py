"""UniLM: seq2seq with one BERT and a mask.

从语言模型到Seq2Seq：Transformer如戏，全靠Mask (2019-09-18,
https://kexue.fm/archives/6933). Input ``[CLS] source [SEP] target [SEP]`` with
``segment_ids`` 0 on the source and 1 on the target; the mask
:func:`~kexue.nn.unilm_mask` lets the source attend bidirectionally and the target
left-to-right; the MLM head predicts the next token and only target tokens count::

    loss = Σ_t CE(logits[t], ids[t+1]) · seg[t+1] / Σ_t seg[t+1]

Usage with a :class:`~kexue.models.Bert` built with ``mlm=True``::

    mask = unilm_mask(segment_ids, attention_mask)
    logits = bert(ids, mask, token_type_ids=segment_ids).logits
    loss = unilm_loss(logits, ids, segment_ids, attention_mask)

or, running the MLM head at the target positions only (the same loss, less work)::

    positions, targets = unilm_targets(ids, segment_ids, attention_mask)
    logits = bert(ids, mask, token_type_ids=segment_ids, mlm_positions=positions).logits
    loss = F.cross_entropy(logits, targets)

Decoding is :func:`kexue.generate.generate` with the :class:`kexue.generate.UniLM` adapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def unilm_targets(
    input_ids: Tensor, segment_ids: Tensor, attention_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Where the next token is a target and which it is: ``positions`` ``(batch, seq)``
    bool (``t`` such that token ``t + 1`` is a real segment-1 token) and ``targets``
    ``(n,)`` = those next tokens, in row-major order."""
    if segment_ids.shape != input_ids.shape or (
        attention_mask is not None and attention_mask.shape != input_ids.shape
    ):
        raise ValueError(f"segment_ids and attention_mask must have the shape of input_ids "
                         f"{tuple(input_ids.shape)}")
    follows = segment_ids[:, 1:] != 0
    if attention_mask is not None:
        follows = follows & (attention_mask[:, 1:] != 0)
    positions = torch.cat([follows, torch.zeros_like(follows[:, :1])], dim=1)
    return positions, input_ids[:, 1:][follows]


def unilm_loss(
    logits: Tensor,
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Next-token cross-entropy averaged over the target (segment 1) tokens.

    ``logits`` ``(batch, seq, vocab)``; ``input_ids``, ``segment_ids`` and the optional
    0/1 ``attention_mask`` ``(batch, seq)``. Raises ``ValueError`` if no token is a
    target (the mean would be 0/0)."""
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(
            f"logits must be (batch, seq, vocab) matching input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(logits.shape)}"
        )
    if segment_ids.shape != input_ids.shape:
        raise ValueError(
            f"segment_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(segment_ids.shape)}"
        )
    weight = (segment_ids[:, 1:] != 0).to(logits.dtype)  # (batch, seq-1): targets y_1 .. y_n
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        weight = weight * (attention_mask[:, 1:] != 0).to(logits.dtype)
    total = weight.sum()
    if total == 0:
        raise ValueError("unilm_loss: no target tokens (segment_ids == 1) in the batch")
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    return (ce * weight).sum() / total

