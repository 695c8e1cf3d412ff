"""Short Chinese sentences and small character LMs over them (mcmc-keywords, tta).

Clauses of the shipped sentiment corpus (reviews cut at punctuation and spaces), a
character tokenizer over them, and three small models trained from scratch on padded
batches: a causal LM (kexue ``GPT2`` on ``[CLS] x [SEP]``), a BERT masked LM (BERT's
80/10/10 masking, the one in ``_shared/lm.py``; padding is never a target) and a T-TA
(every real token is a target).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.data import CharTokenizer, mask_tokens

_BREAK = re.compile(r"[，。！？；,.!?;~\s…、：:（）()\"“”]+")


def clauses(split: str, min_len: int, max_len: int, limit: int | None = None) -> list[str]:
    """Clauses of ``min_len..max_len`` characters from the sentiment ``split``, in order."""
    from kexue.data import load_sentiment

    out = [c for text, _ in load_sentiment(split) for c in _BREAK.split(text) if min_len <= len(c) <= max_len]
    return out[:limit]


def batch(tok: CharTokenizer, texts: list[str], *, special: bool) -> tuple[Tensor, Tensor]:
    """Right-padded ids and 0/1 mask; ``special`` adds ``[CLS] ... [SEP]``."""
    enc = tok.batch_encode(texts, add_special_tokens=special)
    return enc["input_ids"], enc["attention_mask"]


def lm_loss(model: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
    """Next-token loss of a causal LM on ``[CLS] x [SEP]`` rows (padding ignored)."""
    ids, mask = b[0], b[1]
    width = int(mask.sum(1).max())
    ids, mask = ids[:, :width], mask[:, :width]
    logits = model(ids[:, :-1]).logits
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)


def mlm_loss(model: nn.Module, b: tuple[Tensor, ...], tok: CharTokenizer,
             generator: torch.Generator | None = None) -> Tensor:
    """BERT MLM loss: 15% of the real tokens are targets (80/10/10)."""
    ids, mask = b[0], b[1]
    width = int(mask.sum(1).max())
    ids, mask = ids[:, :width], mask[:, :width]
    inputs, targets = mask_tokens(ids, tok.mask_token_id, tok.vocab_size, generator,
                                  attention_mask=mask, num_special=len(tok.SPECIAL_TOKENS))
    if bool((targets == -100).all()):
        targets[0, 0] = ids[0, 0]  # a batch with no target: score one real token
    picked = targets != -100
    logits = model(inputs, mask, mlm_positions=picked).logits  # the head on targets only
    return F.cross_entropy(logits, targets[picked])


def tta_loss(model: nn.Module, b: tuple[Tensor, ...]) -> Tensor:
    """T-TA loss: every real token predicted from the others."""
    ids, mask = b[0], b[1]
    width = int(mask.sum(1).max())
    ids, mask = ids[:, :width], mask[:, :width]
    logits = model(ids, mask).logits
    return F.cross_entropy(logits.flatten(0, 1), ids.masked_fill(mask == 0, -100).flatten(),
                           ignore_index=-100)


def train(model: nn.Module, loss, data: TensorDataset, *, steps: int, seed: int,
          batch_size: int = 64, lr: float = 2e-3, cache: Path | None = None) -> float:
    """Train with :func:`kexue.train.fit`; returns the last logged loss. With ``cache`` (a
    file), load the weights (and loss) from it if it exists, else train and save there."""
    from kexue.train import TrainConfig, fit

    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        model.load_state_dict(saved["model"])
        return float(saved["loss"])
    result = fit(model, loss, data, TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=0.05,
                                                seed=seed, progress=False, log_every=max(1, steps // 5)))
    last = float(result.history[-1]["loss"])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "loss": torch.tensor(last)}, cache)
    return last


def cache_file(cache_dir: Path, tag: str, **key: object) -> Path:
    """A weights file under ``cache_dir`` named by ``tag`` and a hash of ``key``."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{tag}-{digest}.pt"
