"""T30: the input- vs parameter-gradient-penalty inequality, measured through training.

Post: 输入梯度惩罚与参数梯度惩罚的一个不等式 (2021-12-11, kexue.fm/archives/8796). For an MLP
``h(t+1) = g(W_t h(t) + b_t)`` and any scalar ``f`` of its output, per example::

    ||∇x f||² · Σ_t (1 + ||h(t)||²) / (||W_t||² ||∇x h(t)||²)  <=  ||∇θ f||²

(:func:`kexue.explain.gradient_penalty_inequality`). The post proves it and reads it as
"a parameter-gradient penalty contains an input-gradient penalty"; it runs no experiment.
Here both sides are measured on held-out examples at several points of training of tanh
and ReLU MLPs on real data (SST-2 sentences as hashed bags of words), with ``f`` the
per-example cross-entropy: the verdict is whether the inequality held at every point.
The author's further reading — that the norms stay stable, so the two penalties are
roughly proportional during training — is reported (the rank correlation of the two sides
across examples, and how far their median ratio moves), not judged.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.evidence import Check, Claim, Context, Experiment, Run, Stats, plots, register
from kexue.evidence.tables import markdown_table

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
TOLERANCE = 1e-5  # relative slack for float32 rounding when lhs ≈ rhs


def hashed_bags(texts: list[str], dim: int) -> Tensor:
    """L2-normalised counts of lower-cased words hashed (CRC-32) into ``dim`` buckets."""
    x = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            x[i, zlib.crc32(word.encode()) % dim] += 1.0
    return F.normalize(x, dim=1)


def mlp(dim: int, hidden: int, depth: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(dim if i == 0 else hidden, hidden), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, nn.Linear(hidden, 2))


def both_sides(model: nn.Sequential, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(lhs, rhs) per example with ``f`` = the example's cross-entropy."""
    from kexue.explain import gradient_penalty_inequality

    def f(out: Tensor) -> Tensor:
        return F.cross_entropy(out, y, reduction="none")

    sides = gradient_penalty_inequality(model.eval(), x, f)
    model.train()
    return sides.lhs.detach(), sides.rhs.detach()


def spearman(a: Tensor, b: Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@register
class GradientPenaltyInequality(Experiment):
    name = "gp-inequality"
    techniques = ("T30",)
    datasets = ("sst2",)
    minutes: ClassVar[dict[str, float]] = {"quick": 1.2, "full": 6}
    claim = Claim(
        post="输入梯度惩罚与参数梯度惩罚的一个不等式",
        date="2021-12-11",
        url="https://kexue.fm/archives/8796",
        statement="For an MLP and any scalar function f of its output, ||∇x f||² weighted by "
        "Σ_t (1 + ||h_t||²) / (||W_t||² ||∇x h_t||²) is at most ||∇θ f||², so a "
        "parameter-gradient penalty contains an input-gradient penalty.",
        condition="On held-out examples, at every evaluated point of training (start, and "
        "after each tenth of it) of tanh and ReLU MLPs, no example has lhs > rhs (beyond "
        f"a relative {TOLERANCE:g} for float32 rounding), in every seed.",
        reported="A proof; no experiment in the post. The author reads it as the two "
        "penalties being roughly proportional while the norms stay stable.",
        fidelity="as-posted",
        post_setting="a theorem for any MLP and any scalar f (no experiment)",
        our_setting="MLPs (2 hidden layers of 64, tanh and ReLU) trained with Adam on 4000 "
        "SST-2 sentences as 512-bucket hashed bags of words; both sides on 256 held-out "
        "sentences at 11 points of training; f = per-example cross-entropy; 3 seeds",
    )

    def run(self, ctx: Context) -> Run:
        from kexue.data import load_sst2

        n_train, n_test = ctx.pick(4000, 20000, smoke=200), ctx.pick(256, 1024, smoke=32)
        dim, hidden = ctx.pick(512, 2048, smoke=64), ctx.pick(64, 256, smoke=16)
        steps, points = ctx.pick(600, 3000, smoke=20), 10
        train, test = load_sst2("train")[:n_train], load_sst2("test")[:n_test]
        x, y = hashed_bags([t for t, _ in train], dim), torch.tensor([lab for _, lab in train])
        xt, yt = hashed_bags([t for t, _ in test], dim), torch.tensor([lab for _, lab in test])
        metrics: dict[str, float] = {}
        curves: dict[str, tuple[list[float], list[float]]] = {}
        for activation in ACTIVATIONS:
            torch.manual_seed(ctx.seed)
            model = mlp(dim, hidden, 2, activation)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(ctx.seed)
            ratios, violations, max_ratio, corr = [], 0, 0.0, []
            for step in range(steps + 1):
                if step % (steps // points) == 0:
                    lhs, rhs = both_sides(model, xt, yt)
                    ratio = lhs / rhs.clamp_min(1e-30)
                    violations += int((lhs > rhs * (1 + TOLERANCE)).sum())
                    max_ratio = max(max_ratio, float(ratio.max()))
                    ratios.append(float(ratio.median()))
                    corr.append(spearman(lhs, rhs))
                if step == steps:
                    break
                idx = torch.randint(0, len(x), (64,), generator=g)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                accuracy = float((model.eval()(xt).argmax(1) == yt).float().mean()) * 100
            metrics |= {f"{activation}/violations": float(violations),
                        f"{activation}/max_ratio": max_ratio,
                        f"{activation}/median_ratio_start": ratios[0],
                        f"{activation}/median_ratio_end": ratios[-1],
                        f"{activation}/spearman_sides": sum(corr) / len(corr),
                        f"{activation}/test_accuracy": accuracy}
            curves[activation] = ([i / points for i in range(len(ratios))], ratios)
        return Run(metrics, figures=[self._plot(ctx, curves)])

    @staticmethod
    def _plot(ctx: Context, curves: dict[str, tuple[list[float], list[float]]]) -> str:
        path = ctx.figure(f"ratio-seed{ctx.seed}.png")
        plots.lines(curves, path, "fraction of training", "median lhs / rhs (held-out)",
                    f"both sides of the inequality through training (seed {ctx.seed})",
                    logy=True)
        return path.name

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        rows = [[a, stats[f"{a}/violations"].mean, stats[f"{a}/max_ratio"].mean,
                 stats[f"{a}/median_ratio_start"].mean, stats[f"{a}/median_ratio_end"].mean,
                 stats[f"{a}/spearman_sides"].mean, stats[f"{a}/test_accuracy"].mean]
                for a in ACTIVATIONS]
        table = markdown_table(["MLP", "violations", "max lhs/rhs", "median lhs/rhs at start",
                                "at end", "Spearman(lhs, rhs)", "test acc %"], rows, digits=3)
        note = ("The inequality is a theorem, so violations must be 0 in every seed; the ratio "
                "and the rank correlation say how tight it is and whether the two penalties "
                "move together (the author's 'roughly proportional' reading is not judged).")
        return Run({}, tables=[table], notes=[note])

    def checks(self, stats: Stats) -> list[Check]:
        return [stats.every_below(f"{a}/violations", 0.5,
                            f"{a}: no held-out example violates it at any point of training")
                for a in ACTIVATIONS]
