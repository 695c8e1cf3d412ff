"""T14 training-free length extrapolation: train a char LM at 128, evaluate it up to 1024.

Posts: Transformer升级之路：16、"复盘"长度外推技术 (2024-01-26,
https://kexue.fm/archives/9948), the review of training-free methods, and
Transformer升级之路：12、无限外推的ReRoPE？ (2023-08-07, https://kexue.fm/archives/9708),
whose table this compares with. The post trains a ~100M-parameter GAU LM at length 512
and reports next-token accuracy at 512 and at 4096 (8x).

Here: a 2-layer pre-LN RoPE Transformer (hidden 64, 2 heads of 32) trained at length
128 on tinyshakespeare and on the Tang poems (characters), once per seed
(weights cached), then evaluated with every inference-time option of
:class:`kexue.nn.RoPE` and window masks at 128, 256, 512 and 1024 (8x, the post's ratio).
Metric: cross-entropy (nats) on the **last 128 tokens** of each window, the windows of
every length ending at the same positions (post 9708's protocol, so the targets are
identical across lengths). log n is applied at inference only (the post's
``logn†``); the post's NTK is its "fixed" NTK (``κ = s^(d/(d-2))``), ReRoPE uses
``w = L/2`` and Leaky ReRoPE ``w = L/4, k = 16`` as in its tables. Each method's
scale is ``s = L_test / 128`` for every length (the "dynamic" reading).
"""

from __future__ import annotations

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.lm import (
    LMConfig,
    Variant,
    evaluate_variants,
    load_corpus,
    train_cached,
    training_windows,
)
from kexue.nn import RoPE, window_mask

TRAIN_LENGTH = 128
LENGTHS = (128, 256, 512, 1024)
CORPORA = {"shakespeare": "tinyshakespeare", "tang": "tang"}
# post 9708: token accuracy (%) at 4096 "non-repeated" samples, trained at 512 (8x);
# "logn" there means trained with log n, "logn†" inference only (ours)
POST_9708 = {
    "plain": 23.16, "plain+logn": 24.02, "pi": 13.54, "pi+logn": 16.51, "ntk": 39.61,
    "ntk+logn": 41.11, "rerope+logn": 48.85, "rerope": 48.48,
    "leaky-rerope+logn": 49.10,
}
KEY_VARIANTS = ("rerope+logn", "leaky-rerope+logn", "ntk+logn")


