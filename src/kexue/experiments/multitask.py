"""T21 multi-task loss weighting: sentiment classification + STS regression on one encoder.

Post: 多任务学习漫谈（一）：以损失之名 (2022-01-18, https://kexue.fm/archives/8870).
The plain sum sum_i L_i of losses with different units and magnitudes is "meaningless"; the
post derives scale-invariant weightings -- by the initial loss, by the loss of the prior
model, by the loss itself ("real-time", L / sg(L), whose gradient is that of sum_i log L_i
and of the geometric mean) -- and says of the real-time rule that "many informal
experiments show it is a quite good baseline in most cases". It reports no experiment.

What is tested. That claim, in a setting where it can lose: the tasks keep their natural
units (no loss inflated by hand, which makes the plain sum fail by construction), so equal
weights are a sensible competitor, while the real-time rule's weights 1/L_i shift the
shared encoder towards whichever task currently has the smaller loss.

* ``sentiment``: binary Chinese sentiment (bert4keras set), cross-entropy (~0.69 at start,
  ~0.3 once learnt); metric: test accuracy (%);
* ``sts``: Chinese STS-B, regression of the gold score (0..5) from [u, v, |u - v|, u * v]
  with the mean squared error (~8 at start, prior loss = label variance ~2); metric: test
  Spearman x 100.

One shared encoder -- the character + hashed-bigram bag of
:class:`~kexue.experiments._shared.classification.NgramBagClassifier` followed by a shared
tanh layer -- and a head per task; each step sees one batch of each task. Strategies of
:class:`~kexue.losses.MultiTaskLoss`: ``fixed`` (the plain sum, equal weights), ``initial``
(normaliser: the first batch's losses), ``prior`` (label entropy for CE, label variance for
MSE), ``realtime`` (L / sg(L); ``log`` and ``gmean`` with gamma = 0 give the same gradient
direction, a unit test checks it, so they are not trained again) and ``uncertainty``
(Kendall et al., learned log-variances; not in the post, the usual learned alternative).

Verdict: the real-time rule is "a good baseline" when it is not worse than the plain sum by
more than :data:`TOLERANCE` points on either task (paired over seeds). The other rules are
reported beside it.

Training: AdamW, lr 1e-2 with warm-up and linear decay, gradient clipping at norm 1 (the
:func:`kexue.train.fit` defaults).
"""

from __future__ import annotations

import random
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from kexue.data import CharTokenizer
from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.losses import MultiTaskLoss

STRATEGIES = ("fixed", "initial", "prior", "realtime", "uncertainty")
TASKS = ("sentiment", "sts")
METRIC = {"sentiment": "accuracy", "sts": "spearman"}
TOLERANCE = 2.0  # points of accuracy / Spearman x 100 that "not worse" allows


# ----------------------------------------------------------------------------- data
class TwoTaskData(Dataset):
    """Item i = (sentiment example i mod n1) + (STS pair i mod n2), as one flat tuple:
    ``(ids, mask, label, ids_a, mask_a, ids_b, mask_b, score)``; length max(n1, n2)."""

    def __init__(self, sentiment: tuple[Tensor, ...], sts: tuple[Tensor, ...]) -> None:
        self.sentiment, self.sts = sentiment, sts
        self.n1, self.n2 = len(sentiment[0]), len(sts[0])
        if self.n1 == 0 or self.n2 == 0:
            raise ValueError(f"both tasks need examples, got {self.n1} and {self.n2}")

    def __len__(self) -> int:
        return max(self.n1, self.n2)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        a = tuple(t[i % self.n1] for t in self.sentiment)
        b = tuple(t[i % self.n2] for t in self.sts)
        return a + b


def encode_sentiment(tok: CharTokenizer, rows: list[tuple[str, int]], max_length: int):
    enc = tok.batch_encode([t for t, _ in rows], max_length=max_length)
    return enc["input_ids"], enc["attention_mask"], torch.tensor([y for _, y in rows])


def encode_sts(tok: CharTokenizer, rows: list[tuple[str, str, float]], max_length: int):
    a = tok.batch_encode([r[0] for r in rows], max_length=max_length)
    b = tok.batch_encode([r[1] for r in rows], max_length=max_length)
    score = torch.tensor([r[2] for r in rows], dtype=torch.float32)
    return a["input_ids"], a["attention_mask"], b["input_ids"], b["attention_mask"], score


