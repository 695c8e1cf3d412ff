"""Fine-tune the pre-trained MiniLM for text classification, with the weights cached.

Claims about fine-tuning a pre-trained encoder run on all-MiniLM-L6-v2 (the shipped
``kexue.data.minilm_path()``; ``folder`` takes any local BERT folder instead). This is
the one place experiments get such a classifier from:

- :class:`MiniLMClassifier` (made by :func:`build`, seeded): :class:`kexue.models.Bert` ->
  mean pooling over the tokens (MiniLM's sentence-embedding pooling) -> dropout -> linear
  head;
- :func:`encode`: rows ``(text, label)`` -> ``TensorDataset(input_ids, attention_mask,
  labels)`` with MiniLM's WordPiece tokenizer;
- :func:`fine_tune`: train through :func:`kexue.train.fit` (AdamW, warm-up + linear
  decay; optionally only the top layers), or load the weights a previous run left in
  ``cache_dir`` through :func:`kexue.evidence.cache.cached_state` (keyed by tag,
  :class:`FineTuneConfig`, seed, encoder folder and a digest of the data; written
  atomically, reused only if the code that trained it is unchanged);
- :func:`evaluate`: accuracy, macro-F1, balanced accuracy and loss on a data set;
- sentence pairs with a similarity score (STS-B) as regression with one output:
  :func:`encode_pairs`, :func:`regression_loss`, :func:`evaluate_regression`;
- :meth:`MiniLMClassifier.keep_layers`: a shallower model from some of the encoder layers
  (the "fine-tune the first k layers" baselines of model compression).

Training batches are trimmed to their longest row (``logits_of``), so short sentences
cost what they are, not ``max_length``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.experiments._shared.classification import (
    classification_metrics,
    cross_entropy_loss,
    logits_of,
    predict,
)


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyper-parameters of :func:`fine_tune` (all part of the cache key)."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    train_layers: int | None = None  # None: everything; k: the top k encoder layers + head
    head_lr: float | None = None  # the new head's learning rate (None: lr)
    train_embeddings: bool = True  # False: the embedding tables stay frozen


class MiniLMClassifier(nn.Module):
    """Pre-trained BERT encoder, mean pooling over real tokens, dropout, linear head.

    ``forward(input_ids, attention_mask)`` -> logits ``(batch, num_classes)``.
    """

    def __init__(self, num_classes: int, folder: str | os.PathLike | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        from kexue.data import minilm_path
        from kexue.models import Bert

        self.folder = str(folder or minilm_path())
        self.bert = Bert.from_pretrained(self.folder, pooler=False, mlm=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.bert.config.hidden_size, num_classes)

    def freeze_below(self, train_layers: int | None) -> None:
        """Train only the top ``train_layers`` encoder layers and the head (None: all):
        the embeddings and the layers below get ``requires_grad=False``, so the backward
        pass stops above them (the CPU-budget way to fine-tune)."""
        layers = self.bert.encoder.layers
        frozen = 0 if train_layers is None else len(layers) - train_layers
        for module in (self.bert.embeddings, *layers[:frozen]):
            module.requires_grad_(train_layers is None)
        for module in layers[frozen:]:
            module.requires_grad_(True)

    def keep_layers(self, indices: Sequence[int]) -> MiniLMClassifier:
        """Keep only the encoder layers ``indices`` (in that order), e.g. ``(0, 1, 2)``."""
        layers = self.bert.encoder.layers
        if not indices or not all(0 <= i < len(layers) for i in indices):
            raise ValueError(f"indices must be a non-empty list of layer indices in "
                             f"[0, {len(layers)}), got {list(indices)}")
        self.bert.encoder.layers = nn.ModuleList(layers[i] for i in indices)
        self.bert.config.num_hidden_layers = len(indices)
        return self

    def pool(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean of the last hidden states over real tokens, ``(batch, hidden)``."""
        h = self.bert(input_ids, attention_mask).last_hidden_state  # (batch, seq, hidden)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))


def build(num_classes: int, seed: int, folder: str | os.PathLike | None = None,
          dropout: float = 0.1) -> MiniLMClassifier:
    """A :class:`MiniLMClassifier` whose head is initialised from ``seed``."""
    from kexue.train import seed_everything

    seed_everything(seed)
    return MiniLMClassifier(num_classes, folder, dropout)


def tokenizer(folder: str | os.PathLike | None = None) -> Any:
    """MiniLM's WordPiece tokenizer (or the one of ``folder``)."""
    from kexue.data import WordPieceTokenizer, minilm_path

    return WordPieceTokenizer.from_pretrained(folder or minilm_path())


def encode(rows: Sequence[tuple[str, int]], max_length: int = 64,
           folder: str | os.PathLike | None = None) -> TensorDataset:
    """``(text, label)`` rows -> ``TensorDataset(input_ids, attention_mask, labels)``."""
    batch = tokenizer(folder).batch_encode([t for t, _ in rows], max_length=max_length)
    labels = torch.tensor([label for _, label in rows], dtype=torch.long)
    return TensorDataset(batch["input_ids"], batch["attention_mask"], labels)


