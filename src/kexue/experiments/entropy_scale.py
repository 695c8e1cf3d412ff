"""T32 entropy-invariant attention scale: ``log_512(n)/√d`` instead of ``1/√d``.

Post: 从熵不变性看Attention的Scale操作 (2021-12-21, https://kexue.fm/archives/8823).
Keeping the attention entropy independent of the number of keys ``n`` asks for a
logit scale ``∝ log n``; calibrated to equal ``1/√d`` at ``n = 512`` it is
``log_512(n)/√d`` (``kexue.nn.MultiHeadAttention(scale="entropy")``, ``n`` the visible
keys, clamped at 16). The post trains a RoFormer-small MLM at length 64 and reports
MLM accuracy at 64 / 128 / 256 / 512 / 1024: Attention-O 43.27 / 36.53 / 23.02 /
15.12 / 11.54, Attention-E 43.11 / 41.17 / 34.04 / 20.15 / 13.58.

Here: a 2-layer bidirectional RoPE Transformer (hidden 64, 2 heads) trained as an MLM
(15% BERT masking) at length 64 on the Tang poems (characters), one model per scale
and seed; MLM accuracy on held-out text at 64 / 128 / 256 / 512 (the same masked
positions per length). Plus the research note's numeric study: one query, one
relevant key (``k = q``) among ``n - 1`` random keys on the sphere of radius ``√d``;
mean attention entropy and weight on the relevant key vs ``n`` for both scales.
"""

from __future__ import annotations

import math

import torch

from kexue.data import mask_tokens
from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.lm import (
    LMConfig,
    load_corpus,
    train_cached,
    training_windows,
)

SCALES = ("sqrt", "entropy")
LENGTHS = (64, 128, 256, 512)
POST = {"sqrt": (43.27, 36.53, 23.02, 15.12), "entropy": (43.11, 41.17, 34.04, 20.15)}
STUDY_N = (16, 64, 256, 512, 1024, 4096)


