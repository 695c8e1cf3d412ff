"""T12 BERT-whitening on MiniLM over STS-B (English), for every pooling.

Post: 你可能不需要BERT-flow：一个线性变换媲美BERT-flow (2021-01-11, kexue.fm/archives/8069).
The author fits mu and W on all sentence vectors of the evaluated task ("target"),
transforms, optionally keeps the first k components, L2-normalises and scores pairs by
cosine; metric = Spearman x100 against the gold scores. Here the encoder is the
contrastively trained all-MiniLM-L6-v2, not raw BERT, so "no gain" is a legitimate
outcome (TECHNIQUES.md, T12).
"""

from __future__ import annotations

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.sts import WHITENING_VARIANTS as VARIANTS
from kexue.experiments._shared.sts import stsb_pairs, whitening_scores

POOLINGS = ("cls", "mean", "first-last-avg", "last-2-avg")

POST_TABLE = (
    "| BERT-base, STS-B test (post 8069) | first-last-avg | whitening | whitening-256 |\n"
    "|---|---|---|---|\n"
    "| Spearman x100 | 59.04 | 71.20 | 71.42 |"
)




def whitening_table(rows: dict[str, dict[str, float]]) -> str:
    head = "| pooling | " + " | ".join(VARIANTS) + " |"
    lines = [head, "|---|" + "---|" * len(VARIANTS)]
    for pooling, values in rows.items():
        lines.append(f"| {pooling} | " + " | ".join(f"{values[v]:.2f}" for v in VARIANTS) + " |")
    return "\n".join(lines)




@register
class BertWhitening(Experiment):
    name = "whitening"
    techniques = ("T12",)
    datasets = ("stsb-en",)
    deterministic = True  # a fixed pretrained encoder and a closed-form transform
    minutes = {"quick": 2, "full": 6}
    claim = Claim(
        post="你可能不需要BERT-flow：一个线性变换媲美BERT-flow",
        date="2021-01-11",
        url="https://kexue.fm/archives/8069",
        statement="Whitening the sentence vectors (x - mu) U diag(1/sqrt(s)) raises STS Spearman "
        "over raw pooled BERT vectors, and keeping 256 of the components loses nothing.",
        condition="On MiniLM over STS-B-en test with first-last-avg pooling (the post's setting): "
        "whitening > raw, and whitening-256 >= whitening - 1 point.",
        reported="BERT-base first-last-avg 59.04 -> whitening 71.20 -> whitening-256 71.42 "
        "(STS-B test, Spearman x100, fitted on the task's sentences).",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.embed import SentenceEncoder

        splits = ctx.pick(("test",), ("train", "dev", "test"))
        a, b, gold, n_eval = stsb_pairs(splits)
        encoder = SentenceEncoder.from_pretrained(pooling=POOLINGS[0])
        vectors = encoder.encode_poolings(a + b, POOLINGS)
        rows = {}
        for pooling in POOLINGS:
            v = vectors[pooling]
            rows[pooling] = whitening_scores(v[: len(a)], v[len(a):], gold, n_eval)
        metrics = {f"{p}/{v}": s for p, scores in rows.items() for v, s in scores.items()}
        fitted = "the test sentences" if len(splits) == 1 else "train+dev+test sentences"
        return Run(
            metrics,
            tables=[whitening_table(rows), POST_TABLE],
            notes=[(f"Whitening fitted on {fitted} ({2 * len(a)} vectors), evaluated on the "
                   f"{n_eval} test pairs; Spearman x100 of cosine vs gold.")],
        )

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import grouped_bars

        groups = {p: {v: stats[f"{p}/{v}"].mean for v in VARIANTS} for p in POOLINGS}
        path = ctx.figure("whitening.png")
        grouped_bars(groups, path, ylabel="Spearman x100 (STS-B test)",
                     title="MiniLM: raw vs whitening, by pooling")
        return Run({}, figures=[path.name])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.greater("first-last-avg/whitening", "first-last-avg/raw"),
            stats.not_worse("first-last-avg/whitening-256", "first-last-avg/whitening", 1.0),
        ]