def variants(dim: int, train_length: int = TRAIN_LENGTH) -> list[Variant]:
    """Every inference-time option, as (name, RoPE for a length, mask for a length)."""
    L = train_length

    def rope(variant: str = "plain", **kw):
        return lambda n: RoPE(dim, variant=variant, train_length=L, **kw)

    return [
        Variant("plain", rope()),
        Variant("plain+logn", rope(log_n=True)),
        Variant("window", rope(), lambda n: window_mask(n, L)),
        Variant("window+sink4", rope(), lambda n: window_mask(n, L, sink=4)),
        Variant("pi", rope("pi")),
        Variant("pi+logn", rope("pi", log_n=True)),
        Variant("ntk", rope("ntk")),
        Variant("ntk+logn", rope("ntk", log_n=True)),
        Variant("yarn", rope("yarn")),
        Variant("rerope", rope("rerope", window=L // 2)),
        Variant("rerope+logn", rope("rerope", window=L // 2, log_n=True)),
        Variant("leaky-rerope+logn", rope("leaky-rerope", window=L // 4, leak=16.0, log_n=True)),
    ]


def metric(corpus: str, variant: str, length: int) -> str:
    return f"{corpus}_{variant}_{length}"


@register
class LengthExtrapolation(Experiment):
    name = "length-extrapolation"
    techniques = ("T14",)
    datasets = ("tinyshakespeare", "chinese-poetry-tang")
    minutes = {"quick": 6, "full": 60}
    claim = Claim(
        post="Transformer升级之路：16、\"复盘\"长度外推技术 (with 12、无限外推的ReRoPE？, 2023-08-07)",
        date="2024-01-26",
        url="https://kexue.fm/archives/9948",
        statement="A RoPE model trained short degrades beyond its training length; training-free "
        "ReRoPE / Leaky ReRoPE and NTK with log-n scaling keep it working at several times the "
        "length (ReRoPE best, then NTK; PI worse than doing nothing).",
        condition="On both char corpora, trained at 128: the plain model's last-128-token loss at "
        "4x (512) is more than 10% above its loss at 128, and ReRoPE+log n, Leaky ReRoPE+log n "
        "and NTK+log n stay within 10% of the 128 loss at 512.",
        reported="Post 9708 (GAU ~100M, trained at 512, token accuracy at 4096 non-repeated): "
        "Baseline 23.16%, PI 13.54%, NTK-fixed 39.61%, NTK-logn†-fixed 41.11%, ReRoPE-w256 "
        "48.48%, ReRoPE-w256-logn† 48.85%, Leaky ReRoPE-w128-k16-logn 49.10%; at 512: 49.41%.",
    )

    def run(self, ctx: Context) -> Run:
        lengths = ctx.pick(LENGTHS, LENGTHS, smoke=(32, 64))
        train_length = lengths[0]
        hidden = ctx.pick(64, 128, smoke=32)
        steps = ctx.pick(600, 4000, smoke=15)
        count = ctx.pick(8, 32, smoke=2)
        metrics: dict[str, float] = {}
        notes = []
        for short, corpus_name in CORPORA.items():
            corpus = load_corpus(corpus_name, max_chars=ctx.pick(1_200_000, None, smoke=60_000),
                                 max_vocab=ctx.pick(1500, 4000, smoke=300))
            config = LMConfig(corpus.vocab_size, hidden=hidden, layers=2, heads=2)
            windows = training_windows(corpus.train, train_length)
            model = train_cached(config, windows, steps=steps, seed=ctx.seed,
                                 cache_dir=ctx.cache_dir, tag=f"extrap-{short}-L{train_length}",
                                 batch_size=16, log=ctx.log)
            losses = evaluate_variants(model, corpus.val, variants(model.rope.dim, train_length),
                                       list(lengths), last=train_length, count=count)
            for v, by_length in losses.items():
                for n, loss in by_length.items():
                    metrics[metric(short, v, n)] = loss
                    metrics[metric(short, v, n) + "_ratio"] = loss / by_length[train_length]
            notes.append(f"{short}: {len(corpus.train):,} training characters, vocabulary "
                         f"{corpus.vocab_size}, {steps} steps of 16 x {train_length}, {count} "
                         f"evaluation windows per length.")
        return Run(metrics, notes=notes)

    def checks(self, stats: Stats) -> list[Check]:
        lengths = sorted({int(k.rsplit("_", 1)[1]) for k in stats if k.startswith("shakespeare_plain_")
                          and not k.endswith("ratio")})
        base, four = lengths[0], lengths[min(2, len(lengths) - 1)]
        out = []
        for short in CORPORA:
            out.append(stats.above(metric(short, "plain", four) + "_ratio", 1.10,
                                   description=f"{short}: plain RoPE loss at {four} > 1.10 x loss at {base}"))
            for v in KEY_VARIANTS:
                out.append(stats.below(metric(short, v, four) + "_ratio", 1.10,
                                       description=f"{short}: {v} loss at {four} < 1.10 x loss at {base}"))
        return out

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        from kexue.evidence.plots import lines

        names = [v.name for v in variants(32)]
        lengths = sorted({int(k.split("_")[-1]) for k in stats
                          if k.startswith("shakespeare_plain_") and not k.endswith("ratio")})
        tables, figures, notes = [], [], []
        for short in CORPORA:
            head = "| method | " + " | ".join(f"loss @ {n}" for n in lengths) + " | post 9708 acc @ 8x |"
            rows = [head, "|" + "---|" * (len(lengths) + 2)]
            for v in names:
                cells = [str(stats[metric(short, v, n)]) for n in lengths]
                post = f"{POST_9708[v]:.2f}%" if v in POST_9708 else "–"
                rows.append(f"| {v} | " + " | ".join(cells) + f" | {post} |")
            tables.append(f"**{short}** (nats on the last {lengths[0]} tokens; lower is better; "
                          f"rerope: w = {lengths[0] // 2}, leaky-rerope: w = {lengths[0] // 4}, k = 16; "
                          f"window: {lengths[0]} keys; post columns: its w256 / w128-k16 at L = 512)\n\n"
                          + "\n".join(rows))
            series = {v: (lengths, [stats[metric(short, v, n)].mean for n in lengths]) for v in names}
            path = lines(series, ctx.figure(f"loss_vs_length_{short}.png"), xlabel="evaluation length",
                         ylabel="loss on last tokens (nats)", logx=True, vline=lengths[0],
                         title=f"{short}: trained at {lengths[0]}")
            figures.append(path.name)
            # ordering at the longest length vs the post's ordering (accuracy, higher better)
            ours = sorted((v for v in names if v in POST_9708),
                          key=lambda v: stats[metric(short, v, lengths[-1])].mean)
            post = sorted(POST_9708, key=lambda v: -POST_9708[v])
            notes.append(f"{short}: best-to-worst at {lengths[-1]}: ours " + " > ".join(ours)
                         + "; post 9708 at 8x: " + " > ".join(post) + ".")
        return Run({}, figures=figures, tables=tables, notes=notes)
