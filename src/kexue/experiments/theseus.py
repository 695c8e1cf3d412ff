"""T19 BERT-of-Theseus: compress a fine-tuned 6-layer MiniLM to 3 layers by module replacing.

Post: BERT-of-Theseus：基于模块替换的模型压缩方法 (2020-07-17, https://kexue.fm/archives/7575).
The author fine-tunes BERT (the predecessor), splits its layers into as many modules as
the successor has layers, trains the successor layers while each module is replaced by
its successor layer with probability 0.5 (predecessor frozen, only the task loss), then
fine-tunes the successor alone. On CLUE IFLYTEK the 3-layer successor beats fine-tuning
BERT's first 3 layers directly (59.36% vs 57.96%; 12-layer teacher 60.11%).

Here the predecessor is all-MiniLM-L6-v2 fine-tuned on the task; the successor starts from
MiniLM's first 3 *pre-trained* layers (the author's bert4keras code) on the predecessor's
embeddings and head. Baselines: the first 3 layers, and every other layer (0, 2, 4, the
DistilBERT choice), fine-tuned directly for as many steps as the successor trains in both
Theseus phases together. Tasks: SST-2 (accuracy) and, at full scale, STS-B as a
cross-encoder regression (Spearman x100).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from torch.utils.data import TensorDataset

from kexue.evidence import Check, Claim, Context, Experiment, Run, Stats, markdown_table, register
from kexue.experiments._shared.classification import cross_entropy_loss
from kexue.experiments._shared.minilm_classifier import (
    FineTuneConfig,
    MiniLMClassifier,
    build,
    encode,
    encode_pairs,
    evaluate,
    evaluate_regression,
    fine_tune,
    regression_loss,
)
from kexue.experiments._shared.sts import subsample

SUCCESSOR_LAYERS = 3
STUDENTS = {"direct-first": (0, 1, 2), "direct-alternate": (0, 2, 4)}
VARIANTS = ("teacher", "direct-first", "direct-alternate", "theseus-mixed", "theseus")


@dataclass(frozen=True)
class Task:
    """A task: its data, its head (classes, or 1 for a regression) and its score."""

    name: str
    train: TensorDataset
    test: TensorDataset
    outputs: int
    metric: str  # "accuracy" or "spearman"

    def score(self, model: MiniLMClassifier) -> float:
        if self.outputs == 1:
            return evaluate_regression(model, self.test)["spearman"]
        return evaluate(model, self.test, self.outputs)["accuracy"]

    @property
    def loss_fn(self):
        return regression_loss if self.outputs == 1 else cross_entropy_loss


def load_task(name: str, n_train: int | None, n_test: int | None, folder: str) -> Task:
    from kexue.data import load_sst2, load_stsb

    if name == "sst2":
        train, test = load_sst2("train"), load_sst2("test")
        return Task(name, encode(subsample(train, n_train, 0), 64, folder),
                    encode(subsample(test, n_test, 1), 64, folder), 2, "accuracy")
    train, test = load_stsb("train", "en"), load_stsb("dev", "en")
    return Task(name, encode_pairs(subsample(train, n_train, 0), 96, folder),
                encode_pairs(subsample(test, n_test, 1), 96, folder), 1, "spearman")


def compress(teacher: MiniLMClassifier, task: Task, config: FineTuneConfig, seed: int,
             folder: str, ctx: Context) -> tuple[MiniLMClassifier, MiniLMClassifier]:
    """Theseus phase (successor layers trained inside the frozen teacher) -> the mixed
    model; then its successor alone, fine-tuned -> the compressed model."""
    from kexue.train import Theseus

    mixed = copy.deepcopy(teacher)
    successor = build(task.outputs, seed, folder).bert.encoder.layers[:SUCCESSOR_LAYERS]
    theseus = Theseus(mixed.bert.encoder.layers, successor, replace_prob=0.5)
    mixed.bert.encoder.layers = theseus
    mixed.head.requires_grad_(False)  # the predecessor's head, shared and frozen (bert4keras)
    fine_tune(mixed, task.train, config, seed=seed, cache_dir=ctx.cache_dir, step=theseus.step,
              tag=f"theseus-{task.name}-replacing-p0.5", loss_fn=task.loss_fn, log=ctx.log)
    mixed.head.requires_grad_(True)
    compressed = copy.deepcopy(mixed)
    compressed.bert.encoder.layers = compressed.bert.encoder.layers.successor
    compressed.bert.config.num_hidden_layers = SUCCESSOR_LAYERS
    after = replace(config, steps=config.steps // 2)
    fine_tune(compressed, task.train, after, seed=seed, cache_dir=ctx.cache_dir,
              tag=f"theseus-{task.name}-successor", loss_fn=task.loss_fn, log=ctx.log)
    return mixed, compressed


@register
class BertOfTheseus(Experiment):
    name = "theseus"
    techniques = ("T19",)
    datasets = ("sst2", "stsb-en")
    minutes = {"quick": 4, "full": 90}
    seeds = 3
    uses_model = True
    claim = Claim(
        post="BERT-of-Theseus：基于模块替换的模型压缩方法",
        date="2020-07-17",
        url="https://kexue.fm/archives/7575",
        statement="Compressing a fine-tuned BERT by randomly replacing its modules with the "
        "successor's layers (p = 0.5, predecessor frozen, task loss only), then fine-tuning "
        "the successor alone, gives a better small model than fine-tuning the first layers "
        "of BERT directly.",
        condition="On each task, the 3-layer Theseus successor scores above the directly "
        "fine-tuned first 3 MiniLM layers beyond seed noise (paired over seeds; Holm across "
        "tasks); the teacher has learnt the task (SST-2 accuracy > 80%). The every-other-layer "
        "baseline is reported beside them.",
        reported="CLUE IFLYTEK dev accuracy, BERT-base: full 12 layers 60.11%; first 6 layers "
        "fine-tuned 58.99%, first 3 layers 57.96%; Theseus 6 layers 59.61%, 3 layers 59.36% "
        "(bert4keras; predecessor 5 epochs, Theseus 10, successor 5; Adam 2e-5, batch 32).",
        fidelity="substituted",
        post_setting="BERT-base (12 layers) -> 3 (and 6) layers on CLUE IFLYTEK (Chinese, 119 "
        "classes), epochs of training with best-on-valid selection.",
        our_setting="all-MiniLM-L6-v2 (6 layers) -> 3 layers on SST-2 (2000 train sentences, "
        "600 test sentences); teacher 60 steps, Theseus 60 steps of replacing + 30 of "
        "successor fine-tuning, direct baselines 90 steps (batch 16, AdamW lr 1e-4, head "
        "1e-3, embedding tables frozen throughout). STS-B at full scale.",
        substitution="The Chinese BERT-base and IFLYTEK are not available offline; the shipped "
        "pre-trained encoder (MiniLM, 6 layers) is English, so 6 -> 3 layers on English tasks. "
        "The compression ratio (2x) is that of the post's 12 -> 6, not of its 12 -> 3.",
        reported_values={"sst2/teacher": 60.11, "sst2/direct-first": 57.96,
                         "sst2/theseus": 59.36},
    )

    def run(self, ctx: Context) -> Run:
        tasks = ctx.pick(("sst2",), ("sst2", "stsb"), smoke=("sst2", "stsb"))
        n_train = ctx.pick(2000, None, smoke=24)
        n_test = ctx.pick(600, None, smoke=16)
        steps = ctx.pick(60, 1500, smoke=2)
        config = FineTuneConfig(steps=steps, batch_size=ctx.pick(16, 32, smoke=4), lr=1e-4,
                                head_lr=1e-3, train_embeddings=False)
        folder = str(ctx.model_path())
        metrics: dict[str, float] = {}
        for name in tasks:
            task = load_task(name, n_train, n_test, folder)
            metrics |= self._task(task, config, ctx, folder)
        return Run(metrics)

    def _task(self, task: Task, config: FineTuneConfig, ctx: Context,
              folder: str) -> dict[str, float]:
        seed, tag = ctx.seed, task.name
        out: dict[str, float] = {}
        teacher = build(task.outputs, seed, folder)
        fine_tune(teacher, task.train, config, seed=seed, cache_dir=ctx.cache_dir,
                  tag=f"theseus-{tag}-teacher", loss_fn=task.loss_fn, log=ctx.log)
        out[f"{tag}/teacher"] = task.score(teacher)
        direct = replace(config, steps=config.steps + config.steps // 2)  # Theseus' two phases
        for name, layers in STUDENTS.items():
            student = build(task.outputs, seed, folder).keep_layers(layers)
            fine_tune(student, task.train, direct, seed=seed, cache_dir=ctx.cache_dir,
                      tag=f"theseus-{tag}-{name}", loss_fn=task.loss_fn, log=ctx.log)
            out[f"{tag}/{name}"] = task.score(student)
        mixed, compressed = compress(teacher, task, config, seed, folder, ctx)
        out[f"{tag}/theseus-mixed"] = task.score(mixed)  # eval mode: the successor only
        out[f"{tag}/theseus"] = task.score(compressed)
        ctx.log("      " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
        return out

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        tasks = sorted({key.split("/")[0] for key in stats})
        names = {"teacher": "teacher (6 layers)", "direct-first": "layers 0-2, fine-tuned",
                 "direct-alternate": "layers 0, 2, 4, fine-tuned",
                 "theseus-mixed": "Theseus, after replacing", "theseus": "Theseus (3 layers)"}
        post = {"teacher": "60.11 (12 layers)", "direct-first": "57.96",
                "theseus": "59.36"}
        table = markdown_table(
            ["model", *[f"{t} ({'Spearman' if t == 'stsb' else 'accuracy'})" for t in tasks],
             "post, IFLYTEK accuracy"],
            [[names[v], *[str(stats[f"{t}/{v}"]) for t in tasks], post.get(v, "")]
             for v in VARIANTS])
        return Run({}, tables=[table])

    def checks(self, stats: Stats) -> list[Check]:
        tasks = sorted({key.split("/")[0] for key in stats})
        checks = [stats.above("sst2/teacher", 80.0,
                              "the teacher learnt SST-2 (test accuracy > 80%)")]
        checks += [stats.greater(f"{t}/theseus", f"{t}/direct-first",
                                 description=f"{t}: Theseus successor > first 3 layers "
                                 "fine-tuned directly") for t in tasks]
        return checks


__all__ = ["BertOfTheseus"]
