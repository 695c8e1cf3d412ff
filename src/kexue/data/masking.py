"""BERT's masked-LM corruption of a batch of token ids.

Devlin et al. 2019: each candidate token is chosen with probability ``mask_prob``; a
chosen token becomes ``[MASK]`` 80% of the time, a random token 10% of the time, and is
kept 10% of the time. The loss is the cross-entropy at the chosen positions only.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mask_tokens"]


def mask_tokens(
    input_ids: Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator | None = None,
    *,
    attention_mask: Tensor | None = None,
    num_special: int = 0,
    mask_prob: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """Corrupt ``input_ids`` ``(batch, seq)`` for masked-LM training.

    Args:
        mask_token_id: the id of ``[MASK]``.
        vocab_size: random replacements are drawn from ``[num_special, vocab_size)``.
        generator: for reproducible masks.
        attention_mask: ``(batch, seq)``, 0 at padding; padding is never chosen.
        num_special: ids below it (``[PAD]``, ``[CLS]``, ``[SEP]``, ...) are never chosen.
        mask_prob: probability that a candidate token is chosen.

    Returns:
        ``(inputs, labels)``, both ``(batch, seq)``: ``labels`` holds the original id at the
        chosen positions and -100 (ignored by ``F.cross_entropy``) elsewhere.
    """
    if not 0 < mask_prob < 1:
        raise ValueError(f"expected 0 < mask_prob < 1, got {mask_prob}")
    if not 0 <= num_special < vocab_size:
        raise ValueError(f"expected 0 <= num_special < vocab_size ({vocab_size}), got {num_special}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"expected input_ids and attention_mask of one shape, got "
                         f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    candidates = input_ids >= num_special
    if attention_mask is not None:
        candidates &= attention_mask > 0
    chosen = candidates & (torch.rand(input_ids.shape, generator=generator) < mask_prob)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    how = torch.rand(input_ids.shape, generator=generator)  # splits the chosen 80 / 10 / 10
    random_ids = torch.randint(num_special, vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (how < 0.8)] = mask_token_id
    swap = chosen & (how >= 0.8) & (how < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels
