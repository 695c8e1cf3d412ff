"""T14 training-free length extrapolation: train a char LM at 128, evaluate it up to 1024.

Posts: Transformer升级之路：16、"复盘"长度外推技术 (2024-01-26,
https://kexue.fm/archives/9948), the review of training-free methods, and
Transformer升级之路：12、无限外推的ReRoPE？ (2023-08-07, https://kexue.fm/archives/9708),
whose table this compares with. The post trains a ~100M-parameter GAU LM at length 512
and reports next-token accuracy at 512 and at 4096 (8x) on natural ("non-repeated")
samples and on "repeated" ones (a text repeated to fill 4096, where a model that reads
far back can copy): at 8x ReRoPE > NTK > baseline > PI on both, and on repeated samples
ReRoPE reaches 82% against 49% at the training length.

Here: a 2-layer pre-LN RoPE Transformer (hidden 64, 2 heads of 32) trained at length
128 on tinyshakespeare (characters), once per seed, then evaluated with every
inference-time option of :class:`kexue.nn.RoPE` and window masks at 128, 256, 512 and
1024 (8x, the post's ratio). Metric: cross-entropy (nats) on the **last 128 tokens** of
each window, the windows of every length ending at the same positions (post 9708's
protocol, so the targets are identical across lengths); "repeated" windows repeat the
256 characters before the end (twice the training length, so a 128-key window cannot
see the earlier copy). log n is applied at inference only (the post's ``logn†``); the
post's NTK is its "fixed" NTK (``κ = s^(d/(d-2))``), ReRoPE uses ``w = L/2`` and Leaky
ReRoPE ``w = L/4, k = 16`` as in its tables. Each method's scale is ``s = L_test / 128``
for every length (the "dynamic" reading).
"""

from __future__ import annotations

from itertools import pairwise

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
# post 9708: token accuracy (%) at 4096 "non-repeated" samples, trained at 512 (8x);
# "logn" there means trained with log n, "logn†" inference only (ours)
POST_9708 = {
    "plain": 23.16, "plain+logn": 24.02, "pi": 13.54, "pi+logn": 16.51, "ntk": 39.61,
    "ntk+logn": 41.11, "rerope+logn": 48.85, "rerope": 48.48,
    "leaky-rerope+logn": 49.10,
}
POST_9708_REPEATED = {
    "plain": 24.17, "pi": 15.04, "ntk+logn": 55.94, "rerope+logn": 82.40,
    "leaky-rerope+logn": 85.15,
}
# the post's order at 8x, best first (accuracy on non-repeated samples): our losses must
# rise along it; leaky vs plain ReRoPE (49.10 vs 48.85) is too close to order
POST_ORDER = ("rerope+logn", "ntk+logn", "plain", "pi")
LONG_CONTEXT = ("rerope+logn", "leaky-rerope+logn")  # must beat the window at 8x
REPEATED = ("plain", "window", "pi", "ntk+logn", "rerope+logn", "leaky-rerope+logn")


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


def metric(variant: str, length: int, repeated: bool = False) -> str:
    return f"{'repeated' if repeated else 'text'}_{variant}_{length}"


