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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


@torch.no_grad()
def unilm_generate(
    model: nn.Module,
    source_ids: Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Greedy target decoding for a UniLM-trained :class:`~kexue.models.Bert` (MLM head).

    ``source_ids`` ``(batch, src)`` is ``[CLS] source [SEP]``, right-padded with
    ``attention_mask`` 0. The source is encoded once; its keys and values are cached.
    Under the UniLM mask the source never sees the target and a target token only sees
    earlier tokens, so the cache is exact and each step encodes one token whose keys
    are padding-masked source + earlier targets. Returns the generated ids ``(batch,
    n <= max_new_tokens)``; a row that emitted ``eos_token_id`` is padded with
    ``config.pad_token_id`` afterwards."""
    if getattr(model, "mlm", None) is None:
        raise ValueError("unilm_generate needs a Bert with an MLM head (mlm=True)")
    if source_ids.dim() != 2 or source_ids.is_floating_point():
        raise ValueError(
            f"source_ids must be an integer (batch, seq) tensor, got {tuple(source_ids.shape)}"
        )
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    b = source_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(source_ids)
    if attention_mask.shape != source_ids.shape:
        raise ValueError(
            f"attention_mask must be {tuple(source_ids.shape)}, got {tuple(attention_mask.shape)}"
        )
    limit = model.config.max_position_embeddings
    lengths = attention_mask.long().sum(dim=1)  # (batch,) real source lengths
    if (
        model.config.position_embedding_type == "absolute"
        and int(lengths.max()) + max_new_tokens > limit
    ):
        raise ValueError(
            f"source length {int(lengths.max())} + max_new_tokens {max_new_tokens} exceeds "
            f"max_position_embeddings {limit}"
        )
    was_training = model.training
    model.eval()
    rows = torch.arange(b, device=source_ids.device)
    out = model(source_ids, attention_mask, use_cache=True)
    next_ids = out.logits[rows, lengths - 1].argmax(dim=-1)  # (batch,)
    keys = attention_mask.bool()
    finished = torch.zeros(b, dtype=torch.bool, device=source_ids.device)
    generated = []
    for step in range(max_new_tokens):
        next_ids = next_ids.masked_fill(finished, model.config.pad_token_id)
        generated.append(next_ids)
        finished |= next_ids == eos_token_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        keys = torch.cat([keys, torch.ones(b, 1, dtype=torch.bool, device=keys.device)], dim=1)
        out = model(
            next_ids[:, None], keys,
            token_type_ids=torch.ones(b, 1, dtype=torch.long, device=keys.device),
            position_ids=(lengths + step)[:, None],
            past_key_values=out.past_key_values, use_cache=True,
        )  # fmt: skip
        next_ids = out.logits[:, -1].argmax(dim=-1)
    model.train(was_training)
    return torch.stack(generated, dim=1)
