"""Recipes of ``kexue train``: fine-tune a local BERT folder on a TSV of your own with the
posts' techniques.

* ``similarity``: lines ``sentence_a<TAB>sentence_b<TAB>score``; a
  :class:`~kexue.embed.SentenceEncoder` trained with CoSENT (kexue.fm/archives/8847,
  default), Sentence-BERT or cosine-MSE; validation Spearman x100; optional BERT-whitening
  to ``N`` dimensions fitted on the training sentences afterwards (kexue.fm/archives/8069),
  saved as a linear layer the encoder and sentence-transformers both apply.
* ``classify``: lines ``text<TAB>label`` with an integer class id (for ``--loss multilabel``
  the ids of the positive classes, comma-separated, possibly none); BERT's pooler and a linear
  head (``BertForSequenceClassification``'s layout) trained with cross-entropy, the focal loss
  (kexue.fm/archives/4733), the multilabel categorical cross-entropy (kexue.fm/archives/7359)
  or logit adjustment (kexue.fm/archives/7615); validation accuracy (micro-F1 for multilabel).

Either one may add FGM (``fgm``, kexue.fm/archives/7234), the gradient penalty (``gp``), VAT
(``vat``, kexue.fm/archives/7466), flooding (``flooding``, kexue.fm/archives/7643) and
recomputation (``recompute``). Training goes through :func:`kexue.train.fit`: a tqdm bar with
the time left, a checkpoint at the end of every epoch (``resume=True`` continues from it) and
an evaluation on the validation file after each epoch; the best epoch's model is kept in the
output folder itself, which :meth:`SentenceEncoder.from_pretrained
<kexue.embed.SentenceEncoder.from_pretrained>`, ``transformers`` and (for similarity)
``sentence_transformers.SentenceTransformer`` load. ``summary.json`` there says what was run
and measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("similarity", "classify")
LOSSES = {"similarity": ("cosent", "sbert", "cosine-mse"),
          "classify": ("cross-entropy", "focal", "multilabel", "logit-adjusted")}
STEP_FLAGS = ("fgm", "gp", "vat")
SUMMARY = "summary.json"

__all__ = ["LOSSES", "TASKS", "RecipeConfig", "read_tsv", "train"]


@dataclass
class RecipeConfig:
    """What ``kexue train TASK`` runs; the fields are its flags (``--batch-size`` is
    ``batch_size``). ``model`` None means the bundled all-MiniLM-L6-v2; ``max_length`` None
    the folder's own."""

    task: str
    data: Path
    out: Path
    valid: Path | None = None
    model: Path | None = None
    loss: str | None = None
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 2e-5
    warmup: float = 0.1
    max_length: int | None = None
    pooling: str = "mean"
    fgm: float | None = None
    gp: float | None = None
    vat: float | None = None
    flooding: float | None = None
    recompute: bool = False
    whitening: int | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        allowed = LOSSES[self.task]
        self.loss = self.loss or allowed[0]
        if self.loss not in allowed:
            other = next(t for t in TASKS if self.loss in LOSSES[t]) if any(
                self.loss in v for v in LOSSES.values()) else None
            where = f" (a {other} loss)" if other else ""
            raise ValueError(f"--loss {self.loss}{where} is not a {self.task} loss; expected one "
                             f"of {', '.join(allowed)}")
        steps = [f for f in STEP_FLAGS if getattr(self, f) is not None]
        if len(steps) > 1:
            raise ValueError(f"--{' and --'.join(steps)} are each a training step; use one of them")
        for name in (*STEP_FLAGS, "lr"):
            _check_number(name, getattr(self, name), positive=True)
        _check_number("flooding", self.flooding, positive=False)
        _check_number("epochs", self.epochs, positive=True)
        if not 0 <= self.warmup < 1 and not float(self.warmup).is_integer():
            raise ValueError(f"--warmup must be a fraction in [0, 1) or a whole number of "
                             f"steps, got {self.warmup!r}")
        for name in ("batch_size", "max_length", "whitening"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, "
                                 f"got {value!r}")
        if self.whitening is not None and self.task != "similarity":
            raise ValueError("--whitening applies to similarity (sentence vectors), not to "
                             f"{self.task}")
        from kexue.embed import ENCODER_POOLINGS

        if self.pooling not in ENCODER_POOLINGS:
            raise ValueError(f"unknown --pooling {self.pooling!r}; expected one of "
                             f"{', '.join(ENCODER_POOLINGS)}")
        self.data, self.out = Path(self.data), Path(self.out)
        self.valid = Path(self.valid) if self.valid is not None else None
        self.model = Path(self.model) if self.model is not None else None


