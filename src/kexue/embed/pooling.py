"""Sentence vectors from a BERT's token vectors: cls, mean, first-last-avg, last-2-avg.

Source: Su Jianlin, "你可能不需要BERT-flow：一个线性变换媲美BERT-flow" (You may not need
BERT-flow: a linear transformation rivals BERT-flow), 2021-01-11, https://kexue.fm/archives/8069,
and its follow-up with Chinese results, 2021-04-11, https://kexue.fm/archives/8321.

``hidden_states`` follows the Hugging Face convention: ``hidden_states[0]`` is the embedding
layer's output and ``hidden_states[k]`` the output of Transformer layer ``k``. The pooled
token averages are padding-aware: with mask ``m`` (1 = token, 0 = padding)

    mean(H) = sum_t m_t H_t / sum_t m_t

* ``"cls"``: ``hidden_states[-1][:, 0]`` (the post's P1).
* ``"mean"``: ``mean(hidden_states[-1])`` (P3).
* ``"first-last-avg"``: ``mean((hidden_states[1] + hidden_states[-1]) / 2)`` -- the first
  *Transformer layer* output, not the embedding output, averaged with the last layer (P4;
  BERT-flow's "last2avg" baseline was really this, see BERT-flow issue #11).
* ``"last-2-avg"``: ``mean((hidden_states[-2] + hidden_states[-1]) / 2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["POOLING_STRATEGIES", "masked_mean", "pool"]

POOLING_STRATEGIES = ("cls", "mean", "first-last-avg", "last-2-avg")


def masked_mean(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Padding-aware mean over the sequence: (batch, seq, hidden), (batch, seq) -> (batch, hidden).

    Raises ValueError if a row of ``attention_mask`` has no token (its mean is undefined).
    """
    if hidden.dim() != 3:
        raise ValueError(f"expected hidden of shape (batch, seq, hidden), got {tuple(hidden.shape)}")
    if attention_mask is None:
        return hidden.mean(dim=1)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"expected attention_mask of shape {tuple(hidden.shape[:2])} (batch, seq), "
            f"got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, seq, 1)
    counts = mask.sum(dim=1)  # (batch, 1)
    if (counts == 0).any():
        empty = (counts.squeeze(-1) == 0).nonzero().flatten().tolist()
        raise ValueError(f"attention_mask has no tokens in rows {empty[:10]}; cannot average them")
    return (hidden * mask).sum(dim=1) / counts


def pool(
    hidden_states: Sequence[Tensor],
    attention_mask: Tensor | None = None,
    pooling: str = "mean",
) -> Tensor:
    """Pool ``hidden_states`` (embeddings output, then each layer's) into (batch, hidden).

    Args:
        hidden_states: a sequence of (batch, seq, hidden) tensors, HF ``output_hidden_states``
            layout; ``"cls"`` and ``"mean"`` read only the last one, so a one-element
            sequence ``(last_hidden_state,)`` is enough for them.
        attention_mask: (batch, seq), 1 for tokens and 0 for padding; None = no padding.
        pooling: one of ``"cls"``, ``"mean"``, ``"first-last-avg"``, ``"last-2-avg"``.
    """
    if pooling not in POOLING_STRATEGIES:
        raise ValueError(f"expected pooling in {POOLING_STRATEGIES}, got {pooling!r}")
    if len(hidden_states) == 0:
        raise ValueError("expected at least one hidden state, got an empty sequence")
    last = hidden_states[-1]  # (batch, seq, hidden)
    if pooling == "cls":
        return last[:, 0]
    if pooling == "mean":
        return masked_mean(last, attention_mask)
    # first-last-avg needs the embeddings output plus >= 1 layer; last-2-avg needs two layers.
    needed = 2 if pooling == "first-last-avg" else 3
    if len(hidden_states) < needed:
        raise ValueError(
            f"pooling={pooling!r} needs the embeddings output and the layer outputs "
            f"(>= {needed} hidden states, e.g. output_hidden_states=True), got {len(hidden_states)}"
        )
    other = hidden_states[1] if pooling == "first-last-avg" else hidden_states[-2]
    return masked_mean((other + last) / 2, attention_mask)
