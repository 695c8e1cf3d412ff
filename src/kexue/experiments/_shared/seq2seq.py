"""UniLM seq2seq on a small character-level kexue Bert (kgclue, question-generation).

Rows are ``[CLS] source [SEP] target [SEP]`` with segment 0 on ``[CLS] source [SEP]`` and
1 on ``target [SEP]`` (从语言模型到Seq2Seq, https://kexue.fm/archives/6933); the model is
trained with :func:`kexue.models.unilm_loss` under :func:`kexue.nn.unilm_mask` and
decodes with :func:`kexue.generate.generate` through the :class:`kexue.generate.UniLM`
adapter. Prompts may carry a target prefix (segment 1), e.g. an answer before its
question.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from kexue.models import Bert, BertConfig, unilm_targets
from kexue.nn import unilm_mask


def pack(rows: Sequence[Sequence[int]], segments: Sequence[Sequence[int]],
         pad: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-pad ``rows`` and their segment ids: ``(ids, segments, attention_mask)``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    seg = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (r, s) in enumerate(zip(rows, segments)):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        seg[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, seg, mask


def examples(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
             cls: int, sep: int, pad: int) -> TensorDataset:
    """Training rows ``[CLS] source [SEP] target [SEP]`` as ``(ids, segments, mask)``."""
    rows = [[cls, *s, sep, *t, sep] for s, t in zip(sources, targets)]
    segments = [[0] * (len(s) + 2) + [1] * (len(t) + 1) for s, t in zip(sources, targets)]
    return TensorDataset(*pack(rows, segments, pad))


def prompts(sources: Sequence[Sequence[int]], prefixes: Sequence[Sequence[int]] | None = None, *,
            cls: int, sep: int, pad: int) -> dict[str, Tensor]:
    """Decoding prompts ``[CLS] source [SEP] prefix``: ``input_ids`` and the adapter's
    ``attention_mask`` / ``token_type_ids`` (1 on the prefix)."""
    prefixes = prefixes or [[] for _ in sources]
    rows = [[cls, *s, sep, *p] for s, p in zip(sources, prefixes)]
    segments = [[0] * (len(s) + 2) + [1] * len(p) for s, p in zip(sources, prefixes)]
    ids, seg, mask = pack(rows, segments, pad)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": seg}


def small_unilm(vocab_size: int, max_positions: int, hidden: int = 128, layers: int = 2,
                heads: int = 4) -> Bert:
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=max_positions, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return Bert(config, mlm=True, pooler=False)


def loss(model: Bert, batch: tuple[Tensor, ...]) -> Tensor:
    """UniLM loss of a batch (trimmed to its longest row), the MLM head on targets only."""
    ids, seg, mask = batch[:3]
    width = int(mask.sum(dim=1).max())
    ids, seg, mask = ids[:, :width], seg[:, :width], mask[:, :width]
    positions, targets = unilm_targets(ids, seg, mask)
    logits = model(ids, unilm_mask(seg, mask), token_type_ids=seg, mlm_positions=positions).logits
    return F.cross_entropy(logits, targets)


def train(model: Bert, data: TensorDataset, *, steps: int, batch_size: int, lr: float,
          seed: int) -> float:
    """Train with :func:`kexue.train.fit`; returns the last logged loss."""
    from kexue.train import TrainConfig, fit

    result = fit(model, loss, data, TrainConfig(steps=steps, batch_size=batch_size, lr=lr,
                                                warmup=0.05, seed=seed, progress=False,
                                                log_every=max(1, steps // 5)))
    return float(result.history[-1]["loss"])


def until(row: Sequence[int], eos: int) -> list[int]:
    """The tokens of ``row`` before its first ``eos``."""
    out = []
    for t in row:
        if t == eos:
            break
        out.append(int(t))
    return out