def _check_number(name: str, value: Any, positive: bool) -> None:
    if value is None:
        return
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
        value) or value < 0 or (positive and value == 0)
    if bad:
        raise ValueError(f"--{name} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")


# ----------------------------------------------------------------------------- data


def read_tsv(path: str | os.PathLike, task: str, multilabel: bool = False) -> list[tuple]:
    """The rows of a ``kexue train`` TSV: ``(a, b, score)`` for similarity, ``(text, label)``
    for classify (``label`` a tuple of class ids with ``multilabel``). Blank lines are
    skipped. Raises ``ValueError`` naming the file and line of a row with the wrong number of
    tab-separated columns or a label that is not a number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    width = 3 if task == "similarity" else 2
    layout = "sentence_a, sentence_b, score" if width == 3 else (
        "text, comma-separated class ids" if multilabel else "text, class id")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            columns = line.split("\t")
            if len(columns) != width:
                raise ValueError(f"{path}:{number}: expected {width} tab-separated columns "
                                 f"({layout}), got {len(columns)}")
            where = f"{path}:{number}"
            if task == "similarity":
                rows.append((columns[0], columns[1], _score(columns[2], where)))
            elif multilabel:
                ids = [c.strip() for c in columns[1].split(",") if c.strip()]
                rows.append((columns[0], tuple(_class_id(c, where) for c in ids)))
            else:
                rows.append((columns[0], _class_id(columns[1], where)))
    if not rows:
        raise ValueError(f"{path} holds no example")
    return rows


def _score(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: the score must be a number, got {text!r} (a header line? "
                         "remove it)") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: the score must be finite, got {text!r}")
    return value


def _class_id(text: str, where: str) -> int:
    text = text.strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{where}: the label must be a class id (a whole number), got "
                         f"{text!r} (a header line? remove it)")
    if int(text) < 0:
        raise ValueError(f"{where}: class ids start at 0, got {text}")
    return int(text)


# ----------------------------------------------------------------------------- models


class SequenceClassifier(nn.Module):
    """``BertForSequenceClassification``: ``classifier(dropout(pooler_output))``.

    Args:
        bert: a :class:`kexue.models.Bert` with a pooler.
        num_labels: number of classes (outputs).
    """

    def __init__(self, bert: nn.Module, num_labels: int) -> None:
        super().__init__()
        self.bert = bert
        hidden = bert.config.hidden_size
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(hidden, num_labels)
        nn.init.normal_(self.classifier.weight, std=bert.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.bert.get_input_embeddings()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, labels: Any = None) -> Tensor:
        """Logits (batch, num_labels); ``labels`` is accepted and ignored."""
        pooled = self.bert(input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).pooler_output  # (batch, hidden)
        return self.classifier(self.dropout(pooled))

    def save_pretrained(self, folder: Path, problem_type: str) -> None:
        """``BertForSequenceClassification``'s files: ``bert.*`` and ``classifier.*``."""
        from kexue.models.hf import bert_key_map, save_hf_state_dict, to_hf_state_dict

        config = self.bert.config
        state = to_hf_state_dict(self.bert.state_dict(), bert_key_map(config, pooler=True,
                                                                      mlm=False))
        state = {"bert." + k: v for k, v in state.items()}
        state.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        save_hf_state_dict(state, folder)
        n = self.classifier.out_features
        config.to_json(folder, architectures=["BertForSequenceClassification"],
                       id2label={str(i): f"LABEL_{i}" for i in range(n)},
                       label2id={f"LABEL_{i}": i for i in range(n)}, problem_type=problem_type)


