"""T26 logit adjustment (and the T22 imbalance losses) on long-tailed Chinese text classification.

Posts: 通过互信息思想来缓解类别不平衡问题 (2020-07-19, https://kexue.fm/archives/7615) for
logit adjustment; 从loss的硬截断、软化到focal loss (2017-12-25, kexue.fm/archives/4733) and
再谈类别不平衡问题 (2020-08-31, kexue.fm/archives/7708) for focal loss, hard truncation and
class weights.

Setting. The post has no experiment; its numbers are those of Menon et al. (ICLR 2021) on
CIFAR-LT with an "EXP-100" profile and a ResNet-32. Here the same profile is cut from
Chinese text sets, each test set is balanced, and a small fastText-style classifier
(:class:`~kexue.experiments._shared.classification.NgramBagClassifier`: character + hashed bigram
embeddings, mean-pooled, linear head) is trained from scratch with

* ``ce`` -- plain cross-entropy; ``posthoc`` -- the same model, predicting
  argmax f - tau log pi (tau = 1);
* ``la_loss`` -- the logit-adjusted loss -log softmax(f + tau log pi)_y, tau = 1,
  predicting argmax f;
* ``weighted_ce`` -- weights w_c = 1 / (C pi_c); ``focal`` -- gamma = 2;
  ``truncation`` -- hard truncation with m = 0.5 (the posts' defaults).

Long-tailed training sets (:func:`long_tail_counts`): classes are ranked by how many
labelled training-side examples they have (most first, ties by label id) and the class of
rank r keeps n_max * 100^(-r/(C-1)) examples (at least 1), drawn at random with the run's
seed; n_max is lowered when the pool cannot fill the profile.

* ``tnews``: the FewCLUE TNEWS pool train_few_all + dev_few_all (2283 titles, ~150 per
  class, disjoint from test_public), 15 classes, n_max = 150 -> 533 titles (effective
  ratio 75 after rounding the tail to 2); test_public, already balanced (134 per class).
* ``iflytek``: IFLYTEK has 119 classes with at most 78 pool examples each, so only the 20
  classes with the largest pool (train_few_all + dev_few_all) are kept; n_max = 78 ->
  359 descriptions (ratio 78); test_public restricted to those classes and
  subsampled to 30 per class.
* ``sentiment``: binary Chinese sentiment, positive (the larger class) is the head:
  n_max = 4000 (quick) / 8000 (full) positives and 1/100 as many negatives; the test set
  is subsampled to the same number per class.

The post also gives the prediction rule for an LA-trained model: argmax f for balanced
(per-class) accuracy, argmax f + tau log pi for overall accuracy. The second half is checked
too: ``la_prior`` is the LA-loss model predicting argmax f + tau log pi, scored by its
accuracy under the training label distribution (``prior_accuracy`` = sum_y pi_y recall_y on
the balanced test set), which should beat argmax f on that score. "tau = 1 is generally
near-optimal" is reported as a post-hoc sweep over tau (chosen on the test set, so a
description, not a check).

Differences from the post/paper: text, not images; a bag-of-n-grams model with AdamW
(lr 1e-2, linear decay), not a ResNet with SGD; much smaller training sets. The verdict
uses only the claim's condition (both logit-adjustment forms beat CE on balanced
accuracy, on every data set); whether focal, truncation and weighted CE beat CE is
reported in the tables and notes, not in the verdict. Comparisons are paired per seed (the
same long-tailed sample for every method), so the noise estimate is that of the
difference.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register

TASKS = ("tnews", "iflytek", "sentiment")
METHODS = ("ce", "posthoc", "la_loss", "weighted_ce", "focal", "truncation")
TAUS = (0.5, 1.0, 1.5, 2.0)  # post-hoc sweep, reported
TRAINED = ("ce", "la_loss", "weighted_ce", "focal", "truncation")  # posthoc reuses ce
RATIO = 100.0
IFLYTEK_CLASSES = 20

POST_TABLE = (
    "| balanced accuracy (Menon et al. 2021, google-research/logit_adjustment README), "
    "EXP-100, ResNet-32 | ERM (CE) | post-hoc | LA loss |\n"
    "|---|---|---|---|\n"
    "| CIFAR-10-LT | 71.36 | 77.32 | 77.89 |\n"
    "| CIFAR-100-LT | 39.87 | 44.07 | 44.06 |"
)


# ----------------------------------------------------------------------------- data
def long_tail_counts(available: dict[int, int], ratio: float = RATIO,
                     n_max: int | None = None) -> dict[int, int]:
    """Examples to keep per class for an exponential profile with imbalance ``ratio``.

    Classes are ranked by ``available`` (most first, ties by class id); rank r of C keeps
    ``round(n * ratio^(-r/(C-1)))`` examples, at least 1, where n is ``n_max`` lowered
    (if needed) until every class can fill its quota from what is available.
    """
    if len(available) < 2:
        raise ValueError(f"need at least 2 classes, got {len(available)}")
    if ratio < 1:
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    if min(available.values()) < 1:
        raise ValueError(f"every class needs at least one example, got {available}")
    order = sorted(available, key=lambda c: (-available[c], c))
    k = len(order)
    decay = [ratio ** (-r / (k - 1)) for r in range(k)]
    feasible = min(available[c] / d for c, d in zip(order, decay))
    n = feasible if n_max is None else min(float(n_max), feasible)
    return {c: min(available[c], max(1, round(n * d))) for c, d in zip(order, decay)}


def make_long_tailed(rows: list[tuple[str, int]], counts: dict[int, int],
                     seed: int) -> list[tuple[str, int]]:
    """A random subset of ``rows`` with ``counts[c]`` rows of class c (shuffled)."""
    by_class: dict[int, list[str]] = defaultdict(list)
    for text, label in rows:
        by_class[label].append(text)
    rng = random.Random(seed)
    out = [(t, c) for c in sorted(counts) for t in rng.sample(by_class[c], counts[c])]
    rng.shuffle(out)
    return out


def balance(rows: list[tuple[str, int]], seed: int = 0) -> list[tuple[str, int]]:
    """Subsample every class to the size of the smallest one (kept in class order)."""
    by_class: dict[int, list[str]] = defaultdict(list)
    for text, label in rows:
        by_class[label].append(text)
    n = min(len(v) for v in by_class.values())
    rng = random.Random(seed)
    return [(t, c) for c in sorted(by_class) for t in rng.sample(by_class[c], n)]


def load_pool(task: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(training pool, balanced test set, number of classes), labels remapped to 0..C-1."""
    from kexue import data

    if task == "sentiment":
        pool = [(t, int(y)) for t, y in data.load_sentiment("train")]
        test = [(t, int(y)) for t, y in data.load_sentiment("test")]
        return pool, balance(test), 2
    if task not in ("tnews", "iflytek"):
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    raw = data.load_fewclue(task, "train_few_all") + data.load_fewclue(task, "dev_few_all")
    raw_test = data.load_fewclue(task, "test_public")
    counts = Counter(r["label"] for r in raw)
    if task == "iflytek":
        keep = sorted(counts, key=lambda c: (-counts[c], c))[:IFLYTEK_CLASSES]
    else:
        keep = list(counts)
    index = {lab: i for i, lab in enumerate(sorted(keep))}
    pool = [(r["sentence"], index[r["label"]]) for r in raw if r["label"] in index]
    test = [(r["sentence"], index[r["label"]]) for r in raw_test if r["label"] in index]
    return pool, balance(test), len(index)