def encode_pairs(rows: Sequence[tuple[str, str, float]], max_length: int = 128,
                 folder: str | os.PathLike | None = None) -> TensorDataset:
    """``(sentence_a, sentence_b, score)`` rows -> ``TensorDataset(input_ids, attention_mask,
    scores)``, each pair encoded as ``[CLS] a [SEP] b [SEP]`` (a cross-encoder)."""
    batch = tokenizer(folder).batch_encode([r[0] for r in rows], max_length=max_length,
                                           pairs=[r[1] for r in rows])
    scores = torch.tensor([r[2] for r in rows], dtype=torch.float)
    return TensorDataset(batch["input_ids"], batch["attention_mask"], scores)


def regression_loss(model: nn.Module, batch: Any) -> Tensor:
    """Mean squared error of the single output against the score."""
    return nn.functional.mse_loss(logits_of(model, batch).squeeze(-1), batch[2])


def cache_key(config: FineTuneConfig, seed: int, data: Any, model: nn.Module,
              **extra: Any) -> dict[str, Any]:
    """What a fine-tuned state depends on: config, seed, encoder folder, and the data (its
    size and a digest of the ids of each of its parts, see :func:`data_parts`)."""
    parts = data_parts(data)
    digest = hashlib.sha256(b"".join(part.tensors[0].numpy().tobytes() for part in parts))
    return {"config": dataclasses.asdict(config), "seed": seed,
            "data": [len(data), *parts[0].tensors[0].shape[1:]], "ids": digest.hexdigest()[:16],
            "model": str(getattr(model, "folder", type(model).__name__)), **extra}


def data_parts(data: Any) -> list[TensorDataset]:
    """``[data]`` for a ``TensorDataset``; for a dataset built of ``TensorDataset`` parts held
    as attributes (e.g. a labelled and an unlabelled set), the parts in attribute order."""
    if isinstance(data, TensorDataset):
        return [data]
    parts = [part for part in vars(data).values() if isinstance(part, TensorDataset)]
    if not parts:
        raise ValueError(f"data must be a TensorDataset or hold TensorDatasets as attributes, "
                         f"got {type(data).__name__}")
    return parts


def param_groups(model: nn.Module, config: FineTuneConfig) -> list[dict[str, Any]] | None:
    """AdamW groups when the head has its own rate: decayed matrices, undecayed biases and
    norms, and the head at ``head_lr`` (None: :func:`kexue.train.fit`'s default groups)."""
    if config.head_lr is None:
        return None
    head = list(model.head.parameters())
    body = [p for p in model.parameters()
            if p.requires_grad and all(p is not h for h in head)]
    groups = [{"params": [p for p in body if p.dim() >= 2]},
              {"params": [p for p in body if p.dim() < 2], "weight_decay": 0.0},
              {"params": head, "lr": config.head_lr}]
    return [g for g in groups if g["params"]]


def fine_tune(
    model: nn.Module,
    train: Any,
    config: FineTuneConfig,
    *,
    seed: int,
    cache_dir: str | os.PathLike | None,
    tag: str,
    loss_fn: Callable[[nn.Module, Any], Tensor] = cross_entropy_loss,
    step: Any = None,
    log: Callable[[str], None] = print,
) -> nn.Module:
    """Fine-tune ``model`` on ``train`` (or load cached weights) and return it in eval mode.

    ``tag`` names the variant (e.g. ``"sst2"``, ``"sst2-fgm"``): two runs share weights only
    when tag, config, seed and data agree. ``step`` is a :mod:`kexue.train.step` step (FGM,
    ...); ``cache_dir=None`` always trains.
    """
    from kexue.evidence.cache import cached_state
    from kexue.train import TrainConfig, fit, plain_step

    def train_now() -> dict[str, Tensor]:
        if config.train_layers is not None:
            model.freeze_below(config.train_layers)
        if not config.train_embeddings:
            model.bert.embeddings.requires_grad_(False)
        fit(model, loss_fn, train, TrainConfig(
            steps=config.steps, batch_size=config.batch_size, lr=config.lr,
            warmup=config.warmup, weight_decay=config.weight_decay, seed=seed, progress=False,
            log_every=max(1, config.steps // 5)), step=step or plain_step,
            param_groups=param_groups(model, config))
        if config.train_layers is not None or not config.train_embeddings:
            model.freeze_below(None)
        return model.state_dict()

    if cache_dir is None:
        train_now()
    else:
        key = cache_key(config, seed, train, model, loss=getattr(loss_fn, "__name__", repr(loss_fn)),
                        step=repr(step))
        model.load_state_dict(cached_state(cache_dir, f"minilm-{tag}", key, train_now, log))
    return model.eval()


def evaluate(model: nn.Module, data: TensorDataset, num_classes: int = 2,
             batch_size: int = 64) -> dict[str, float]:
    """Accuracy, macro-F1, balanced accuracy (percent) and cross-entropy on ``data``."""
    logits = predict(model, data, batch_size=batch_size)
    return classification_metrics(logits, data.tensors[2], num_classes)


def evaluate_regression(model: nn.Module, data: TensorDataset,
                        batch_size: int = 64) -> dict[str, float]:
    """Spearman and Pearson correlation (x100) of the single output with the scores."""
    from scipy.stats import pearsonr, spearmanr

    pred = predict(model, data, batch_size=batch_size).squeeze(-1).numpy()
    gold = data.tensors[2].numpy()
    return {"spearman": 100 * float(spearmanr(pred, gold)[0]),
            "pearson": 100 * float(pearsonr(pred, gold)[0])}
