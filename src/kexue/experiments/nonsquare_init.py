"""T27 Non-square initialisation: second moments through a deep m↔n MLP per averaging strategy.

Post: 初始化方法中非方阵的维度平均策略思考 (2021-10-18, https://kexue.fm/archives/8725).
An ``m × n`` weight with variance ``t`` multiplies the forward second moment by ``m t`` and
the backward one by ``n t``. The post compares three averages of the two dimensions:
arithmetic ``(m+n)/2`` (Xavier), geometric ``√(mn)`` — keeps both moments exactly through
any product that returns to its input width (m→n→m: ``(m t)(n t) = 1``), the "global"
optimum — and quadratic ``(m²+n²)/(m+n)``, the minimiser of ``(mt−1)² + (nt−1)²``, the
"local" (per-layer) optimum; arithmetic lies in between. It runs no experiment.

Here: 20-layer MLPs alternating widths m = 64 and n = 256 (the FFN shape m→n→m, 10 times),
linear and ReLU (gain √2 on every strategy), Gaussian inputs and a Gaussian gradient at the
output. For each strategy we measure, with autograd, the second moment of every layer's
output and of the gradient at every layer's input, averaged over the inputs and over 16
independently drawn networks (the expectation the post's factors describe; a single deep
ReLU network at this width scatters by ~0.2 in log10), and compare with the products of
``m t`` and ``n t`` the post predicts: the end-to-end ratios (output/input forward,
input-gradient/output-gradient backward) and the per-layer deviation
``mean_layers[(r_fwd − 1)² + (r_bwd − 1)²]``.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.threads import torch_threads

STRATEGIES = ("fan_in", "fan_out", "arithmetic", "geometric", "quadratic")
ACTIVATIONS = {"linear": 1.0, "relu": math.sqrt(2.0)}  # activation -> gain
AGREEMENT = 0.1  # |log10 measured - log10 predicted| that counts as agreement


def widths(m: int, n: int, pairs: int) -> list[int]:
    """``[m, n, m, n, ..., m]``: ``2 * pairs`` layers that return to width ``m``."""
    return [m, n] * pairs + [m]


def predicted_factors(sizes: list[int], average: str) -> tuple[list[float], list[float]]:
    """The post's per-layer forward (``m t``) and backward (``n t``) factors."""
    from kexue.nn.init import average_dimension

    fwd, bwd = [], []
    for m, n in pairwise(sizes):
        t = 1.0 / average_dimension(m, n, average)
        fwd.append(m * t)
        bwd.append(n * t)
    return fwd, bwd


def measured_moments(sizes: list[int], average: str, activation: str, networks: int,
                     batch: int) -> tuple[Tensor, Tensor]:
    """Second moments of the activations (forward) and of the gradients (backward) at each
    width of ``sizes``, averaged over inputs and over ``networks`` independent weight draws
    (the expectation the post's factors predict): two ``(len(sizes),)`` tensors, input
    first. Draws from torch's global generator."""
    from kexue.nn.init import fan_average_normal_

    gain = ACTIVATIONS[activation]
    x = torch.randn(networks, batch, sizes[0], requires_grad=True)
    h, hidden = x, [x]
    for m, n in pairwise(sizes):
        weight = torch.stack([fan_average_normal_(torch.empty(n, m), average, gain=gain)
                              for _ in range(networks)])  # (networks, out, in)
        h = h @ weight.transpose(1, 2)  # (networks, batch, out)
        if activation == "relu":
            h = torch.relu(h)
        h.retain_grad()
        hidden.append(h)
    (h * torch.randn(h.shape)).sum().backward()
    forward = torch.stack([a.detach().square().mean() for a in hidden])
    backward = torch.stack([a.grad.square().mean() for a in hidden])
    return forward, backward


def layer_ratios(moments: Tensor) -> Tensor:
    """Per-layer ratios of successive second moments: ``(layers,)``."""
    return moments[1:] / moments[:-1]