def _trim(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    n = max(1, int(mask.sum(1).max()))
    return ids[:, :n], mask[:, :n]


# ----------------------------------------------------------------------------- model
class SharedEncoderTwoHeads(nn.Module):
    """Bag-of-n-grams encoder + shared tanh layer; a sentiment head and an STS head.

    The :class:`MultiTaskLoss` is a submodule so that ``uncertainty``'s learned
    log-variances are trained with the model.
    """

    def __init__(self, vocab_size: int, mtl: MultiTaskLoss, hidden: int = 64) -> None:
        super().__init__()
        from kexue.experiments._shared.classification import NgramBagClassifier

        self.bag = NgramBagClassifier(vocab_size, 2, hidden=hidden)  # its head: sentiment
        self.shared = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.sts_head = nn.Linear(4 * hidden, 1)
        self.mtl = mtl

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        ids, mask = _trim(ids, mask)
        return self.shared(self.bag.encode(ids, mask))  # (batch, hidden)

    def sentiment_logits(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.bag.head(self.bag.dropout(self.encode(ids, mask)))  # (batch, 2)

    def sts_score(self, ids_a: Tensor, mask_a: Tensor, ids_b: Tensor, mask_b: Tensor) -> Tensor:
        u, v = self.encode(ids_a, mask_a), self.encode(ids_b, mask_b)
        features = torch.cat([u, v, (u - v).abs(), u * v], -1)  # (batch, 4 hidden)
        return self.sts_head(features).squeeze(-1)  # (batch,)

    def task_losses(self, batch: tuple[Tensor, ...]) -> Tensor:
        ids, mask, label, ids_a, mask_a, ids_b, mask_b, score = batch
        ce = F.cross_entropy(self.sentiment_logits(ids, mask), label)
        mse = F.mse_loss(self.sts_score(ids_a, mask_a, ids_b, mask_b), score)
        return torch.stack([ce, mse])  # (2,)


def multitask_loss(model: SharedEncoderTwoHeads, batch: tuple[Tensor, ...]) -> Tensor:
    return model.mtl(model.task_losses(batch).unbind())


def make_mtl(strategy: str, prior_losses: tuple[float, float]) -> MultiTaskLoss:
    """A ``MultiTaskLoss``; ``single-<task>`` is ``fixed`` with that task's weight only."""
    if strategy.startswith("single-"):
        task = strategy.removeprefix("single-")
        return MultiTaskLoss("fixed", 2, weights=[float(t == task) for t in TASKS])
    if strategy == "prior":
        return MultiTaskLoss("prior", 2, prior_losses=prior_losses)
    if strategy == "gmean":
        return MultiTaskLoss("gmean", 2, gamma=0.0)  # the geometric mean
    return MultiTaskLoss(strategy, 2)


def prior_losses(labels: Tensor, scores: Tensor) -> tuple[float, float]:
    """Loss of the model that predicts the prior: label entropy (CE), label variance (MSE)."""
    p = torch.bincount(labels).double() / len(labels)
    p = p[p > 0]
    return float(-(p * p.log()).sum()), float(scores.double().var(unbiased=False))


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman correlation x 100; 0 when the predictions are constant (no ranking at all)."""
    from scipy.stats import spearmanr

    x, y = x.double().numpy(), y.double().numpy()
    if len(x) < 2 or (x == x[0]).all():
        return 0.0
    return 100 * float(spearmanr(x, y).statistic)


@torch.no_grad()
def evaluate(model: SharedEncoderTwoHeads, sentiment: tuple[Tensor, ...],
             sts: tuple[Tensor, ...], batch_size: int = 256) -> dict[str, float]:
    was_training = model.training
    model.eval()
    ids, mask, label = sentiment
    pred = torch.cat([model.sentiment_logits(ids[i:i + batch_size], mask[i:i + batch_size])
                      for i in range(0, len(ids), batch_size)]).argmax(-1)
    ia, ma, ib, mb, score = sts
    out = torch.cat([model.sts_score(ia[i:i + batch_size], ma[i:i + batch_size],
                                     ib[i:i + batch_size], mb[i:i + batch_size])
                     for i in range(0, len(ia), batch_size)])
    model.train(was_training)
    return {"accuracy": 100 * (pred == label).double().mean().item(),
            "spearman": spearman(out, score)}


# ----------------------------------------------------------------------------- experiment
def results_table(stats: Stats) -> str:
    lines = ["| strategy | sentiment accuracy | STS Spearman x100 | scale-invariant |",
             "|---|---|---|---|"]
    for s in STRATEGIES:
        inv = {"fixed": "no", "uncertainty": "at the optimum"}
        lines.append(f"| {s} | {stats[f'{s}/sentiment']} | {stats[f'{s}/sts']} | "
                     f"{inv.get(s, 'yes')} |")
    return "\n".join(lines)


@register
class MultiTaskWeighting(Experiment):
    name = "multitask"
    techniques = ("T21",)
    datasets = ("sentiment", "stsb-zh")
    minutes: ClassVar[dict[str, float]] = {"quick": 1.5, "full": 12}
    seeds = 5  # 3 left the STS comparison within noise
    claim = Claim(
        post="多任务学习漫谈（一）：以损失之名",
        date="2022-01-18",
        url="https://kexue.fm/archives/8870",
        statement="Real-time loss normalisation, L = sum_i L_i / sg(L_i) (the gradient of "
        "sum_i log L_i), is 'a quite good baseline in most cases' for weighting the losses "
        "of several tasks.",
        condition="Sentiment classification (CE) + STS-B-zh regression (MSE on the 0..5 "
        f"score) on one shared encoder, both in their natural units: real-time weighting is "
        f"not worse than the plain sum (equal weights) by more than {TOLERANCE:g} points on "
        "either task (sentiment accuracy, STS Spearman x 100; paired over seeds, both must "
        "hold). initial, prior and uncertainty weighting are reported, not judged.",
        reported="No experiment in the post; the author: real-time normalisation 'in many "
        "informal experiments is a quite good baseline in most cases' (很多“民间实验”表明，"
        "式(5)确实在多数情况下都可以作为一个相当不错的baseline).",
        fidelity="substituted",
        post_setting="None stated: the author's informal multi-task experiments (tasks, "
        "model and numbers not given).",
        our_setting="Binary sentiment (4,000 train reviews / 2,111 test) + STS-B-zh (5,231 "
        "train / 1,361 test pairs) on a from-scratch character + bigram bag encoder with a "
        "shared tanh layer, AdamW lr 1e-2, 400 steps of one batch of 32 per task; 5 seeds.",
        substitution="The post names no setting; a classification + regression pair (the "
        "mix the post uses to motivate normalising) on Chinese data with a small encoder "
        "trained from scratch fits the time budget.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import load_sentiment, load_stsb
        from kexue.train import TrainConfig, fit

        rng = random.Random(0)  # fixed data subsets; seeds vary the model and batches
        sent_train = load_sentiment("train")
        sent_train = rng.sample(sent_train, min(len(sent_train), ctx.pick(4000, 16883, smoke=300)))
        sent_test = load_sentiment("test")
        sts_train, sts_test = load_stsb("train", lang="zh"), load_stsb("test", lang="zh")
        if ctx.scale == "smoke":
            sts_train, sent_test, sts_test = sts_train[:300], sent_test[:200], sts_test[:200]
        tok = CharTokenizer.fit([t for t, _ in sent_train] + [x for r in sts_train for x in r[:2]])
        train = TwoTaskData(encode_sentiment(tok, sent_train, 128), encode_sts(tok, sts_train, 32))
        test_sent, test_sts = encode_sentiment(tok, sent_test, 128), encode_sts(tok, sts_test, 32)
        priors = prior_losses(train.sentiment[2], train.sts[4])
        steps = ctx.pick(400, 2000, smoke=4)
        first = tuple(torch.stack(x) for x in zip(*(train[i] for i in range(256))))

        metrics: dict[str, float] = {}
        for strategy in STRATEGIES:
            torch.manual_seed(ctx.seed)
            model = SharedEncoderTwoHeads(tok.vocab_size, make_mtl(strategy, priors))
            config = TrainConfig(steps=steps, batch_size=32, lr=1e-2, seed=ctx.seed, warmup=0.1,
                                 progress=False, log_every=steps)
            fit(model, multitask_loss, train, config)
            result = evaluate(model, test_sent, test_sts)
            for task in TASKS:
                metrics[f"{strategy}/{task}"] = result[METRIC[task]]
            if strategy == "uncertainty":
                for task, s in zip(TASKS, model.mtl.log_vars.tolist()):
                    metrics[f"uncertainty/log_var/{task}"] = s
            with torch.no_grad():
                model.eval()
                for task, loss in zip(TASKS, model.task_losses(first).tolist()):
                    metrics[f"{strategy}/train_loss/{task}"] = loss
        note = (f"sentiment: {len(sent_train)} train / {len(sent_test)} test texts; STS-B-zh: "
                f"{len(sts_train)} train / {len(sts_test)} test pairs (score 0..5); prior "
                f"losses (CE, MSE) = ({priors[0]:.3f}, {priors[1]:.3f}); {steps} steps, one "
                "batch of 32 per task each.")
        return Run(metrics, notes=[note])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import grouped_bars

        groups = {s: {t: stats[f"{s}/{t}"].mean for t in TASKS} for s in STRATEGIES}
        errors = {s: {t: stats[f"{s}/{t}"].std for t in TASKS} for s in STRATEGIES}
        path = ctx.figure("multitask.png")
        grouped_bars(groups, path, ylabel="accuracy % / Spearman x100", errors=errors,
                     title="Sentiment (CE) + STS-B-zh (MSE), shared encoder, natural units")
        losses = ", ".join(f"{t} {stats[f'fixed/train_loss/{t}']}" for t in TASKS)
        lv = ", ".join(f"{t} {stats[f'uncertainty/log_var/{t}']}" for t in TASKS)
        notes = [(f"Training losses at the end (plain sum, first 256 training items): {losses}; "
                  "the real-time rule weights each task's gradient by 1 / its loss."),
                 (f"uncertainty: learned log-variances s_i at the end (start 0; the optimum is "
                  f"log L_i): {lv}.")]
        return Run({}, figures=[path.name], tables=[results_table(stats)], notes=notes)

    def checks(self, stats: Stats) -> list[Check]:
        return [stats.not_worse(f"realtime/{t}", f"fixed/{t}", TOLERANCE,
                                f"real-time L/sg(L) >= plain sum - {TOLERANCE:g} on {t} "
                                f"({METRIC[t]})")
                for t in TASKS]