def attention_entropy_study(d: int, ns: tuple[int, ...], trials: int, seed: int
                            ) -> dict[str, dict[int, tuple[float, float]]]:
    """``{scale: {n: (mean entropy in nats, mean weight on the relevant key)}}``.

    ``q`` and keys are uniform on the sphere of radius ``√d``; key 0 equals ``q``.
    Logits are ``λ q·k`` with ``λ = 1/√d`` (sqrt) or ``log_512(max(n, 16))/√d`` (entropy).
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, dict[int, tuple[float, float]]] = {s: {} for s in SCALES}
    for n in ns:
        q = torch.nn.functional.normalize(torch.randn(trials, 1, d, generator=g, dtype=torch.float64), dim=-1)
        k = torch.nn.functional.normalize(torch.randn(trials, n, d, generator=g, dtype=torch.float64), dim=-1)
        k[:, :1] = q
        dots = d * (q @ k.transpose(1, 2))[:, 0]  # (trials, n): |q| = |k| = √d
        for scale in SCALES:
            lam = 1 / math.sqrt(d) * (1.0 if scale == "sqrt" else math.log(max(n, 16)) / math.log(512))
            p = (lam * dots).softmax(-1)
            entropy = -(p * p.clamp_min(1e-300).log()).sum(-1)
            out[scale][n] = (float(entropy.mean()), float(p[:, 0].mean()))
    return out


@torch.no_grad()
def mlm_accuracy(model, val: torch.Tensor, length: int, tokens: int, mask_id: int, vocab_size: int,
                 seed: int = 1234, batch_size: int = 8) -> float:
    """Accuracy (%) on the masked positions of consecutive windows of ``length`` covering the
    first ``tokens`` validation ids (the same masks at every length: one generator draw over
    the whole stretch); ``model(ids, is_causal=False)`` gives the logits."""
    if tokens < length or len(val) < tokens:
        raise ValueError(f"need length ({length}) <= tokens ({tokens}) <= len(val) ({len(val)})")
    stretch = val[: tokens - tokens % length]
    inputs, targets = mask_tokens(stretch[None], mask_id, mask_id, torch.Generator().manual_seed(seed),
                                  num_special=1)
    inputs, targets = inputs.view(-1, length), targets.view(-1, length)
    correct = total = 0
    for i in range(0, len(inputs), batch_size):
        logits = model(inputs[i:i + batch_size], is_causal=False).logits
        t = targets[i:i + batch_size]
        keep = t != -100
        correct += int((logits.argmax(-1)[keep] == t[keep]).sum())
        total += int(keep.sum())
    return 100.0 * correct / total


@register
class EntropyScale(Experiment):
    name = "entropy-scale"
    techniques = ("T32",)
    datasets = ("chinese-poetry-tang",)
    minutes = {"quick": 8, "full": 40}
    claim = Claim(
        post="从熵不变性看Attention的Scale操作",
        date="2021-12-21",
        url="https://kexue.fm/archives/8823",
        statement="Scaling attention logits by log_512(n)/√d instead of 1/√d keeps the "
        "attention entropy stable in n, so a model trained short extrapolates better at no "
        "cost at the training length.",
        condition="RoPE MLM trained at length 64: scale='entropy' is within 1 point of "
        "scale='sqrt' in MLM accuracy at 64 (equivalence) and more accurate (beyond seed noise, "
        "paired) at every longer length, 128, 256 and 512.",
        reported="RoFormer-small MLM trained at 64, accuracy at 64/128/256/512/1024: "
        "Attention-O 43.27/36.53/23.02/15.12/11.54, Attention-E 43.11/41.17/34.04/20.15/13.58.",
        fidelity="scaled-down",
        post_setting="RoFormer-small (RoPE) MLM trained at sequence length 64 on Chinese text, "
        "MLM accuracy at 64 to 1024.",
        our_setting="2-layer bidirectional RoPE Transformer (hidden 64, 2 heads) trained as an "
        "MLM at length 64 for 2000 steps of batch 32 on the Tang poems (characters, vocabulary "
        "1,500); MLM accuracy on 32,768 held-out characters per length (64-512); 3 seeds.",
        reported_values={f"{scale}_acc_{n}": v for scale, values in POST.items()
                         for n, v in zip(LENGTHS, values)},
    )

    def run(self, ctx: Context) -> Run:
        lengths = ctx.pick(LENGTHS, LENGTHS, smoke=(16, 32))
        corpus = load_corpus("tang", max_chars=ctx.pick(1_200_000, None, smoke=60_000),
                             max_vocab=ctx.pick(1500, 4000, smoke=300))
        steps = ctx.pick(2000, 5000, smoke=10)
        tokens = ctx.pick(64 * 512, 128 * 512, smoke=4 * 32)  # ~15% of them masked
        windows = training_windows(corpus.train, lengths[0] - 1, stride=lengths[0])  # rows of 64
        metrics: dict[str, float] = {}

        def mlm_loss(model, batch):
            # id 0 (unknown) is never a target; replacements never draw [MASK] (the last id)
            inputs, targets = mask_tokens(batch[0], corpus.mask_id, corpus.mask_id, num_special=1)
            logits = model(inputs, is_causal=False).logits
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                                     ignore_index=-100)

        for scale in SCALES:
            config = LMConfig(corpus.vocab_size, hidden=ctx.pick(64, 128, smoke=32), layers=2,
                              heads=2, scale=scale)
            model = train_cached(config, windows, steps=steps, seed=ctx.seed, cache_dir=ctx.cache_dir,
                                 tag=f"mlm-tang-{scale}-L{lengths[0]}", loss_fn=mlm_loss,
                                 batch_size=32, log=ctx.log)
            for n in lengths:
                metrics[f"{scale}_acc_{n}"] = mlm_accuracy(model, corpus.val, n, tokens,
                                                           corpus.mask_id, corpus.vocab_size)
        study = attention_entropy_study(64, STUDY_N, ctx.pick(200, 1000, smoke=20), ctx.seed)
        for scale, by_n in study.items():
            for n, (entropy, weight) in by_n.items():
                metrics[f"study_{scale}_entropy_{n}"] = entropy
                metrics[f"study_{scale}_weight_{n}"] = weight
        for scale in SCALES:  # how much the entropy moves from n = 64 to n = 4096
            metrics[f"study_{scale}_entropy_drift"] = (metrics[f"study_{scale}_entropy_{STUDY_N[-1]}"]
                                                       - metrics[f"study_{scale}_entropy_64"])
        note = (f"Tang poems: {len(corpus.train):,} training characters, vocabulary "
                f"{corpus.vocab_size}; {steps} steps of 32 x {lengths[0]}; accuracy over {tokens} "
                "held-out tokens per length (about 15% of them masked).")
        return Run(metrics, notes=[note])

    def checks(self, stats: Stats) -> list[Check]:
        lengths = sorted(int(k.rsplit("_", 1)[1]) for k in stats if k.startswith("sqrt_acc_"))
        base = lengths[0]
        out = [stats.within(f"entropy_acc_{base}", f"sqrt_acc_{base}", 1.0,
                            description=f"entropy scale within 1 point of sqrt at {base}")]
        for n in lengths[1:]:
            out.append(stats.greater(f"entropy_acc_{n}", f"sqrt_acc_{n}",
                                     description=f"entropy scale more accurate than sqrt at {n}"))
        return out

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        from kexue.evidence.plots import lines

        lengths = sorted(int(k.rsplit("_", 1)[1]) for k in stats if k.startswith("sqrt_acc_"))
        rows = ["| scale | " + " | ".join(f"acc @ {n}" for n in lengths) + " | post (64/128/256/512) |",
                "|" + "---|" * (len(lengths) + 2)]
        for scale in SCALES:
            rows.append(f"| {scale} | " + " | ".join(str(stats[f"{scale}_acc_{n}"]) for n in lengths)
                        + " | " + " / ".join(f"{v:.2f}" for v in POST[scale]) + " |")
        study_rows = ["| n | " + " | ".join(f"entropy ({s}) | weight on relevant ({s})" for s in SCALES)
                      + " |", "|" + "---|" * 5]
        for n in STUDY_N:
            study_rows.append(f"| {n} | " + " | ".join(
                f"{stats[f'study_{s}_entropy_{n}'].mean:.3f} | {stats[f'study_{s}_weight_{n}'].mean:.3f}"
                for s in SCALES) + " |")
        acc = lines({s: (lengths, [stats[f"{s}_acc_{n}"].mean for n in lengths]) for s in SCALES},
                    ctx.figure("mlm_accuracy_vs_length.png"), xlabel="evaluation length",
                    ylabel="MLM accuracy (%)", logx=True, vline=lengths[0],
                    title=f"RoPE MLM trained at {lengths[0]}")
        ent = lines({s: (list(STUDY_N), [stats[f"study_{s}_entropy_{n}"].mean for n in STUDY_N])
                     for s in SCALES}, ctx.figure("attention_entropy_vs_n.png"), xlabel="n (keys)",
                    ylabel="attention entropy (nats)", logx=True, vline=512,
                    title="one relevant key among n (d = 64)")
        return Run({}, figures=[acc.name, ent.name],
                   tables=["MLM accuracy (%)\n\n" + "\n".join(rows),
                           "Numeric entropy study (d = 64)\n\n" + "\n".join(study_rows)])