# ----------------------------------------------------------------------------- losses
def loss_functions(priors: Tensor) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """Each trained method's loss as ``f(logits, labels)``; ``priors`` = train frequencies."""
    from kexue.losses import (
        LogitAdjustedLoss,
        class_weighted_cross_entropy,
        focal_loss,
        hard_truncation_loss,
    )

    la = LogitAdjustedLoss(priors, tau=1.0)
    weight = 1.0 / (priors.numel() * priors)  # sum_c pi_c w_c = 1
    return {
        "ce": F.cross_entropy,
        "la_loss": la,
        "weighted_ce": lambda z, y: class_weighted_cross_entropy(z, y, weight),
        "focal": lambda z, y: focal_loss(z, y, gamma=2.0),
        "truncation": lambda z, y: hard_truncation_loss(z, y, m=0.5),
    }


def prior_accuracy(logits: Tensor, labels: Tensor, priors: Tensor) -> float:
    """Accuracy (percent) under the training label distribution, from a balanced test set:
    sum_y pi_y recall_y."""
    pred = logits.argmax(-1)
    recall = torch.stack([(pred[labels == c] == c).double().mean() for c in range(len(priors))])
    return 100 * float((priors.double() * recall).sum())


def group_recalls(logits: Tensor, labels: Tensor, train_counts: dict[int, int]) -> dict[str, float]:
    """Mean recall (percent) over the head half and the tail half of the classes by train size."""
    pred = logits.argmax(-1)
    order = sorted(train_counts, key=lambda c: (-train_counts[c], c))
    half = len(order) // 2
    out = {}
    for name, classes in (("head_recall", order[:half]), ("tail_recall", order[-half:])):
        recalls = [((pred == c) & (labels == c)).sum().item() / max(1, (labels == c).sum().item())
                   for c in classes]
        out[name] = 100 * sum(recalls) / len(recalls)
    return out