@register
class NonSquareInit(Experiment):
    name = "nonsquare-init"
    techniques = ("T27",)
    minutes: ClassVar[dict[str, float]] = {"quick": 0.5, "full": 2}
    seeds = 3
    claim = Claim(
        post="初始化方法中非方阵的维度平均策略思考",
        date="2021-10-18",
        url="https://kexue.fm/archives/8725",
        statement="With variance 1/d for an m x n weight, the geometric mean d = √(mn) keeps "
        "forward and backward second moments through compositions that return to the same "
        "width (global optimum), the quadratic mean (m²+n²)/(m+n) keeps each layer's moments "
        "closest to 1 (local optimum), and the arithmetic mean (Xavier) lies in between.",
        condition="In 20-layer 64↔256 MLPs (linear and ReLU): measured end-to-end ratios "
        "agree with the predicted products within 0.1 in log10 for every strategy; the "
        "end-to-end |log10 ratio| is smallest for geometric, then arithmetic, then quadratic "
        "(forward and backward); the per-layer deviation is smallest for quadratic, then "
        "arithmetic, then geometric.",
        reported="No experiment, only the derivation: (m²+n²)/(m+n) >= (m+n)/2 >= √(mn); "
        "'perhaps Xavier's arithmetic mean is a reasonable middle way'.",
        fidelity="as-posted",
        post_setting="Analysis of y = x W1 W2 with W1 m x n, W2 n x m; no model, no data.",
        our_setting="Random Gaussian inputs (64 per network) through 16 independently drawn "
        "networks of 20 layers alternating widths 64/256, linear and ReLU (gain √2), per "
        "seed; moments averaged over inputs and networks.",
    )

    @torch_threads(1)  # small tensors: one thread is fastest on a busy machine
    def run(self, ctx: Context) -> Run:
        pairs = ctx.pick(10, 10, smoke=2)
        m, n = ctx.pick(64, 256, smoke=16), ctx.pick(256, 1024, smoke=64)
        networks, batch = ctx.pick(16, 64, smoke=2), ctx.pick(64, 128, smoke=8)
        sizes = widths(m, n, pairs)
        torch.manual_seed(ctx.seed)
        metrics: dict[str, float] = {}
        for activation in ACTIVATIONS:
            for average in STRATEGIES:
                key = f"{activation}/{average}"
                forward, backward = measured_moments(sizes, average, activation, networks, batch)
                fwd_pred, bwd_pred = predicted_factors(sizes, average)
                r_fwd, r_bwd = layer_ratios(forward), 1 / layer_ratios(backward)
                metrics[f"{key}/forward"] = math.log10(forward[-1] / forward[0])
                metrics[f"{key}/backward"] = math.log10(backward[0] / backward[-1])
                metrics[f"{key}/forward_predicted"] = math.log10(math.prod(fwd_pred))
                metrics[f"{key}/backward_predicted"] = math.log10(math.prod(bwd_pred))
                metrics[f"{key}/local"] = ((r_fwd - 1).square() + (r_bwd - 1).square()).mean().item()
                metrics[f"{key}/local_predicted"] = sum(
                    (a - 1) ** 2 + (b - 1) ** 2 for a, b in zip(fwd_pred, bwd_pred)) / len(fwd_pred)
                for i, value in enumerate(forward.log10().tolist()):
                    metrics[f"{key}/forward_layer_{i}"] = value
                for i, value in enumerate(backward.log10().tolist()):
                    metrics[f"{key}/backward_layer_{i}"] = value
        return Run(metrics)

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import lines
        from kexue.evidence.tables import markdown_table

        figures = []
        for activation in ACTIVATIONS:
            for direction in ("forward", "backward"):
                keys = sorted((k for k in stats if k.startswith(f"{activation}/fan_in/{direction}_layer_")),
                              key=lambda k: int(k.rsplit("_", 1)[1]))
                series = {s: (list(range(len(keys))),
                              [stats[f"{activation}/{s}/{direction}_layer_{i}"].mean
                               for i in range(len(keys))]) for s in STRATEGIES}
                path = lines(series, ctx.figure(f"{activation}_{direction}.png"),
                             xlabel="layer (0 = input)", ylabel="log10 second moment",
                             title=f"{activation} MLP, {direction} second moment per layer")
                figures.append(path.name)
        header = ["activation", "strategy", "fwd log10 ratio", "predicted", "bwd log10 ratio",
                  "predicted", "per-layer deviation", "predicted"]
        rows = [[a, s, *(str(stats[f"{a}/{s}/{k}"]) for k in
                         ("forward", "forward_predicted", "backward", "backward_predicted",
                          "local", "local_predicted"))]
                for a in ACTIVATIONS for s in STRATEGIES]
        return Run({}, figures=figures, tables=[markdown_table(header, rows)])

    def checks(self, stats: Stats) -> list[Check]:
        checks = []
        for a in ACTIVATIONS:
            for d in ("forward", "backward"):
                checks += [stats.within(f"{a}/{s}/{d}", f"{a}/{s}/{d}_predicted", AGREEMENT,
                                        f"{a} {s} {d}: measured = predicted (log10, ±{AGREEMENT})")
                           for s in STRATEGIES]
                # |log10 ratio|: geometric < arithmetic < quadratic (the means are all <= 0)
                checks.append(stats.greater(f"{a}/geometric/{d}", f"{a}/arithmetic/{d}",
                                            description=f"{a} {d}: geometric drifts less than arithmetic"))
                checks.append(stats.greater(f"{a}/arithmetic/{d}", f"{a}/quadratic/{d}",
                                            description=f"{a} {d}: arithmetic drifts less than quadratic"))
            checks.append(stats.greater(f"{a}/arithmetic/local", f"{a}/quadratic/local",
                                        description=f"{a}: quadratic has the smallest per-layer deviation"))
            checks.append(stats.greater(f"{a}/geometric/local", f"{a}/arithmetic/local",
                                        description=f"{a}: arithmetic's per-layer deviation is below geometric's"))
        return checks