def _bert_with_pooler(folder: Path, recompute: bool) -> nn.Module:
    """kexue's Bert from ``folder``, with a fresh pooler if the checkpoint has none."""
    from kexue.models import Bert

    model = Bert.from_pretrained(folder, recompute=recompute)
    if model.pooler is None:
        model.pooler = nn.Linear(model.config.hidden_size, model.config.hidden_size)
        model._init_weights(model.pooler)
    return model


def _step(config: RecipeConfig, model: nn.Module, predict_fn: Callable | None = None,
          divergence: str = "kl") -> Any:
    from kexue.train import FGM, VAT, GradientPenaltyStep

    if config.fgm is not None:
        return FGM(model, config.fgm)
    if config.gp is not None:
        return GradientPenaltyStep(model, config.gp)
    if config.vat is not None:
        return VAT(model, epsilon=config.vat, predict_fn=predict_fn, divergence=divergence)
    return None


# ----------------------------------------------------------------------------- runs


class _Best:
    """The best validation score so far, kept in ``out/best.json`` (so a resumed run knows
    it), and the model saved into ``out`` whenever it improves."""

    def __init__(self, out: Path, metric: str, save: Callable[[Path], None]) -> None:
        self.out, self.metric, self.save = out, metric, save
        path = out / "best.json"
        self.record = json.loads(path.read_text()) if path.is_file() else None
        self.epoch = self.record["epoch"] if self.record else 0

    def update(self, scores: dict[str, float], epoch: int, log: Callable[[str], None]) -> None:
        value = scores[self.metric]
        better = self.record is None or value > self.record[self.metric]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
        log(f"epoch {epoch}: valid {shown}" + (" (best so far, saved)" if better else ""))
        if better:
            save_into(self.out, self.save)
            self.record = {"epoch": epoch, **scores}
            (self.out / "best.json").write_text(json.dumps(self.record, indent=2) + "\n")


