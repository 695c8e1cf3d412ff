"""Shared pieces of the text-classification experiments (adversarial, VAT, long tail, ...).

A small character-level Transformer classifier built from :mod:`kexue.nn`, data sets as
tensors, training through :func:`kexue.train.fit`, and the metrics the claims use
(accuracy, macro-F1, balanced accuracy).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.data import CharTokenizer
from kexue.nn import LearnedPositionEmbedding, Transformer, padding_mask


@dataclass
class TextTask:
    """A labelled text classification task, already split."""

    name: str
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    num_classes: int
    unlabeled: list[str] | None = None


def load_task(name: str, max_train: int | None = None, max_test: int | None = None,
              seed: int = 0) -> TextTask:
    """``sentiment`` (zh), ``sst2`` (en), ``tnews`` / ``iflytek`` (FewCLUE, labels remapped).

    Subsets are random but fixed by ``seed`` (data seed, kept apart from the model seed).
    """
    from kexue import data

    if name == "sentiment":
        train, test = data.load_sentiment("train"), data.load_sentiment("test")
    elif name == "sst2":
        train, test = data.load_sst2("train"), data.load_sst2("test")
    elif name in ("tnews", "iflytek"):
        raw_train = data.load_fewclue(name, "train_few_all")
        raw_test = data.load_fewclue(name, "test_public")
        labels = sorted({r["label"] for r in raw_train} | {r["label"] for r in raw_test})
        index = {lab: i for i, lab in enumerate(labels)}
        train = [(r["sentence"], index[r["label"]]) for r in raw_train]
        test = [(r["sentence"], index[r["label"]]) for r in raw_test]
    else:
        raise ValueError(f"unknown task {name!r}; expected sentiment, sst2, tnews or iflytek")
    rng = random.Random(seed)
    if max_train is not None and len(train) > max_train:
        train = rng.sample(train, max_train)
    if max_test is not None and len(test) > max_test:
        test = rng.sample(test, max_test)
    num_classes = max(lab for _, lab in train + test) + 1
    return TextTask(name, train, test, num_classes)


def tensorize(tokenizer: CharTokenizer, rows: list[tuple[str, int]], max_length: int) -> TensorDataset:
    enc = tokenizer.batch_encode([t for t, _ in rows], max_length=max_length)
    labels = torch.tensor([lab for _, lab in rows], dtype=torch.long)
    return TensorDataset(enc["input_ids"], enc["attention_mask"], labels)


class TextClassifier(nn.Module):
    """Token embedding + learned positions -> post-LN Transformer -> masked mean -> linear."""

    def __init__(self, vocab_size: int, num_classes: int, hidden: int = 128, layers: int = 2,
                 heads: int = 4, max_length: int = 128, dropout: float = 0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.position = LearnedPositionEmbedding(max_length, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.encoder = Transformer(layers, hidden, heads, 4 * hidden, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embedding(input_ids)  # (batch, seq, hidden)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.dropout(self.norm(x + self.position(positions)))
        x, _, _ = self.encoder(x, padding_mask(attention_mask))
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(self.dropout(pooled))  # (batch, classes)


class NgramBagClassifier(nn.Module):
    """fastText-style: mean of character and hashed character-bigram embeddings -> linear.

    Takes the same ``(input_ids, attention_mask)`` as :class:`TextClassifier` (ids of a
    :class:`CharTokenizer`); bigram ``(a, b)`` goes to bucket ``(a * 1000003 + b) % buckets``.
    Far cheaper than a Transformer and much better when there are only a few hundred
    training texts (a from-scratch Transformer stays near chance there).
    """

    def __init__(self, vocab_size: int, num_classes: int, hidden: int = 64,
                 buckets: int = 8192, dropout: float = 0.1):
        super().__init__()
        self.buckets = buckets
        self.embedding = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.bigram = nn.Embedding(buckets, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean of the unigram and bigram vectors of each row, ``(batch, hidden)``."""
        m1 = attention_mask.unsqueeze(-1).float()  # (batch, seq, 1)
        m2 = (attention_mask[:, :-1] * attention_mask[:, 1:]).unsqueeze(-1).float()
        bigrams = (input_ids[:, :-1] * 1000003 + input_ids[:, 1:]) % self.buckets  # (batch, seq-1)
        total = (self.embedding(input_ids) * m1).sum(1) + (self.bigram(bigrams) * m2).sum(1)
        return total / (m1.sum(1) + m2.sum(1)).clamp_min(1.0)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.dropout(self.encode(input_ids, attention_mask)))  # (batch, classes)


def logits_of(model: nn.Module, batch: Any) -> Tensor:
    """Logits of a ``(input_ids, attention_mask, ...)`` batch, trimmed to its longest row."""
    input_ids, attention_mask = batch[0], batch[1]
    length = int(attention_mask.sum(1).max())
    return model(input_ids[:, :length], attention_mask[:, :length])


def cross_entropy_loss(model: nn.Module, batch: Any) -> Tensor:
    return F.cross_entropy(logits_of(model, batch), batch[2])


@torch.no_grad()
def predict(model: nn.Module, dataset: TensorDataset, batch_size: int = 256) -> Tensor:
    """Logits for every example of ``dataset``, in eval mode."""
    was_training = model.training
    model.eval()
    out = [logits_of(model, dataset[i:i + batch_size]) for i in range(0, len(dataset), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def classification_metrics(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 and balanced accuracy (mean per-class recall) in percent, plus CE."""
    pred = logits.argmax(-1)
    ce = F.cross_entropy(logits.float(), labels).item()
    acc = (pred == labels).float().mean().item()
    recalls, f1s = [], []
    for c in range(num_classes):
        tp = ((pred == c) & (labels == c)).sum().item()
        support = (labels == c).sum().item()
        predicted = (pred == c).sum().item()
        if support == 0:
            continue
        recalls.append(tp / support)
        f1s.append(2 * tp / (support + predicted) if support + predicted else 0.0)
    return {
        "accuracy": 100 * acc,
        "macro_f1": 100 * sum(f1s) / len(f1s),
        "balanced_accuracy": 100 * sum(recalls) / len(recalls),
        "test_loss": ce,
    }


def train_classifier(
    model: nn.Module,
    train: TensorDataset,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    loss_fn: Callable[[nn.Module, Any], Tensor] = cross_entropy_loss,
    step: Any = None,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
) -> nn.Module:
    """Train with :func:`kexue.train.fit` (AdamW, warm-up + linear decay, clipping)."""
    from kexue.train import TrainConfig, fit, plain_step

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, warmup=warmup,
                         weight_decay=weight_decay, progress=False, log_every=max(1, steps // 10))
    fit(model, loss_fn, train, config, step=step or plain_step)
    return model

