"""Fine-tuning a :class:`~kexue.embed.SentenceEncoder` on scored sentence pairs.

Source: Su Jianlin, "CoSENT（一）：比Sentence-BERT更有效的句向量方案" (CoSENT (1): a sentence
embedding scheme more effective than Sentence-BERT), 2022-01-06,
https://kexue.fm/archives/8847. The three losses of the post's comparison, on the pooled
vectors ``u``, ``v`` of each pair (``y`` its score, ``y_max`` the top of the scale):

* ``"cosent"``: ``log(1 + sum_{y_i > y_j} exp(scale * (cos_j - cos_i)))`` over the pairs of a
  batch (``scale`` = 20), :func:`kexue.losses.cosent_loss`;
* ``"sbert"``: Sentence-BERT's softmax classifier on ``[u, v, |u - v|]`` with the scores
  binarised at ``y_max / 2`` (the head is trained with the encoder and thrown away),
  :class:`kexue.losses.SBERTSoftmaxLoss`;
* ``"cosine-mse"``: ``(cos(u, v) - y / y_max)^2``, :func:`kexue.losses.cosine_mse_loss`.

Training runs through :func:`kexue.train.fit` (AdamW, warm-up then linear decay, clipping,
checkpoints and resume, DDP under ``torchrun``), batches padded to their longest sentence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from kexue.losses import SBERTSoftmaxLoss, cosent_loss_from_embeddings, cosine_mse_loss
from kexue.losses import flooding as flood
from kexue.train import Step, TrainConfig, TrainResult, fit, plain_step

if TYPE_CHECKING:
    from kexue.embed.encoder import SentenceEncoder

__all__ = ["PAIR_LOSSES", "PairModel", "fit_pairs", "pair_rows"]

PAIR_LOSSES = ("cosent", "sbert", "cosine-mse")

Pair = tuple[str, str, float]


def pair_rows(data: Any, name: str = "train") -> list[Pair]:
    """``(sentence_a, sentence_b, score)`` rows of ``data``: a sequence of triples, of
    sentence-transformers ``InputExample`` (``.texts``, ``.label``) or of mappings with
    ``sentence1`` / ``sentence2`` / ``score`` (or ``label``). Raises ``ValueError`` naming
    the first bad row."""
    if isinstance(data, (str, bytes)) or not hasattr(data, "__len__"):
        raise ValueError(f"{name} must be a sequence of (sentence_a, sentence_b, score) pairs, "
                         f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} holds no sentence pair")
    rows = []
    for i in range(len(data)):
        item = data[i]
        if hasattr(item, "texts") and hasattr(item, "label"):
            item = (*item.texts, item.label)
        elif isinstance(item, Mapping):
            item = (item.get("sentence1"), item.get("sentence2"),
                    item.get("score", item.get("label")))
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"{name}[{i}] must be (sentence_a, sentence_b, score), got {item!r}")
        a, b, score = item
        if not isinstance(a, str) or not isinstance(b, str):
            raise ValueError(f"{name}[{i}]: the sentences must be strings, got "  # noqa: TRY004  (bad data, not a bad argument)
                             f"{type(a).__name__} and {type(b).__name__}")
        try:
            score = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}]: the score must be a number, got {score!r}") from None
        if not math.isfinite(score):
            raise ValueError(f"{name}[{i}]: the score must be finite, got {score}")
        rows.append((a, b, score))
    return rows


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class PairModel(nn.Module):
    """A :class:`SentenceEncoder`'s model plus what a pair loss needs, as one module to train.

    Args:
        encoder: the sentence encoder; its ``model`` is registered here (trained in place).
        loss: ``"cosent"``, ``"sbert"`` or ``"cosine-mse"`` (see the module docstring).
        label_max: top of the score scale (5 for STS-B, 1 for binary labels): Sentence-BERT
            binarises at ``label_max / 2``, cosine-MSE regresses on ``score / label_max``.
        scale: CoSENT's ``lambda`` (20 in the post).

    ``forward(batch)`` gives the pooled vectors ``(u, v)``, each (batch, dim); ``loss(batch)``
    the scalar loss of a batch ``(a, b, labels)`` of two :meth:`SentenceEncoder.tokenize`
    dicts and a (batch,) score tensor. In training the loss function hands ``cat([u, v], -1)``
    on as its outputs (step protocol v2), so VAT with ``predict_fn=lambda m, b: m.predict(b)``
    reuses them as the clean prediction.
    """

    def __init__(self, encoder: SentenceEncoder, loss: str = "cosent", label_max: float = 5.0,
                 scale: float = 20.0) -> None:
        super().__init__()
        if loss not in PAIR_LOSSES:
            raise ValueError(f"expected loss in {PAIR_LOSSES}, got {loss!r}")
        if not (isinstance(label_max, (int, float)) and math.isfinite(label_max)
                and label_max > 0):
            raise ValueError(f"expected label_max > 0, got {label_max!r}")
        self.encoder = encoder
        self.model = encoder.model
        self.kind, self.label_max, self.scale = loss, float(label_max), scale
        self.head = None
        if loss == "sbert":
            self.head = SBERTSoftmaxLoss(encoder.dim, threshold=label_max / 2)

    def forward(self, batch: Sequence[Any]) -> tuple[Tensor, Tensor]:
        a, b = batch[0], batch[1]
        return self.encoder.embed(a), self.encoder.embed(b)  # (batch, dim) each

    def predict(self, batch: Sequence[Any]) -> Tensor:
        """``cat([u, v], -1)``: (batch, 2 dim), the prediction a consistency step compares."""
        return torch.cat(self(batch), dim=-1)

    def loss(self, batch: Sequence[Any]) -> Tensor:
        return self.pair_loss(*self(batch), batch[2])

    def pair_loss(self, u: Tensor, v: Tensor, labels: Tensor) -> Tensor:
        """The loss of vectors ``u``, ``v`` (batch, dim) with scores ``labels`` (batch,)."""
        if self.kind == "cosent":
            return cosent_loss_from_embeddings(u, v, labels, scale=self.scale)
        if self.kind == "sbert":
            return self.head(u, v, labels)
        return cosine_mse_loss(u, v, labels / self.label_max)


def fit_pairs(
    encoder: SentenceEncoder,
    train: Any,
    loss: str = "cosent",
    *,
    epochs: float = 1.0,
    batch_size: int = 32,
    lr: float = 2e-5,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    clip_norm: float | None = 1.0,
    scale: float = 20.0,
    label_max: float | None = None,
    evaluator: Callable[[SentenceEncoder], Any] | Sequence[Pair] | None = None,
    step: Step | None = None,
    flooding: float | None = None,
    seed: int = 0,
    out_dir: Any = None,
    checkpoint_every: int | str = 0,
    resume: bool = False,
    progress: bool = False,
    length_window: int = 0,
) -> TrainResult:
    """Fine-tune ``encoder.model`` in place on scored sentence pairs with a pair loss.

    Args:
        encoder: the :class:`SentenceEncoder` (its pooling, projection and normalisation
            are those trained through).
        train: ``(sentence_a, sentence_b, score)`` pairs (see :func:`pair_rows`), or a
            ``DataLoader`` over them, whose ``dataset`` and ``batch_size`` are used (the
            order is the loop's: seeded, reshuffled each epoch, resumable).
        loss: ``"cosent"``, ``"sbert"`` or ``"cosine-mse"``.
        epochs: passes over ``train`` (fractions allowed).
        batch_size, lr, warmup, weight_decay, clip_norm: as in :class:`kexue.train.TrainConfig`
            (defaults: the post's batch 32 and lr 2e-5, 10% warm-up then linear decay).
        scale: CoSENT's ``lambda``.
        label_max: top of the score scale (default: the largest score in ``train``).
        evaluator: called at the end of every epoch: ``evaluator(encoder)`` returning a
            number or ``{name: number}``, or validation pairs scored by
            :meth:`SentenceEncoder.evaluate` (Spearman x100); logged as ``eval_*``.
        step: a kexue step (:class:`~kexue.train.FGM`, ...) instead of the plain one; its
            clean prediction (for :class:`~kexue.train.VAT`) is ``cat([u, v], -1)``.
        flooding: flood level ``b`` of :func:`kexue.losses.flooding` on each batch's loss.
        seed: seeds the head's initialisation, dropout and the data order.
        out_dir, checkpoint_every, resume: checkpoints and metrics of
            :func:`kexue.train.fit` (``checkpoint_every="epoch"`` for one per epoch).
        progress: a tqdm bar with the time left (on a terminal).
        length_window: batch pairs of similar token count (a + b) within windows of this
            many batches (:func:`kexue.train.loop.length_grouped_batches`): less padding,
            less random batches; 0 (default) keeps uniformly random batches.
    """
    if isinstance(train, torch.utils.data.DataLoader):
        if train.batch_size is None:
            raise ValueError("train: a DataLoader with a batch_sampler has no batch_size to "
                             "use; pass the pairs and batch_size= instead")
        batch_size, train = train.batch_size, train.dataset
    rows = pair_rows(train)
    if label_max is None:
        label_max = max(r[2] for r in rows)
    torch.manual_seed(seed)  # the Sentence-BERT head's initialisation
    model = PairModel(encoder, loss, label_max=label_max, scale=scale)

    def collate(examples: list[Pair]) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        a = encoder.tokenize([e[0] for e in examples])
        b = encoder.tokenize([e[1] for e in examples])
        labels = torch.tensor([e[2] for e in examples], device=a["input_ids"].device)
        return a, b, labels

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, warmup=warmup,
                         weight_decay=weight_decay, clip_norm=clip_norm, seed=seed,
                         progress=progress, eval_every="epoch" if evaluator else 0,
                         log_every=max(1, math.ceil(len(rows) / batch_size) // 5),
                         out_dir=out_dir, checkpoint_every=checkpoint_every, resume=resume,
                         length_window=length_window)
    lengths = None
    if length_window:
        tokenizer = encoder._encoding_tokenizer  # truncated like the batches
        lengths = [len(a.ids) + len(b.ids) for a, b in zip(
            tokenizer.encode_batch([r[0] for r in rows]), tokenizer.encode_batch([r[1] for r in rows]))]

    def loss_fn(m: nn.Module, batch: Any) -> tuple[Tensor, Tensor]:
        u, v = m(batch)
        loss = _unwrap(m).pair_loss(u, v, batch[2])
        return (loss if flooding is None else flood(loss, flooding)), torch.cat([u, v], dim=-1)

    return fit(model, loss_fn, rows, config,
               eval_fn=_eval_fn(encoder, evaluator), step=step or plain_step,
               collate_fn=collate, lengths=lengths)


def _eval_fn(encoder: SentenceEncoder, evaluator: Any) -> Callable | None:
    if evaluator is None:
        return None
    if not callable(evaluator):
        pairs = pair_rows(evaluator, "evaluator")
        return lambda model: encoder.evaluate(pairs)

    def evaluate(model: nn.Module) -> Mapping[str, float]:
        out = evaluator(encoder)
        return out if isinstance(out, Mapping) else {"score": float(out)}

    return evaluate