def save_into(out: Path, save: Callable[[Path], None]) -> None:
    """``save(folder)`` into a temporary folder, then move its files into ``out``, so that a
    crash while writing leaves the previous model whole."""
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=out))
    try:
        save(tmp)
        for path in sorted(tmp.rglob("*")):
            target = out / path.relative_to(tmp)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train(config: RecipeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a recipe; returns (and writes to ``out/summary.json``) what was run and measured."""
    from kexue.train import seed_everything

    config.out.mkdir(parents=True, exist_ok=True)
    if not config.resume:  # a fresh run: an earlier run's best score must not outrank it
        (config.out / "best.json").unlink(missing_ok=True)
    start = time.perf_counter()
    seed_everything(config.seed)  # the new head's initialisation
    if config.task == "similarity":
        measured = _similarity(config, log)
    else:
        measured = _classify(config, log)
    summary = {"config": {k: str(v) if isinstance(v, Path) else v
                          for k, v in dataclasses.asdict(config).items()},
               **measured, "seconds": time.perf_counter() - start}
    (config.out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _train_config(config: RecipeConfig, n_examples: int, has_eval: bool):
    from kexue.train import TrainConfig

    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       warmup=config.warmup, seed=config.seed, progress=config.progress,
                       eval_every="epoch" if has_eval else 0, checkpoint_every="epoch",
                       log_every=max(1, math.ceil(n_examples / config.batch_size) // 10),
                       out_dir=config.out, resume=config.resume)


def _epoch_counter(config: RecipeConfig) -> Callable[[], int]:
    """Counts evaluations, continuing from the checkpoint's history on a resume."""
    done = 0
    metrics = config.out / "metrics.jsonl"
    if config.resume and metrics.is_file():
        done = sum(1 for line in metrics.read_text().splitlines()
                   if any(k.startswith("eval_") for k in json.loads(line)))

    def next_epoch() -> int:
        nonlocal done
        done += 1
        return done

    return next_epoch


def _similarity(config: RecipeConfig, log: Callable[[str], None]) -> dict[str, Any]:
    from kexue.embed import SentenceEncoder, Whitening, fit_pairs

    rows = read_tsv(config.data, "similarity")
    valid = read_tsv(config.valid, "similarity") if config.valid else None
    folder = config.model
    encoder = SentenceEncoder.from_pretrained(folder, pooling=config.pooling,
                                              max_length=config.max_length, backend="kexue",
                                              recompute=config.recompute)
    best = _Best(config.out, "spearman", encoder.save_pretrained)
    next_epoch = _epoch_counter(config)

    def evaluate(enc: SentenceEncoder) -> dict[str, float]:
        scores = enc.evaluate(valid)
        best.update(scores, next_epoch(), log)
        return scores

    step = _step(config, encoder.model, predict_fn=lambda m, b: _unwrap(m).predict(b),
                 divergence="mse")
    log(f"similarity: {len(rows)} training pairs" + (f", {len(valid)} validation pairs"
                                                      if valid else "") + f"; loss {config.loss}")
    fit_pairs(encoder, rows, config.loss, epochs=config.epochs, batch_size=config.batch_size,
              lr=config.lr, warmup=config.warmup, evaluator=evaluate if valid else None,
              step=step, flooding=config.flooding, seed=config.seed, out_dir=config.out,
              checkpoint_every="epoch", resume=config.resume, progress=config.progress)
    if valid is None:
        save_into(config.out, encoder.save_pretrained)
    measured: dict[str, Any] = {"best": best.record}
    if config.whitening is not None:
        encoder = SentenceEncoder.from_pretrained(config.out, backend="kexue")
        sentences = sorted({s for r in rows for s in r[:2]})
        whitening = Whitening(n_components=config.whitening).fit(
            encoder.encode(sentences, progress=None if config.progress else False))
        encoder.projection = whitening.to_linear()
        save_into(config.out, encoder.save_pretrained)
        if valid:
            measured["valid_whitened"] = encoder.evaluate(valid)
            log(f"whitening to {config.whitening} dimensions: valid spearman "
                f"{measured['valid_whitened']['spearman']:.2f}")
    return measured


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _classify(config: RecipeConfig, log: Callable[[str], None]) -> dict[str, Any]:
    from kexue.embed import SentenceEncoder
    from kexue.train import fit, plain_step

    multilabel = config.loss == "multilabel"
    rows = read_tsv(config.data, "classify", multilabel)
    valid = read_tsv(config.valid, "classify", multilabel) if config.valid else None
    num_labels = 1 + max(max(_labels(r[1]), default=0) for r in rows + (valid or []))
    if num_labels < 2:
        raise ValueError(f"{config.data}: every label is 0; expected at least two classes")
    folder = config.model
    if folder is None:
        from kexue.data import minilm_path

        folder = minilm_path()
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"expected tokenizer.json in the model folder {folder}, not found")
    from tokenizers import Tokenizer

    from kexue.embed.encoder import _default_max_length

    model = SequenceClassifier(_bert_with_pooler(folder, config.recompute), num_labels)
    tokens = SentenceEncoder(model.bert, Tokenizer.from_file(str(folder / "tokenizer.json")),
                             max_length=config.max_length or _default_max_length(folder))
    tokens.source = folder
    loss_of = _classification_loss(config.loss, rows, num_labels)
    problem_type = "multi_label_classification" if multilabel else "single_label_classification"

    def save(target: Path) -> None:
        model.save_pretrained(target, problem_type)
        tokens.save_tokenizer(target)

    best = _Best(config.out, "f1" if multilabel else "accuracy", save)
    next_epoch = _epoch_counter(config)

    def collate(examples: list[tuple]) -> dict[str, Tensor]:
        batch = tokens.tokenize([e[0] for e in examples])
        batch["labels"] = _targets([e[1] for e in examples], num_labels, multilabel,
                                   batch["input_ids"].device)
        return batch

    def loss_fn(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = m(**batch)  # (batch, num_labels)
        loss = loss_of(logits, batch["labels"])
        if config.flooding is not None:
            from kexue.losses import flooding

            loss = flooding(loss, config.flooding)
        return loss, logits

    def evaluate(m: nn.Module) -> dict[str, float]:
        scores = _classification_scores(m, tokens, valid, num_labels, multilabel,
                                        config.batch_size)
        best.update(scores, next_epoch(), log)
        return scores

    log(f"classify: {len(rows)} training texts, {num_labels} classes" + (
        f", {len(valid)} validation texts" if valid else "") + f"; loss {config.loss}")
    fit(model, loss_fn, rows, _train_config(config, len(rows), valid is not None),
        eval_fn=evaluate if valid else None, step=_step(config, model) or plain_step,
        collate_fn=collate)
    if valid is None:
        save_into(config.out, save)
    return {"best": best.record, "num_labels": num_labels}


def _labels(label: int | tuple[int, ...]) -> tuple[int, ...]:
    return label if isinstance(label, tuple) else (label,)


def _targets(labels: list, num_labels: int, multilabel: bool, device: torch.device) -> Tensor:
    if not multilabel:
        return torch.tensor(labels, device=device)  # (batch,) class ids
    dense = torch.zeros(len(labels), num_labels, device=device)  # (batch, num_labels) 0/1
    for row, ids in enumerate(labels):
        dense[row, list(ids)] = 1.0
    return dense


def _classification_loss(name: str, rows: list[tuple], num_labels: int
                         ) -> Callable[[Tensor, Tensor], Tensor]:
    from kexue.losses import (
        LogitAdjustedLoss,
        class_priors,
        focal_loss,
        multilabel_categorical_crossentropy,
    )

    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, gamma=2.0)
    if name == "multilabel":
        return multilabel_categorical_crossentropy
    if name == "logit-adjusted":
        labels = [r[1] for r in rows]
        smoothing = 0.0 if len(set(labels)) == num_labels else 1.0  # a class seen only in valid
        return LogitAdjustedLoss(class_priors(labels, num_labels, smoothing), tau=1.0)
    return F.cross_entropy


