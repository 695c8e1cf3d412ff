"""T28 Gradient-normalised discriminator on the 8-Gaussians ring: modes and sample quality.

Post: WGAN新方案：通过梯度归一化来实现L约束 (2021-11-15, https://kexue.fm/archives/8757).
Gradient normalisation (Wu et al., ICCV 2021) replaces the discriminator ``f`` by
``f̂ = f / (‖∇ₓf‖ + |f|)``, bounded and 1-Lipschitz inside each linear region of a ReLU
network; the papers report good GANs with it. The post questions it (f̂ is discontinuous
across regions) and reports from the author's own runs that it did worse than a gradient
penalty and was slower (a second-order gradient in both the D and the G step); it shows
the papers' tables as images and gives no numbers of its own.

Here: the ring of 8 Gaussians (radius 2, std 0.02), generator 16→64→64→2 (ReLU),
discriminator 2→64→64→1 (LeakyReLU 0.2), Adam (1e-3, β = 0.5, 0.9), batch 128, 2000
generator steps; three discriminators: plain (non-saturating BCE, one D step per G step),
GN (the same BCE on f̂, as the paper's code does; one D step) and WGAN-GP with the recipe
of its authors' toy script (λ = 0.1, 5 critic steps per generator step; λ = 10 did not
learn the ring within this budget). The metrics are those of the unrolled-GAN / VEEGAN /
PacGAN line of work: of 2500 samples, a sample is high-quality when within 3 std of its
nearest mode, and a mode is covered when at least 20 high-quality samples fall on it.
Step times are measured on one thread, D and G steps apart.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.threads import torch_threads

MODES, RADIUS, STD = 8, 2.0, 0.02
Z_DIM, HIDDEN, BATCH, LR = 16, 64, 128, 1e-3
GP_WEIGHT = 0.1  # the WGAN-GP authors' toy setting (gan_toy.py: "smaller lambda helps")
METHODS = ("plain", "gn", "wgan-gp")
CRITIC_STEPS = {"plain": 1, "gn": 1, "wgan-gp": 5}  # D steps per G step
EVAL_SAMPLES, MIN_PER_MODE = 2500, 20


def ring_centres(modes: int = MODES, radius: float = RADIUS) -> Tensor:
    """``(modes, 2)`` points evenly spaced on a circle."""
    angle = torch.arange(modes) * (2 * math.pi / modes)
    return radius * torch.stack([angle.cos(), angle.sin()], 1)


def sample_ring(n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from the mixture of the ring's Gaussians: ``(n, 2)``."""
    centres = ring_centres()
    which = torch.randint(0, MODES, (n,), generator=generator)
    return centres[which] + STD * torch.randn(n, 2, generator=generator)


def mode_metrics(samples: Tensor) -> dict[str, float]:
    """Modes covered and the high-quality rate of ``samples`` ``(n, 2)`` (see the module doc)."""
    distance = torch.cdist(samples, ring_centres())  # (n, modes)
    nearest, mode = distance.min(1)
    good = nearest < 3 * STD
    per_mode = torch.bincount(mode[good], minlength=MODES)
    return {"modes": float((per_mode >= MIN_PER_MODE).sum()), "hq": good.float().mean().item()}


def discriminator_losses(method: str, d: nn.Module, real: Tensor, fake: Tensor
                         ) -> tuple[Tensor, Tensor]:
    """The D loss on ``(real, fake.detach())`` and the G loss on ``fake``."""
    from kexue.generative import gradient_penalty

    if method == "wgan-gp":
        d_loss = (d(fake.detach()).mean() - d(real).mean()
                  + GP_WEIGHT * gradient_penalty(d, real, fake, center=1.0))
        return d_loss, -d(fake).mean()
    ones = torch.ones(real.size(0), 1)
    d_loss = (F.binary_cross_entropy_with_logits(d(real), ones)
              + F.binary_cross_entropy_with_logits(d(fake.detach()), 0 * ones))
    return d_loss, F.binary_cross_entropy_with_logits(d(fake), ones)  # non-saturating


