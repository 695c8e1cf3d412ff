"""T12 BERT-whitening on STS-B (English): a raw encoder gains, a similarity-trained one does not.

Posts: 你可能不需要BERT-flow：一个线性变换媲美BERT-flow (2021-01-11,
https://kexue.fm/archives/8069) and 无监督语义相似度哪家强？我们做了个比较全面的评测 (2021-04-11,
https://kexue.fm/archives/8321). The author fits ``mu`` and ``W = U diag(1/sqrt(s))`` on all
sentence vectors of the evaluated task, maps ``x -> (x - mu) W`` (optionally keeping the
first k columns), L2-normalises and scores pairs by cosine; metric = Spearman x100 against
the gold scores. On raw BERT-base, first-last-avg pooling, STS-B test: 59.04 -> 71.20 ->
71.42 with 256 of the 768 components (8069). On SimBERT, trained on similar sentences,
whitening "either lowers the score or brings no clear gain" (8321, conclusion 5; e.g.
SimBERT-P1 ATEC 38.50 -> 23.64).

Ours, both halves on STS-B-en test:

* raw: a 2-layer BERT pretrained here by masked-LM from scratch
  (:mod:`kexue.experiments._shared.en_encoder`, one per seed) stands in for raw BERT;
* similarity-trained: the pretrained encoder of ``--model`` (default all-MiniLM-L6-v2,
  trained contrastively on a billion sentence pairs) stands in for SimBERT.

Reduced variants keep the post's fraction of the dimensions (:func:`fraction_variants`:
256 of 768 -> ``whitening-d/3``). With two layers, first-last-avg of the raw encoder is the
mean of the outputs of layers 1 and 2.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.sts import fraction_variants, stsb_pairs, whitening_scores

POOLINGS = ("cls", "mean", "first-last-avg")
ENCODERS = {"mlm": "raw MLM encoder (from scratch)", "pretrained": "similarity-trained (MiniLM)"}
VARIANTS = ("raw", "whitening", "whitening-d/3", "whitening-d/6")
POST = {  # post 8069, BERT-base, first-last-avg, STS-B test, Spearman x100
    "mlm/first-last-avg/raw": 59.04,
    "mlm/first-last-avg/whitening": 71.20,
    "mlm/first-last-avg/whitening-d/3": 71.42,
}


def encoder_scores(vectors: dict[str, np.ndarray], n_a: int, gold: np.ndarray, n_eval: int,
                   prefix: str) -> dict[str, float]:
    """``{prefix/pooling/variant: Spearman x100}`` of one encoder's pooled vectors (rows:
    the ``n_a`` first sentences, then their partners)."""
    out = {}
    for pooling, v in vectors.items():
        kept = fraction_variants(v.shape[1])
        scores = whitening_scores(v[:n_a], v[n_a:], gold, n_eval, kept)
        out.update({f"{prefix}/{pooling}/{name}": s for name, s in scores.items()})
    return out


def whitening_table(metrics: dict[str, float]) -> str:
    """One row per encoder and pooling, one column per variant."""
    lines = ["| encoder | pooling | " + " | ".join(VARIANTS) + " |",
             "|---|---|" + "---|" * len(VARIANTS)]
    for prefix, label in ENCODERS.items():
        for pooling in POOLINGS:
            cells = " | ".join(f"{metrics[f'{prefix}/{pooling}/{v}']:.2f}" for v in VARIANTS)
            lines.append(f"| {label} | {pooling} | {cells} |")
    return "\n".join(lines)


@register
class BertWhitening(Experiment):
    name = "whitening"
    techniques = ("T12",)
    datasets = ("stsb-en", "sst2")
    uses_model = True
    minutes: ClassVar[dict[str, float]] = {"quick": 4.2, "full": 20}  # measured cold (3 encoders pretrained), 1 thread
    claim = Claim(
        post="你可能不需要BERT-flow：一个线性变换媲美BERT-flow",
        date="2021-01-11",
        url="https://kexue.fm/archives/8069",
        statement="Whitening pooled sentence vectors raises the STS Spearman of a raw pretrained "
        "BERT, and keeping a third of the components (256 of 768) loses nothing; on an encoder "
        "already trained for similarity (SimBERT) it brings no clear gain (post 8321).",
        condition="STS-B-en test, first-last-avg pooling: on the raw MLM encoder whitening > raw "
        "and whitening-d/3 >= whitening - 1 point; on the similarity-trained encoder whitening "
        "<= raw + 1 point (no clear gain); each beyond seed noise.",
        reported="BERT-base first-last-avg on STS-B test: 59.04 raw -> 71.20 whitening -> 71.42 "
        "whitening-256 (8069). SimBERT (8321, Chinese tasks, raw/whitening): P1 ATEC 38.50/23.64, "
        "BQ 48.54/31.78, LCQMC 76.23/75.05, STS-B 74.14/73.37; P4 STS-B 66.98/70.55.",
        fidelity="scaled-down",
        post_setting="Google BERT-base (uncased, 12 layers, 768) and SimBERT-base; whitening fitted "
        "on all sentences of the task (train+dev+test); STS-B test (English) and five Chinese "
        "tasks (SimBERT).",
        our_setting="Raw side: a 2-layer, 128-wide BERT pretrained by masked-LM from scratch on "
        "SST-2 train text (500 steps of 32 sentences, one encoder per seed, 3 seeds). "
        "Similarity-trained side: all-MiniLM-L6-v2 (fixed weights). Whitening fitted on the "
        "STS-B-en test sentences (full scale: train+dev+test), scored on its 1379 pairs.",
        reported_values=POST,
    )

    def run(self, ctx: Context) -> Run:
        from kexue.embed import SentenceEncoder
        from kexue.experiments._shared.en_encoder import (
            EnEncoderConfig,
            en_sentence_encoder,
            pretrain_en_encoder,
        )

        splits = ctx.pick(("test",), ("train", "dev", "test"), smoke=("test",))
        a, b, gold, n_eval = stsb_pairs(splits)
        if ctx.scale == "smoke":
            a, b, gold, n_eval = a[:100], b[:100], gold[:100], 100
        config = ctx.pick(EnEncoderConfig(seed=ctx.seed),
                          EnEncoderConfig(steps=4000, seed=ctx.seed),
                          smoke=EnEncoderConfig(hidden_size=24, num_heads=2, steps=3,
                                                batch_size=8, max_sentences=200, seed=ctx.seed))
        mlm = en_sentence_encoder(pretrain_en_encoder(config, ctx.cache_dir, ctx.log),
                                  max_length=config.max_length)
        pretrained = SentenceEncoder.from_pretrained(ctx.model_path(), max_length=64)
        metrics: dict[str, float] = {}
        for prefix, encoder in (("mlm", mlm), ("pretrained", pretrained)):
            vectors = encoder.encode_poolings(a + b, POOLINGS, progress=ctx.progress)
            metrics.update(encoder_scores(vectors, len(a), gold, n_eval, prefix))
        fitted = " + ".join(splits)
        return Run(
            metrics,
            tables=[whitening_table(metrics)],
            notes=[(f"Whitening fitted on the STS-B-en {fitted} sentences ({2 * len(a)} vectors), "
                   f"scored on {n_eval} test pairs; Spearman x100 of cosine vs gold. Raw encoder: "
                   f"hidden {config.hidden_size}, {config.num_layers} layers, MLM {config.steps} "
                   f"steps of {config.batch_size} (seed {ctx.seed}); d/3 keeps "
                   f"{round(config.hidden_size / 3)} of {config.hidden_size} (MiniLM: 128 of 384).")],
        )

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import grouped_bars

        groups = {f"{prefix} {pooling}": {v: stats[f"{prefix}/{pooling}/{v}"].mean
                                          for v in VARIANTS}
                  for prefix in ENCODERS for pooling in POOLINGS}
        path = ctx.figure("whitening.png")
        grouped_bars(groups, path, ylabel="Spearman x100 (STS-B test)",
                     title="Raw MLM encoder vs similarity-trained MiniLM: whitening by pooling")
        return Run({}, figures=[path.name])

    def checks(self, stats: Stats) -> list[Check]:
        p = "first-last-avg"
        return [
            stats.greater(f"mlm/{p}/whitening", f"mlm/{p}/raw",
                          description="raw encoder: whitening raises the score"),
            stats.not_worse(f"mlm/{p}/whitening-d/3", f"mlm/{p}/whitening", 1.0,
                            description="raw encoder: keeping d/3 components loses < 1 point"),
            stats.not_worse(f"pretrained/{p}/raw", f"pretrained/{p}/whitening", 1.0,
                            description="similarity-trained encoder: whitening gains < 1 point"),
        ]