def _classification_scores(model: nn.Module, tokens: Any, rows: list[tuple], num_labels: int,
                           multilabel: bool, batch_size: int) -> dict[str, float]:
    """Accuracy and macro-F1 x100 (single label: argmax), or exact-match accuracy and
    micro-F1 x100 (multilabel: the classes scored above 0)."""
    predictions = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        logits = model(**tokens.tokenize([r[0] for r in chunk]))
        predictions.append(logits > 0 if multilabel else logits.argmax(-1))
    predicted = torch.cat(predictions).cpu()
    gold = _targets([r[1] for r in rows], num_labels, multilabel, torch.device("cpu"))
    if multilabel:
        gold = gold.bool()
        tp = (predicted & gold).sum().item()
        f1 = 2 * tp / max(1, predicted.sum().item() + gold.sum().item())
        exact = (predicted == gold).all(-1).float().mean().item()
        return {"f1": 100 * f1, "accuracy": 100 * exact}
    accuracy = (predicted == gold).float().mean().item()
    f1s = []
    for c in range(num_labels):
        tp = ((predicted == c) & (gold == c)).sum().item()
        denominator = (predicted == c).sum().item() + (gold == c).sum().item()
        if denominator:
            f1s.append(2 * tp / denominator)
    return {"accuracy": 100 * accuracy, "macro_f1": 100 * sum(f1s) / len(f1s)}
