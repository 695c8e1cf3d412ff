"""T13 Ladder Side-Tuning: accuracy, training memory and step time against full fine-tuning.

Post: Ladder Side-Tuning：预训练模型的"过墙梯" (2022-06-20, https://kexue.fm/archives/9138).
Backpropagation runs as deep as the trainable parameter nearest the input, so LST trains
only a small side network that reads the frozen backbone's hidden states: no backward
through the backbone. The paper reports 69% less training memory than full fine-tuning on
GLUE (T5); the author's CLUE runs (RoBERTa-base + a 4-layer, 128-wide ladder, ~1M
parameters) train about twice as fast and land within 1-4 points of full fine-tuning on
ordinary classification (clearly lower on reading comprehension).

Here MiniLM (all-MiniLM-L6-v2) on SST-2 is trained three ways for the same steps: full
fine-tuning (every parameter), LST (:class:`kexue.train.LadderSideNetwork`, reduction 8,
one side layer per backbone layer, mean pooling + linear head) and a linear probe (mean
pooled frozen features + linear head). Memory and time are measured for each in a fresh
process on one fixed batch: bytes autograd saves for backward, peak resident memory of a
whole training step (forward, backward, AdamW) above the loaded model, and the median
step time.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import Tensor, nn

from kexue.evidence import Check, Claim, Context, Experiment, Run, Stats, markdown_table, register
from kexue.experiments._shared.fresh_process import (
    call_in_fresh_process,
    reset_peak,
    status_bytes,
)
from kexue.experiments._shared.minilm_classifier import (
    FineTuneConfig,
    build,
    encode,
    evaluate,
    fine_tune,
    tokenizer,
)
from kexue.experiments._shared.sts import subsample

MODES = ("full", "lst", "probe")
REDUCTION = 8


class SideTunedClassifier(nn.Module):
    """Frozen MiniLM -> :class:`~kexue.train.LadderSideNetwork` -> mean pooling over real
    tokens -> dropout -> linear head. ``forward(input_ids, attention_mask)`` -> logits."""

    def __init__(self, num_classes: int, folder: str | os.PathLike, reduction: int = REDUCTION,
                 dropout: float = 0.1) -> None:
        super().__init__()
        from kexue.models import Bert
        from kexue.train import LadderSideNetwork

        self.folder = str(folder)
        backbone = Bert.from_pretrained(self.folder, pooler=False, mlm=False)
        self.side = LadderSideNetwork(backbone, reduction=reduction, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.side.hidden_size, num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        from kexue.embed.pooling import masked_mean

        x = self.side(input_ids, attention_mask)  # (batch, seq, d_s)
        return self.head(self.dropout(masked_mean(x, attention_mask)))


def make_model(mode: str, seed: int, folder: str) -> nn.Module:
    """The classifier of ``mode`` with its trainable parameters set (``requires_grad``)."""
    if mode == "lst":
        from kexue.train import seed_everything

        seed_everything(seed)
        return SideTunedClassifier(2, folder)
    model = build(2, seed, folder)
    if mode == "probe":
        model.freeze_below(0)
    return model


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(mode: str, folder: str, batch: int, seq: int, steps: int, seed: int,
            threads: int) -> dict[str, float]:
    """One training configuration in this (fresh) process on ``threads`` threads: bytes
    saved for backward, peak memory of a training step above the loaded model, and the
    median step time, on a fixed batch of SST-2 sentences padded to ``seq`` tokens."""
    from kexue.data import load_sst2
    from kexue.nn import saved_activation_bytes

    torch.set_num_threads(threads)
    model = make_model(mode, seed, folder).train()
    texts = [t for t, _ in subsample(load_sst2("test"), batch, seed)]
    enc = tokenizer(folder).batch_encode(texts, max_length=seq, padding="max_length")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = torch.arange(batch) % 2
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    saved = saved_activation_bytes(model, lambda: model(ids, mask))
    # a tiny warm-up step loads kernels and thread pools; ``base`` then holds the process
    # and the loaded model, not what the measured training step needs
    nn.functional.cross_entropy(model(ids[:1, :8], mask[:1, :8]), labels[:1]).backward()
    model.zero_grad(set_to_none=True)
    base = status_bytes("VmRSS")
    reset_peak()  # what loading the model and the warm-up touched is not the step's
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        nn.functional.cross_entropy(model(ids, mask), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    peak = status_bytes("VmHWM")
    return {"saved_mb": saved / 2**20, "peak_mb": (peak - base) / 2**20,
            "step_ms": 1000 * float(np.median(times[1:])),
            "trainable_m": trainable_count(model) / 1e6}


@register
class LadderSideTuning(Experiment):
    name = "ladder-side-tuning"
    techniques = ("T13",)
    datasets = ("sst2",)
    minutes = {"quick": 3, "full": 60}
    seeds = 3
    uses_model = True
    claim = Claim(
        post="Ladder Side-Tuning：预训练模型的“过墙梯”",
        date="2022-06-20",
        url="https://kexue.fm/archives/9138",
        statement="Training only a small ladder network beside a frozen pre-trained model "
        "(no backpropagation through the backbone) is memory- and time-efficient and, on "
        "ordinary classification, comes close to full fine-tuning.",
        condition="On MiniLM / SST-2, at the same number of steps: LST's peak training memory "
        "(a whole step above the loaded model) <= 50% of full fine-tuning's, its step time "
        "below full fine-tuning's, and its accuracy within 3 points of full fine-tuning's "
        "(equivalence test); full fine-tuning has learnt the task (accuracy > 80%).",
        reported="Paper (T5 on GLUE): 69% less memory than full fine-tuning. Author (CLUE dev, "
        "RoBERTa-base full vs + LST): iflytek 60.64 vs 59.29, tnews 58.06 vs 56.82, afqmc "
        "74.05 vs 70.37, cmnli 81.24 vs 76.27, ocnli 76.00 vs 71.02, csl 84.50 vs 82.63; "
        "training about 2x faster; ~1M trainable parameters (1.2% of base).",
        fidelity="substituted",
        post_setting="RoBERTa-wwm-ext base (12 layers, 768) + a 4-layer, 128-wide Transformer "
        "ladder, random init, AdaFactor lr 5e-3, CLUE classification tasks; paper: T5 with "
        "Adapter-style ladders on GLUE, GPU memory.",
        our_setting="all-MiniLM-L6-v2 (6 layers, 384) + a 6-layer, 48-wide ladder (reduction "
        "8, 4 heads, gates), mean pooling; 2000 SST-2 train sentences, 600 test sentences; "
        "60 steps of batch 16 for each method (AdamW; full fine-tuning lr 1e-4 with head 1e-3, "
        "LST lr 2e-3, probe lr 5e-3); memory and time on a batch of 32 x 64 tokens, each "
        "method in a fresh process, 2 CPU threads.",
        substitution="RoBERTa and CLUE are not available offline; the shipped pre-trained "
        "encoder (MiniLM) is English, so SST-2. Memory is the process's resident memory on "
        "CPU, not GPU memory.",
        reported_values={"full/accuracy": 60.64, "lst/accuracy": 59.29,
                         "lst/memory_ratio": 0.31, "lst/time_ratio": 0.5},
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import load_sst2

        folder = str(ctx.model_path())
        n_train, n_test = ctx.pick(2000, None, smoke=24), ctx.pick(600, None, smoke=16)
        steps, batch = ctx.pick(60, 1000, smoke=2), ctx.pick(16, 32, smoke=4)
        configs = {"full": FineTuneConfig(steps=steps, batch_size=batch, lr=1e-4, head_lr=1e-3),
                   "lst": FineTuneConfig(steps=steps, batch_size=batch, lr=2e-3),
                   "probe": FineTuneConfig(steps=steps, batch_size=batch, lr=5e-3,
                                           train_layers=0)}
        shape = {"batch": ctx.pick(32, 32, smoke=2), "seq": ctx.pick(64, 64, smoke=16),
                 "steps": ctx.pick(3, 8, smoke=1)}
        train = encode(subsample(load_sst2("train"), n_train, 0), 64, folder)
        test = encode(subsample(load_sst2("test"), n_test, 1), 64, folder)
        metrics: dict[str, float] = {}
        for mode in MODES:
            model = make_model(mode, ctx.seed, folder)
            fine_tune(model, train, configs[mode], seed=ctx.seed, cache_dir=ctx.cache_dir,
                      tag=f"lst-{mode}-{n_train}", log=ctx.log)
            metrics[f"{mode}/accuracy"] = evaluate(model, test)["accuracy"]
            cost = call_in_fresh_process("kexue.experiments.ladder_side_tuning", "measure",
                                         mode=mode, folder=folder, seed=ctx.seed, **shape)
            metrics |= {f"{mode}/{k}": v for k, v in cost.items()}
            ctx.log(f"      {mode}: accuracy {metrics[f'{mode}/accuracy']:.2f}, peak "
                    f"{cost['peak_mb']:.0f} MB, saved {cost['saved_mb']:.1f} MB, step "
                    f"{cost['step_ms']:.0f} ms")
        for mode in ("lst", "probe"):
            metrics[f"{mode}/memory_ratio"] = metrics[f"{mode}/peak_mb"] / metrics["full/peak_mb"]
            metrics[f"{mode}/time_ratio"] = metrics[f"{mode}/step_ms"] / metrics["full/step_ms"]
        return Run(metrics)

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        names = {"full": "full fine-tuning", "lst": "Ladder Side-Tuning",
                 "probe": "linear probe"}

        def cell(key: str) -> str:
            return str(stats[key]) if key in stats else "1"

        table = markdown_table(
            ["method", "accuracy", "trainable (M)", "peak step memory (MB)", "memory / full",
             "saved for backward (MB)", "step (ms)", "time / full"],
            [[names[m], str(stats[f"{m}/accuracy"]), f"{stats[f'{m}/trainable_m'].mean:.3f}",
              str(stats[f"{m}/peak_mb"]), cell(f"{m}/memory_ratio"), str(stats[f"{m}/saved_mb"]),
              str(stats[f"{m}/step_ms"]), cell(f"{m}/time_ratio")] for m in MODES])
        post = markdown_table(
            ["", "post / paper", "ours (LST vs full)"],
            [["memory", "paper: 69% saved (LST at 31% of full)", cell("lst/memory_ratio")],
             ["training time", "author: about 2x faster", cell("lst/time_ratio")],
             ["accuracy gap", "author, classification: 1.2-5 points below full",
              f"{stats['full/accuracy'].mean - stats['lst/accuracy'].mean:.2f} points"]])
        return Run({}, tables=[table, post])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("full/accuracy", 80.0, "full fine-tuning learnt SST-2 (accuracy > 80%)"),
            stats.below("lst/memory_ratio", 0.5,
                        "LST's peak training memory <= 50% of full fine-tuning's"),
            stats.below("lst/time_ratio", 1.0, "LST's step time below full fine-tuning's"),
            stats.within("lst/accuracy", "full/accuracy", 3.0,
                         "LST's accuracy within 3 points of full fine-tuning's"),
        ]


__all__ = ["LadderSideTuning", "SideTunedClassifier", "measure"]
