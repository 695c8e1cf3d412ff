"""T15 GAN dynamics on the Dirac GAN: which objectives and fixes reach the equilibrium?

Post: 从动力学角度看优化算法（四）：GAN的第三个阶段 (2019-05-03,
https://kexue.fm/archives/6583), after Mescheder et al. (ICML 2018). On the 2-D Dirac GAN
(real data at 0, fake point θ, linear discriminator x·φ) the post integrates the training
flow numerically and shows: the non-saturating GAN (like every f-GAN) only circles the
equilibrium; WGAN with a hard Lipschitz constraint oscillates; WGAN-GP with the
1-centred penalty ends on a circle, with the 0-centred penalty it converges; GAN-QP
oscillates and a little L2 weight decay on the discriminator makes it converge; averaging
the weights (EMA) finds the centre of an oscillation. The figures are phase portraits
from ``bojone/gan/gan_numeric.py``; no numbers.

Here: the post's fields (:class:`kexue.generative.DiracGAN`) from the author's starting
point ``φ = (0.1, 0.2), θ = (0.2, 0.1)`` and its λ (GP 0.1, GAN-QP 1), integrated for
T = 200 (RK4, h = 0.1) and trained by discrete simultaneous and alternating gradient
descent (lr 0.1, 2000 steps), plus two fixes the post does not run: the 0-centred penalty
on the non-saturating GAN and consensus optimisation (γ = 1). Weight decay for GAN-QP is
μ = 0.1 (the post gives no value). Its GAN-QP code divides by ‖φ‖ where its derivation has
‖θ‖; we follow the derivation. Jacobian eigenvalues at the equilibrium are compared with
the closed forms. "Converges" = the distance to the equilibrium ends below 1% of where it
started; "does not converge" = it stays above 10% over the last quarter of training.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register
from kexue.experiments._shared.threads import torch_threads

GP, QP, DECAY, CONSENSUS = 0.1, 1.0, 0.1, 1.0
VARIANTS = {  # name -> DiracGAN arguments
    "ns-gan": {"loss": "ns-gan"},
    "wgan": {"loss": "wgan"},
    "wgan-gp c=1": {"loss": "wgan-gp", "gp_weight": GP, "gp_center": 1.0},
    "wgan-gp c=0": {"loss": "wgan-gp", "gp_weight": GP},
    "gan-qp": {"loss": "gan-qp", "qp_scale": QP},
    "gan-qp + L2": {"loss": "gan-qp", "qp_scale": QP, "weight_decay": DECAY},
    "ns-gan + gp c=0": {"loss": "ns-gan", "gp_weight": GP},
    "ns-gan + consensus": {"loss": "ns-gan", "consensus": CONSENSUS},
}
METHODS = ("continuous", "simultaneous", "alternating")
START_PHI, START_THETA = (0.1, 0.2), (0.2, 0.1)  # the author's gan_numeric.py
CONVERGED, AWAY = 0.01, 0.1  # distance relative to the start
EMA_DECAY = 0.999


def ema(x: torch.Tensor, decay: float) -> torch.Tensor:
    """Exponential moving average along dim 0, started at ``x[0]``: ``(steps, ...)``."""
    from scipy.signal import lfilter

    out = lfilter([1 - decay], [1, -decay], x.numpy(), axis=0, zi=decay * x[:1].numpy())[0]
    return torch.from_numpy(out)


def closed_form_eigenvalues() -> dict[str, complex]:
    """The eigenvalue with the largest real part, from the linearisations in the post
    (and consensus: ``J − γ JᵀJ``)."""
    return {
        "ns-gan": 0.5j,  # θ̈ = −θ/4
        "wgan-gp c=0": complex(-GP, (1 - GP**2) ** 0.5),  # μ² + 2λμ + 1 = 0
        "ns-gan + gp c=0": complex(-GP, (0.25 - GP**2) ** 0.5),  # μ² + 2λμ + 1/4 = 0
        "ns-gan + consensus": complex(-CONSENSUS / 4, 0.5),  # −γ/4 ± i/2
    }


@register
class GanDynamics(Experiment):
    name = "gan-dynamics"
    techniques = ("T15",)
    minutes: ClassVar[dict[str, float]] = {"quick": 0.5, "full": 1}
    seeds = 1
    deterministic = True
    claim = Claim(
        post="从动力学角度看优化算法（四）：GAN的第三个阶段",
        date="2019-05-03",
        url="https://kexue.fm/archives/6583",
        statement="On the Dirac GAN, the non-saturating GAN, WGAN, 1-centred WGAN-GP and "
        "GAN-QP do not converge to the equilibrium (they circle it); the 0-centred gradient "
        "penalty and L2 weight decay on the discriminator make it converge, and weight "
        "averaging (EMA) recovers the centre of an oscillation.",
        condition="From the author's starting point: ns-gan, wgan, wgan-gp c=1 and gan-qp "
        "stay above 10% of the starting distance over the last quarter of the flow; "
        "wgan-gp c=0 (flow, simultaneous and alternating GD), gan-qp + L2, ns-gan + 0-centred "
        "GP and ns-gan + consensus end below 1%; simultaneous GD on ns-gan spirals out (ends "
        "farther than it started), alternating GD cycles (stays above 10%); EMA(0.999) of θ "
        "on that cycle ends closer to 0 than θ; the Jacobian eigenvalues match the closed "
        "forms to 1e-9.",
        reported="Phase portraits only (2-D Dirac GAN): ns-gan, WGAN, WGAN-GP c=1 and "
        "GAN-QP oscillate, WGAN-GP c=0 and GAN-QP + L2 converge; linearisation θ̈ ≈ −θ/4.",
        fidelity="as-posted",
        post_setting="The same ODEs, solve_ivp RK45 from φ = (0.1, 0.2), θ = (0.2, 0.1), "
        "T = 10-100, λ = 0.1 (GP), 1 (GAN-QP).",
        our_setting="RK4 (h = 0.1, T = 200) and discrete GD (lr 0.1, 2000 steps) from the "
        "same point; plus ns-gan + 0-centred GP and consensus (γ = 1).",
    )

    @torch_threads(1)  # small tensors: one thread is fastest on a busy machine
    def run(self, ctx: Context) -> Run:
        from kexue.evidence.plots import panels
        from kexue.generative import DiracGAN

        steps = ctx.pick(2000, 4000, smoke=50)
        lr = 0.1
        phi0 = torch.tensor(START_PHI, dtype=torch.float64)
        theta0 = torch.tensor(START_THETA, dtype=torch.float64)
        start = torch.cat([phi0, theta0]).norm().item()
        metrics: dict[str, float] = {}
        portraits: dict[str, dict[str, dict[str, tuple[list[float], list[float]]]]] = {
            m: {} for m in METHODS}
        for name, kwargs in VARIANTS.items():
            gan = DiracGAN(**kwargs)
            for method in METHODS:
                path = gan.simulate(phi0, theta0, steps, lr, method)
                distance = path.distance() / start
                key = f"{name}/{method}"
                metrics[f"{key}/final"] = distance[-1].item()
                metrics[f"{key}/late_min"] = distance[-(steps // 4):].min().item()
                metrics[f"{key}/theta"] = path.theta[-1].norm().item()
                if name == "ns-gan" and method == "alternating":
                    metrics[f"{key}/ema_theta"] = ema(path.theta, EMA_DECAY)[-1].norm().item()
                thin = path.theta[:: max(1, steps // 1000)]
                portraits[method][name] = {"θ": (thin[:, 0].tolist(), thin[:, 1].tolist())}
            try:
                eig = gan.eigenvalues(2)
            except ValueError:
                continue  # not differentiable at the equilibrium (the post integrates only)
            top = eig[eig.real.argmax()]
            metrics[f"{name}/eig_real"] = top.real.item()
            metrics[f"{name}/eig_imag"] = top.imag.abs().item()
            for method in ("simultaneous", "alternating"):
                metrics[f"{name}/{method}/radius"] = gan.eigenvalues(2, method, lr).abs().max().item()
        for name, value in closed_form_eigenvalues().items():
            metrics[f"{name}/eig_real_closed"] = value.real
            metrics[f"{name}/eig_imag_closed"] = value.imag
        figures = [panels(portraits[m], ctx.figure(f"dirac_{m}.png"), xlabel="θ₁", ylabel="θ₂",
                          title=f"Dirac GAN, θ trajectories ({m}; red: equilibrium)",
                          marks=[(0.0, 0.0)]).name for m in METHODS]
        return Run(metrics, figures=figures, tables=[self._table(metrics)])

    @staticmethod
    def _table(metrics: dict[str, float]) -> str:
        from kexue.evidence.tables import markdown_table

        header = ["variant", *(f"{m} final" for m in METHODS), "flow: late min", "max Re(eig)",
                  "GD radius (sim / alt)"]
        rows = []
        for name in VARIANTS:
            eig = metrics.get(f"{name}/eig_real")
            radius = (f"{metrics[f'{name}/simultaneous/radius']:.4f} / "
                      f"{metrics[f'{name}/alternating/radius']:.4f}" if eig is not None else "—")
            rows.append([name, *(f"{metrics[f'{name}/{m}/final']:.3g}" for m in METHODS),
                         f"{metrics[f'{name}/continuous/late_min']:.3g}",
                         "—" if eig is None else f"{eig:.4f}", radius])
        return markdown_table(header, rows)

    def checks(self, stats: Stats) -> list[Check]:
        away = [stats.above(f"{v}/continuous/late_min", AWAY, f"{v}: the flow does not converge")
                for v in ("ns-gan", "wgan", "wgan-gp c=1", "gan-qp")]
        converge = [stats.below(f"{v}/{m}/final", CONVERGED, f"{v}: {m} converges")
                    for v, m in (("wgan-gp c=0", "continuous"), ("wgan-gp c=0", "simultaneous"),
                                 ("wgan-gp c=0", "alternating"), ("gan-qp + L2", "continuous"),
                                 ("ns-gan + gp c=0", "continuous"),
                                 ("ns-gan + consensus", "continuous"),
                                 ("ns-gan + consensus", "simultaneous"))]
        discrete = [
            stats.above("ns-gan/simultaneous/final", 1.0, "ns-gan: simultaneous GD spirals out"),
            stats.above("ns-gan/alternating/late_min", AWAY, "ns-gan: alternating GD cycles"),
            stats.greater("ns-gan/alternating/theta", "ns-gan/alternating/ema_theta",
                          description="ns-gan: EMA of θ ends closer to the equilibrium than θ"),
        ]
        eigen = [stats.within(f"{v}/eig_{part}", f"{v}/eig_{part}_closed", 1e-9,
                              f"{v}: eigenvalue ({part} part) = closed form")
                 for v in closed_form_eigenvalues() for part in ("real", "imag")]
        return away + converge + discrete + eigen