@register
class LengthExtrapolation(Experiment):
    name = "length-extrapolation"
    techniques = ("T14",)
    datasets = ("tinyshakespeare",)
    minutes = {"quick": 1.7, "full": 60}
    claim = Claim(
        post="Transformer升级之路：16、\"复盘\"长度外推技术 (with 12、无限外推的ReRoPE？, 2023-08-07)",
        date="2024-01-26",
        url="https://kexue.fm/archives/9948",
        statement="A RoPE model trained short breaks down beyond its training length; "
        "training-free ReRoPE / Leaky ReRoPE keep it working at 8x while still using the long "
        "context (the longer the context, the lower the loss); at 8x ReRoPE > NTK > nothing > "
        "PI.",
        condition="Trained at 128, at 8x (1024), last-128-token loss: plain RoPE more than 10% "
        "above its loss at 128; ReRoPE+log n within 10% of it; the post's order at 8x on text, "
        "loss(ReRoPE+log n) < loss(NTK+log n) < loss(plain) < loss(PI); ReRoPE+log n and "
        "Leaky ReRoPE+log n below the 128-key window (they use the context beyond it) on text "
        "and on repeated text.",
        reported="Post 9708 (GAU ~100M, trained at 512, token accuracy; 512 / 4096 repeated / "
        "4096 non-repeated): Baseline 49.41 / 24.17 / 23.16%, PI 49.41 / 15.04 / 13.54%, "
        "NTK-logn†-fixed 49.41 / 55.94 / 41.11%, ReRoPE-w256-logn† 49.41 / 82.40 / 48.85%, "
        "Leaky ReRoPE-w128-k16-logn 49.40 / 85.15 / 49.10%. Post 9948: window attention alone "
        "'does not even keep the PPL from exploding'; with ReRoPE 'the longer the context, the "
        "lower the loss'.",
        fidelity="scaled-down",
        post_setting="GAU LM of ~100M parameters trained at length 512, tested at 4096 (8x) "
        "on natural and repeated samples; next-token accuracy.",
        our_setting="2-layer pre-LN RoPE char LM (hidden 64, ~100K parameters) trained at 128 for "
        "800 steps of batch 16 on tinyshakespeare, tested at 128-1024 (8x) on 16 held-out "
        "windows per length, natural and repeated (period 256); loss on the last 128 tokens; "
        "3 seeds.",
    )

    def run(self, ctx: Context) -> Run:
        lengths = ctx.pick(LENGTHS, LENGTHS, smoke=(32, 64, 128, 256))
        train_length = lengths[0]
        hidden = ctx.pick(64, 128, smoke=32)
        steps = ctx.pick(800, 4000, smoke=15)
        count = ctx.pick(16, 32, smoke=2)
        corpus = load_corpus("tinyshakespeare", max_chars=ctx.pick(None, None, smoke=60_000))
        config = LMConfig(corpus.vocab_size, hidden=hidden, layers=2, heads=2)
        model = train_cached(config, training_windows(corpus.train, train_length), steps=steps,
                             seed=ctx.seed, cache_dir=ctx.cache_dir,
                             tag=f"extrap-shakespeare-L{train_length}", batch_size=16, log=ctx.log)
        all_variants = variants(model.rope.dim, train_length)
        text = evaluate_variants(model, corpus.val, all_variants, list(lengths),
                                 last=train_length, count=count)
        repeated = evaluate_variants(model, corpus.val,
                                     [v for v in all_variants if v.name in REPEATED],
                                     list(lengths), last=train_length, count=count,
                                     period=2 * train_length)
        metrics: dict[str, float] = {}
        for is_repeated, losses in ((False, text), (True, repeated)):
            for v, by_length in losses.items():
                for n, loss in by_length.items():
                    metrics[metric(v, n, is_repeated)] = loss
        for n in lengths:
            metrics[f"text_plain_{n}_ratio"] = text["plain"][n] / text["plain"][train_length]
            metrics[f"text_rerope+logn_{n}_ratio"] = (text["rerope+logn"][n]
                                                      / text["plain"][train_length])
        note = (f"tinyshakespeare: {len(corpus.train):,} training characters, vocabulary "
                f"{corpus.vocab_size}, {steps} steps of 16 x {train_length}, {count} evaluation "
                f"windows per length; repeated windows have period {2 * train_length}.")
        return Run(metrics, notes=[note])

    def checks(self, stats: Stats) -> list[Check]:
        lengths = sorted({int(k.rsplit("_", 1)[1]) for k in stats if k.startswith("text_plain_")
                          and not k.endswith("ratio")})
        base, longest = lengths[0], lengths[-1]
        out = [
            stats.above(f"text_plain_{longest}_ratio", 1.10,
                        description=f"plain RoPE loss at {longest} > 1.10 x its loss at {base}"),
            stats.below(f"text_rerope+logn_{longest}_ratio", 1.10,
                        description=f"ReRoPE+log n loss at {longest} < 1.10 x plain's at {base}"),
        ]
        for better, worse in pairwise(POST_ORDER):
            out.append(stats.greater(metric(worse, longest), metric(better, longest),
                                     description=f"at {longest}: {better} lower loss than {worse} "
                                                 "(the post's order)"))
        for is_repeated in (False, True):
            for v in LONG_CONTEXT:
                what = "repeated text" if is_repeated else "text"
                out.append(stats.greater(metric("window", longest, is_repeated),
                                         metric(v, longest, is_repeated),
                                         description=f"{what} at {longest}: {v} lower loss than "
                                                     f"a {base}-key window (uses the context)"))
        return out

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        from kexue.evidence.plots import lines

        names = [v.name for v in variants(32)]
        lengths = sorted({int(k.split("_")[-1]) for k in stats
                          if k.startswith("text_plain_") and not k.endswith("ratio")})
        tables, figures = [], []
        for is_repeated, post_column, label in ((False, POST_9708, "text"),
                                                (True, POST_9708_REPEATED, "repeated text")):
            shown = [v for v in names if metric(v, lengths[0], is_repeated) in stats]
            head = ("| method | " + " | ".join(f"loss @ {n}" for n in lengths)
                    + " | post 9708 acc @ 8x |")
            rows = [head, "|" + "---|" * (len(lengths) + 2)]
            for v in shown:
                cells = [str(stats[metric(v, n, is_repeated)]) for n in lengths]
                post = f"{post_column[v]:.2f}%" if v in post_column else "–"
                rows.append(f"| {v} | " + " | ".join(cells) + f" | {post} |")
            tables.append(f"**{label}** (nats on the last {lengths[0]} tokens; lower is better; "
                          f"rerope: w = {lengths[0] // 2}, leaky-rerope: w = {lengths[0] // 4}, "
                          f"k = 16; window: {lengths[0]} keys; post column: its w256 / w128-k16 "
                          "at L = 512, accuracy, higher is better)\n\n" + "\n".join(rows))
            series = {v: (lengths, [stats[metric(v, n, is_repeated)].mean for n in lengths])
                      for v in shown}
            path = lines(series, ctx.figure(f"loss_vs_length_{label.replace(' ', '_')}.png"),
                         xlabel="evaluation length", ylabel="loss on last tokens (nats)",
                         logx=True, vline=lengths[0], title=f"{label}: trained at {lengths[0]}")
            figures.append(path.name)
        return Run({}, figures=figures, tables=tables)