def train_gan(method: str, steps: int, seed: int) -> tuple[nn.Module, float, float]:
    """Train one GAN for ``steps`` generator steps; returns the generator and the mean wall
    times (ms) of one D step and of one G step."""
    from kexue.generative import GradientNormalized, mlp

    torch.manual_seed(seed)
    g = mlp([Z_DIM, HIDDEN, HIDDEN, 2], nn.ReLU)
    d: nn.Module = mlp([2, HIDDEN, HIDDEN, 1], nn.LeakyReLU, negative_slope=0.2)
    if method == "gn":
        d = GradientNormalized(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=LR, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=LR, betas=(0.5, 0.9))
    data = torch.Generator().manual_seed(seed)
    d_time = g_time = 0.0
    for _ in range(steps):
        started = time.perf_counter()
        for _ in range(CRITIC_STEPS[method]):
            real = sample_ring(BATCH, data)
            fake = g(torch.randn(BATCH, Z_DIM))
            d_loss, _ = discriminator_losses(method, d, real, fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        middle = time.perf_counter()
        _, g_loss = discriminator_losses(method, d, real, fake)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d_time += middle - started
        g_time += time.perf_counter() - middle
    return g, 1000 * d_time / (steps * CRITIC_STEPS[method]), 1000 * g_time / steps


@register
class GradientNormalizedGAN(Experiment):
    name = "gradient-normalized-gan"
    techniques = ("T28",)
    minutes: ClassVar[dict[str, float]] = {"quick": 2.5, "full": 10}
    seeds = 3
    claim = Claim(
        post="WGAN新方案：通过梯度归一化来实现L约束",
        date="2021-11-15",
        url="https://kexue.fm/archives/8757",
        statement="A gradient-normalised discriminator f/(‖∇f‖+|f|) trains a GAN (the papers' "
        "result), but in the author's runs it was worse than a gradient penalty and slower, "
        "since both the D and the G step need a second-order gradient.",
        condition="On the 8-Gaussians ring: GN covers at least 7 modes on average (mean > "
        "6.5) and more modes than the plain discriminator; WGAN-GP's high-quality rate "
        "exceeds GN's (the author's finding); a GN step takes longer than a WGAN-GP step; "
        "all beyond seed noise.",
        reported="No numbers of the author's own; the ICCV and WACV papers' tables (IS/FID on "
        "CIFAR-10, STL-10, ...) are shown as images.",
        fidelity="substituted",
        substitution="The papers' and the author's settings are image GANs (CIFAR-10 and "
        "larger) that do not train on 2 CPU cores in minutes; the 8-Gaussians ring is the "
        "standard small test of mode coverage and sample quality.",
        post_setting="Image GANs (CIFAR-10, STL-10, CelebA-HQ, LSUN) with ResNet/CNN "
        "discriminators.",
        our_setting="8 Gaussians on a ring (radius 2, std 0.02), MLP G and D (2 x 64), "
        "2000 generator steps of 128, Adam 1e-3; WGAN-GP with 5 critic steps and λ = 0.1; "
        "2500 samples evaluated.",
    )

    @torch_threads(1)  # small models: one thread is fastest on a busy machine
    def run(self, ctx: Context) -> Run:
        steps = ctx.pick(2000, 20000, smoke=5)
        metrics: dict[str, float] = {}
        samples = {}
        for method in METHODS:
            g, ms_d, ms_g = train_gan(method, steps, ctx.seed)
            with torch.no_grad():
                torch.manual_seed(20_000 + ctx.seed)
                x = g(torch.randn(EVAL_SAMPLES, Z_DIM))
            for key, value in mode_metrics(x).items():
                metrics[f"{method}/{key}"] = value
            metrics[f"{method}/ms_d_step"] = ms_d
            metrics[f"{method}/ms_g_step"] = ms_g
            samples[method] = {method: (x[:1000, 0].tolist(), x[:1000, 1].tolist())}
            ctx.log(f"  {method}: {metrics[f'{method}/modes']:.0f} modes, "
                    f"{100 * metrics[f'{method}/hq']:.1f}% high quality, D step {ms_d:.1f} "
                    f"ms, G step {ms_g:.1f} ms")
        figures = []
        if ctx.seed == 0:
            from kexue.evidence.plots import panels

            centres = ring_centres().tolist()
            figures.append(panels(samples, ctx.figure("ring_samples_seed0.png"),
                                  kind="scatter", title="1000 generator samples (seed 0; "
                                  "red: the 8 modes)", marks=[tuple(c) for c in centres],
                                  columns=3).name)
        return Run(metrics, figures=figures)

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.tables import markdown_table

        rows = [[m, str(stats[f"{m}/modes"]), str(stats[f"{m}/hq"]),
                 str(stats[f"{m}/ms_d_step"]), str(stats[f"{m}/ms_g_step"])] for m in METHODS]
        return Run({}, tables=[markdown_table(
            ["discriminator", "modes covered (of 8)", "high-quality rate", "ms per D step",
             "ms per G step"], rows)])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.above("gn/modes", 6.5, "GN covers at least 7 of 8 modes"),
            stats.greater("gn/modes", "plain/modes", description="GN covers more modes than plain"),
            stats.greater("wgan-gp/hq", "gn/hq",
                          description="WGAN-GP's high-quality rate exceeds GN's (the author)"),
            stats.greater("gn/ms_g_step", "wgan-gp/ms_g_step",
                          description="a GN generator step is slower than a WGAN-GP one"),
        ]
