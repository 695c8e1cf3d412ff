"""T21 multi-task loss weighting: two tasks of very different loss scale on one encoder.

Post: 多任务学习漫谈（一）：以损失之名 (2022-01-18, https://kexue.fm/archives/8870).
The plain sum sum_i L_i lets a task whose loss is naturally 1000x larger dictate the
shared parameters' gradient; normalising each loss by its initial value, by the loss of
the prior model, by its own detached value ("real-time", L / sg(L), the author's
recommended baseline), or taking sum_i log L_i or the geometric mean makes the update
invariant to each task's scale. The post reports no experiment.

Setting (ours). One shared encoder -- the character + hashed-bigram bag of
:class:`~kexue.experiments._shared.classification.NgramBagClassifier` followed by a shared tanh layer --
and two heads:

* ``sentiment``: binary Chinese sentiment (bert4keras set), cross-entropy (loss ~0.7 at
  start); metric: test accuracy (%);
* ``sts``: Chinese STS-B (sentence pairs), regression of the gold score in units of
  1/1000 (target = 1000 x score) from [u, v, |u - v|, u * v] with the mean squared error
  (loss ~10^7 at start). The head's linear output is read in score units and multiplied by
  1000, so the task itself is exactly as easy as the plain regression -- only its loss is
  10^6 times larger (with a raw linear output, AdamW at lr 1e-2 cannot even reach the
  target's magnitude in a few hundred steps, and every strategy fails the task alike).
  Metric: test Spearman x 100.

Each step sees one batch of each task. Strategies: every one of ``MultiTaskLoss`` --
``fixed`` (plain sum, weights 1), ``initial``, ``prior`` (label entropy for CE, label
variance for MSE), ``realtime``, ``log``, ``gmean`` (gamma = 0, geometric mean),
``uncertainty`` (Kendall et al., learned log-variances, trained with the model) -- plus
each task trained alone (``single``) as the reference. The "worse task" is the one the
plain sum hurts most relative to its single-task model (in metric points); the checks ask
that each scale-invariant strategy beats the plain sum on it. ``uncertainty`` is only
scale-invariant at the optimum of its learned variances (log 10^7 ~ 16 away from their
start), so it is reported but not part of the verdict.

Training: AdamW, lr 1e-2 with warm-up and linear decay, gradient clipping at norm 1 (the
:func:`kexue.train.fit` defaults); clipping is one more way a huge loss starves the
small one, since it rescales every gradient by the norm the large task sets.
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

STRATEGIES = ("fixed", "initial", "prior", "realtime", "log", "gmean", "uncertainty")
SCALE_INVARIANT = ("initial", "prior", "realtime", "log", "gmean")
TASKS = ("sentiment", "sts")
STS_SCALE = 1000.0
METRIC = {"sentiment": "accuracy", "sts": "spearman"}


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
    score = torch.tensor([STS_SCALE * r[2] for r in rows], dtype=torch.float32)
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
        return STS_SCALE * self.sts_head(features).squeeze(-1)  # (batch,) in target units

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
        return MultiTaskLoss("gmean", 2, gamma=0.0)
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
def worse_task(stats: Stats) -> str:
    """The task the plain sum hurts most relative to training it alone (metric points)."""
    drop = {t: stats[f"single/{t}"].mean - stats[f"fixed/{t}"].mean for t in TASKS}
    return max(TASKS, key=lambda t: (drop[t], t))


def results_table(stats: Stats) -> str:
    lines = ["| strategy | sentiment accuracy | STS Spearman x100 | scale-invariant |",
             "|---|---|---|---|"]
    for s in ("single", *STRATEGIES):
        inv = {"single": "(each task alone)", "fixed": "no", "uncertainty": "at the optimum"}
        lines.append(f"| {s} | {stats[f'{s}/sentiment']} | {stats[f'{s}/sts']} | "
                     f"{inv.get(s, 'yes')} |")
    return "\n".join(lines)


@register
class MultiTaskWeighting(Experiment):
    name = "multitask"
    techniques = ("T21",)
    datasets = ("sentiment", "stsb-zh")
    minutes: ClassVar[dict[str, float]] = {"quick": 8, "full": 25}
    claim = Claim(
        post="多任务学习漫谈（一）：以损失之名",
        date="2022-01-18",
        url="https://kexue.fm/archives/8870",
        statement="Scale-invariant weightings of task losses (initial-loss or prior-loss "
        "normalisation, real-time L/sg(L), sum of logs, geometric mean) keep a task with a "
        "naturally large loss from drowning the others, unlike the plain sum.",
        condition="Sentiment CE (~0.7) + STS-B-zh regression of 1000 x score (MSE ~10^7) on "
        "one shared encoder: on the task the plain sum hurts most (vs training it alone), "
        "each of initial, prior, realtime, log and gmean(gamma=0) beats the plain sum.",
        reported="No experiment in the post; the author: real-time normalisation is 'a very "
        "good baseline in most cases' in his informal experiments.",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import load_sentiment, load_stsb
        from kexue.train import TrainConfig, fit

        rng = random.Random(0)  # fixed data subsets; seeds vary the model and batches
        sent_train = load_sentiment("train")
        sent_train = rng.sample(sent_train, min(len(sent_train), ctx.pick(8000, 16883, smoke=300)))
        sent_test = load_sentiment("test")
        sts_train, sts_test = load_stsb("train", lang="zh"), load_stsb("test", lang="zh")
        if ctx.scale == "smoke":
            sts_train, sent_test, sts_test = sts_train[:300], sent_test[:200], sts_test[:200]
        tok = CharTokenizer.fit([t for t, _ in sent_train] + [x for r in sts_train for x in r[:2]])
        train = TwoTaskData(encode_sentiment(tok, sent_train, 128), encode_sts(tok, sts_train, 32))
        test_sent, test_sts = encode_sentiment(tok, sent_test, 128), encode_sts(tok, sts_test, 32)
        priors = prior_losses(train.sentiment[2], train.sts[4])
        steps = ctx.pick(800, 2500, smoke=4)

        metrics: dict[str, float] = {}
        for strategy in ("single-sentiment", "single-sts", *STRATEGIES):
            torch.manual_seed(ctx.seed)
            model = SharedEncoderTwoHeads(tok.vocab_size, make_mtl(strategy, priors))
            config = TrainConfig(steps=steps, batch_size=32, lr=1e-2, seed=ctx.seed, warmup=0.1,
                                 progress=False, log_every=steps)
            fit(model, multitask_loss, train, config)
            result = evaluate(model, test_sent, test_sts)
            if strategy.startswith("single-"):
                task = strategy.removeprefix("single-")
                metrics[f"single/{task}"] = result[METRIC[task]]
            else:
                for task in TASKS:
                    metrics[f"{strategy}/{task}"] = result[METRIC[task]]
            if strategy == "uncertainty":
                for task, s in zip(TASKS, model.mtl.log_vars.tolist()):
                    metrics[f"uncertainty/log_var/{task}"] = s
        for task in TASKS:
            for s in STRATEGIES[1:]:
                metrics[f"gain/{task}/{s}"] = metrics[f"{s}/{task}"] - metrics[f"fixed/{task}"]
        note = (f"sentiment: {len(sent_train)} train / {len(sent_test)} test texts; STS-B-zh: "
                f"{len(sts_train)} train / {len(sts_test)} test pairs, target = score x "
                f"{STS_SCALE:g}; prior losses (CE, MSE) = ({priors[0]:.3f}, {priors[1]:.3g}); "
                f"{steps} steps, one batch of 32 per task each.")
        return Run(metrics, notes=[note])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import grouped_bars

        names = ("single", *STRATEGIES)
        groups = {s: {t: stats[f"{s}/{t}"].mean for t in TASKS} for s in names}
        errors = {s: {t: stats[f"{s}/{t}"].std for t in TASKS} for s in names}
        path = ctx.figure("multitask.png")
        grouped_bars(groups, path, ylabel="accuracy % / Spearman x100", errors=errors,
                     title="Sentiment (CE) + STS-B-zh (MSE on score x1000), shared encoder")
        worse = worse_task(stats)
        drops = ", ".join(f"{t}: {stats[f'single/{t}'].mean - stats[f'fixed/{t}'].mean:+.2f}"
                          for t in TASKS)
        lv = ", ".join(f"{t} {stats[f'uncertainty/log_var/{t}']}" for t in TASKS)
        notes = [f"Plain sum vs each task alone (points lost): {drops}; worse task: {worse}.",
                 (f"uncertainty: learned log-variances s_i at the end (start 0; the optimum is "
                 f"log L_i): {lv}.")]
        return Run({}, figures=[path.name], tables=[results_table(stats)], notes=notes)

    def checks(self, stats: Stats) -> list[Check]:
        worse = worse_task(stats)
        return [stats.above(f"gain/{worse}/{s}", 0.0,
                            f"{s} > plain sum on the worse task ({worse}, {METRIC[worse]})")
                for s in SCALE_INVARIANT]