# ----------------------------------------------------------------------------- experiment
def run_task(task: str, ctx: Context) -> tuple[dict[str, float], str]:
    """Train every method on one long-tailed set; metrics keyed ``task/method/metric``."""
    from kexue.data import CharTokenizer
    from kexue.experiments._shared.classification import (
        NgramBagClassifier,
        classification_metrics,
        logits_of,
        predict,
        tensorize,
        train_classifier,
    )
    from kexue.losses import class_priors, posthoc_logit_adjust

    pool, test, num_classes = load_pool(task)
    available = Counter(label for _, label in pool)
    n_max = {"tnews": 150, "iflytek": 100,
             "sentiment": ctx.pick(4000, 8000, smoke=300)}[task]
    counts = long_tail_counts(dict(available), RATIO, n_max)
    train = make_long_tailed(pool, counts, seed=ctx.seed)
    if ctx.scale == "smoke":
        test = test[:: max(1, len(test) // 200)]
    max_length = 48 if task == "tnews" else 128
    tokenizer = CharTokenizer.fit(t for t, _ in pool)  # labelled training-side texts only
    train_ds, test_ds = tensorize(tokenizer, train, max_length), tensorize(tokenizer, test, max_length)
    priors = class_priors(train_ds.tensors[2], num_classes)
    steps = ctx.pick({"tnews": 500, "iflytek": 500, "sentiment": 600},
                     {"tnews": 1000, "iflytek": 1000, "sentiment": 2000},
                     smoke={"tnews": 5, "iflytek": 5, "sentiment": 5})[task]

    metrics: dict[str, float] = {}

    def record(method: str, logits: Tensor) -> None:
        labels = test_ds.tensors[2]
        m = classification_metrics(logits, labels, num_classes)
        m.update(group_recalls(logits, labels, counts))
        m["prior_accuracy"] = prior_accuracy(logits, labels, priors)
        for key in ("balanced_accuracy", "macro_f1", "head_recall", "tail_recall",
                    "prior_accuracy"):
            metrics[f"{task}/{method}/{key}"] = m[key]

    for method, fn in loss_functions(priors).items():
        torch.manual_seed(ctx.seed)
        model = NgramBagClassifier(tokenizer.vocab_size, num_classes, hidden=64)
        train_classifier(model, train_ds, steps=steps, batch_size=32, lr=1e-2, seed=ctx.seed,
                         loss_fn=lambda mdl, b, fn=fn: fn(logits_of(mdl, b), b[2]))
        logits = predict(model, test_ds)
        record(method, logits)
        if method == "ce":
            record("posthoc", posthoc_logit_adjust(logits, priors, tau=1.0))
            for tau in TAUS:
                adjusted = posthoc_logit_adjust(logits, priors, tau=tau)
                metrics[f"{task}/posthoc_tau/{tau:g}"] = classification_metrics(
                    adjusted, test_ds.tensors[2], num_classes)["balanced_accuracy"]
        if method == "la_loss":  # the post's rule for overall accuracy: argmax f + tau log pi
            record("la_prior", logits + priors.log())
    for method in METHODS[1:]:
        metrics[f"{task}/gain/{method}"] = (metrics[f"{task}/{method}/balanced_accuracy"]
                                            - metrics[f"{task}/ce/balanced_accuracy"])
    sizes = sorted(counts.values(), reverse=True)
    note = (f"{task}: {num_classes} classes, long-tailed train set of {len(train)} texts "
            f"(per class {sizes[0]} ... {sizes[-1]}, ratio {sizes[0] / sizes[-1]:.0f}), "
            f"balanced test set of {len(test)} ({len(test) // num_classes} per class); "
            f"{steps} steps of batch 32.")
    return metrics, note


def results_table(stats: Stats, tasks: tuple[str, ...]) -> str:
    methods = (*METHODS, "la_prior")
    lines = ["| data | metric | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for task in tasks:
        for key, label in (("balanced_accuracy", "balanced acc"), ("macro_f1", "macro-F1"),
                           ("tail_recall", "tail-half recall"),
                           ("prior_accuracy", "accuracy at train priors")):
            cells = [str(stats[f"{task}/{m}/{key}"]) for m in methods]
            lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_table(stats: Stats, tasks: tuple[str, ...]) -> str:
    lines = ["| data | " + " | ".join(f"{m} - ce" for m in METHODS[1:]) + " |",
             "|---|" + "---|" * (len(METHODS) - 1)]
    for task in tasks:
        lines.append(f"| {task} | " + " | ".join(str(stats[f"{task}/gain/{m}"])
                                                  for m in METHODS[1:]) + " |")
    return "\n".join(lines)


def tau_table(stats: Stats, tasks: tuple[str, ...]) -> str:
    lines = ["| post-hoc balanced acc | " + " | ".join(f"tau = {t:g}" for t in TAUS) + " |",
             "|---|" + "---|" * len(TAUS)]
    for task in tasks:
        lines.append(f"| {task} | " + " | ".join(str(stats[f"{task}/posthoc_tau/{t:g}"])
                                                  for t in TAUS) + " |")
    return "\n".join(lines)


def _verdict_word(check: Check) -> str:
    return {True: "yes", False: "no"}.get(check.holds, "within noise")


@register
class LongTail(Experiment):
    name = "long-tail"
    techniques = ("T26", "T22")
    datasets = ("fewclue-tnews", "fewclue-iflytek", "sentiment")
    minutes: ClassVar[dict[str, float]] = {"quick": 2.7, "full": 20}
    seeds = 5  # 3 left two of the nine comparisons within noise
    claim = Claim(
        post="通过互信息思想来缓解类别不平衡问题",
        date="2020-07-19",
        url="https://kexue.fm/archives/7615",
        statement="On long-tailed training data, fitting log p(y|x)/p(y) -- training with "
        "the logit-adjusted loss, or subtracting tau log(prior) from a CE model's logits -- "
        "raises balanced (per-class) accuracy over plain cross-entropy; an LA-trained model "
        "predicts with argmax f for per-class accuracy and argmax f + tau log(prior) for "
        "overall accuracy.",
        condition="On every long-tailed set (TNEWS, IFLYTEK-20, sentiment; ratio <= 100), "
        "both the LA loss and post-hoc adjustment beat CE on balanced accuracy of a balanced "
        "test set, and the LA-loss model's argmax f + log pi beats its argmax f on accuracy "
        "under the training label distribution (all paired over seeds; 9 checks, all must "
        "hold). Focal loss, hard truncation and class-weighted CE are reported, not part of "
        "the verdict.",
        reported="No experiment in the post ('the results are good to the point of "
        "surprise', pointing to the paper). Menon et al. 2021, CIFAR-10-LT EXP-100 balanced "
        "accuracy: ERM 71.36, post-hoc 77.32, LA loss 77.89; CIFAR-100-LT: 39.87 / 44.07 / "
        "44.06 (google-research/logit_adjustment README).",
        fidelity="substituted",
        post_setting="The paper's: CIFAR-10/100-LT (imbalance 100, exponential profile), "
        "ResNet-32 trained from scratch with SGD; balanced test sets.",
        our_setting="Long-tailed (ratio 75-100, exponential profile) TNEWS-15 (533 titles), "
        "IFLYTEK-20 (359 descriptions) and binary sentiment (4,040 reviews) cut from the "
        "training pools; balanced test sets; a from-scratch character + bigram bag "
        "classifier, AdamW 500-600 steps of batch 32, tau = 1; 5 seeds.",
        substitution="No image data on this machine; Chinese text classification with a "
        "fastText-style model from scratch stands in for CIFAR-LT with a ResNet (the same "
        "kind of imbalance profile and balanced evaluation).",
    )

    def tasks(self, ctx: Context) -> tuple[str, ...]:
        return ctx.pick(TASKS, TASKS, smoke=("tnews",))

    def run(self, ctx: Context) -> Run:
        metrics: dict[str, float] = {}
        notes = []
        for task in self.tasks(ctx):
            task_metrics, note = run_task(task, ctx)
            metrics.update(task_metrics)
            notes.append(note)
        return Run(metrics, notes=notes)

    def _tasks_in(self, stats: Stats) -> tuple[str, ...]:
        return tuple(t for t in TASKS if f"{t}/gain/la_loss" in stats)

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import grouped_bars

        tasks = self._tasks_in(stats)
        key = "{}/{}/balanced_accuracy"
        groups = {t: {m: stats[key.format(t, m)].mean for m in METHODS} for t in tasks}
        errors = {t: {m: stats[key.format(t, m)].std for m in METHODS} for t in tasks}
        path = ctx.figure("long_tail.png")
        grouped_bars(groups, path, ylabel="balanced accuracy (%)", errors=errors,
                     title="Long-tailed (ratio 100) training, balanced test")
        extra = []
        for task in tasks:
            verdicts = ", ".join(
                f"{m}: {_verdict_word(stats.above(f'{task}/gain/{m}', 0.0))}"
                for m in ("focal", "truncation", "weighted_ce"))
            extra.append(f"{task}: beats CE on balanced accuracy (paired t-interval above 0)? "
                         f"{verdicts}.")
        return Run({}, figures=[path.name],
                   tables=[results_table(stats, tasks), gains_table(stats, tasks),
                           tau_table(stats, tasks), POST_TABLE],
                   notes=extra)

    def checks(self, stats: Stats) -> list[Check]:
        out = []
        for task in self._tasks_in(stats):
            ce = f"{task}/ce/balanced_accuracy"
            for method, label in (("la_loss", "LA loss"), ("posthoc", "post-hoc adjustment")):
                out.append(stats.greater(f"{task}/{method}/balanced_accuracy", ce,
                                         description=f"{task}: {label} > CE on balanced accuracy"))
            out.append(stats.greater(
                f"{task}/la_prior/prior_accuracy", f"{task}/la_loss/prior_accuracy",
                description=f"{task}: LA-loss model, argmax f + log pi > argmax f on accuracy "
                "at the training priors"))
        return out
