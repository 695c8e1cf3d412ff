"""T17 The shape of a spinning jump rope: an elliptic integral, and its limits.

Post: 你跳绳的时候，想过绳子的形状曲线是怎样的吗？ (2019-07-06, https://kexue.fm/archives/6784).
The post varies S = int (1/2 omega^2 y^2 - g y) ds for the rope at its lowest point, notes
that z = y - g/omega^2 turns it into the g = 0 problem, solves omega = 0 (the catenary) and
g = 0 (an elliptic integral), and leaves the general case to numerical integration.

Ours: kexue.physics.jump_rope in closed form (the troposkien about the shifted axis, with
the rope-length multiplier the post leaves out; research notes section 17) against an
independent scipy.integrate.solve_bvp of the force balance, over a grid of rope lengths
and speeds; then the limits as checks. Nothing is trained or sampled: deterministic.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from kexue.evidence.base import Check, Claim, Context, Experiment, Run, Stats
from kexue.evidence.registry import register

SPAN = 1.0  # metres between the hands
GRAVITY = 9.81
LENGTHS = (1.001, 1.05, 1.5, 3.0, 2.6 / 0.6, 10.0)  # rope length / span (2.6 m over 0.6 m:
# a real skipping rope)
SPEEDS = (0.0, 0.3, 2.0, 4 * math.pi, 50.0, math.inf)  # rad/s; inf = no gravity (troposkien)
TOLERANCE = 1e-6  # agreement, relative to the rope length
LIMIT_TOLERANCE = 1e-3


def _shape(length, omega, gravity=GRAVITY, method="elliptic"):
    """omega = inf stands for the g = 0 case (computed at omega = 1: any speed gives it)."""
    from kexue.physics import jump_rope

    if math.isinf(omega):
        omega, gravity = 1.0, 0.0
    return jump_rope(length, SPAN, omega=omega, gravity=gravity, num_points=401, method=method)


def _gap(a, b) -> float:
    """Largest distance between corresponding points, relative to the rope length."""
    return float(np.hypot(a.x - b.x, a.y - b.y).max() / a.length)


def agreement(lengths=LENGTHS, speeds=SPEEDS) -> dict[str, float]:
    """Closed form vs solve_bvp over the grid: worst position gap (/ length), worst
    relative tension gap, and the smallest tension seen (relative to the largest)."""
    position, tension, slack_tension = 0.0, 0.0, np.inf
    for length in lengths:
        for omega in speeds:
            closed, numeric = _shape(length, omega), _shape(length, omega, method="bvp")
            position = max(position, _gap(closed, numeric))
            tension = max(tension, float(np.abs(closed.tension / numeric.tension - 1).max()))
            slack_tension = min(slack_tension, float(closed.tension.min() / closed.tension.max()))
    return {"agreement/max_position_gap": position, "agreement/max_tension_gap": tension,
            "tension/min_over_max": slack_tension}


def limits() -> dict[str, float]:
    """The post's special cases and the nearly straight rope."""
    slack = 1e-4
    straight = _shape(1 + slack, 4 * math.pi)
    sine = _shape(1 + slack, math.inf)  # linearised g = 0 rope: a sine arch
    parabola = _shape(1 + slack, 0.0)  # shallow catenary: a parabola
    catenary, troposkien = _shape(1.5, 0.0), _shape(1.5, math.inf)
    return {
        "straight/sag_over_span": straight.sag / SPAN,
        "straight/sine_asymptote_error": abs(sine.sag / (2 / math.pi * math.sqrt(slack)) - 1),
        "straight/parabola_asymptote_error": abs(parabola.sag / math.sqrt(3 * slack / 8) - 1),
        "limit/slow_vs_catenary": _gap(_shape(1.5, 0.05), catenary),
        "limit/fast_vs_troposkien": _gap(_shape(1.5, 300.0), troposkien),
        "limit/catenary_vs_troposkien": _gap(catenary, troposkien),
        "limit/no_gravity_speed_invariance": _gap(_shape(1.5, 1.0, gravity=0.0),
                                                  _shape(1.5, 50.0, gravity=0.0)),
    }


@register
class JumpRope(Experiment):
    name = "jump-rope"
    techniques = ("T17",)
    minutes: ClassVar[dict[str, float]] = {"quick": 0.1, "full": 0.1}
    seeds = 1
    deterministic = True
    claim = Claim(
        post="你跳绳的时候，想过绳子的形状曲线是怎样的吗？",
        date="2019-07-06",
        url="https://kexue.fm/archives/6784",
        statement="A skipping rope at its lowest point is, after the shift z = y - g/omega^2, "
        "a rope spun without gravity, whose shape is an elliptic integral; omega = 0 gives the "
        "catenary, and the general case can be solved numerically.",
        condition=f"The closed form (troposkien about the shifted axis, with the rope-length "
        f"multiplier) and an independent solve_bvp of the force balance agree to "
        f"{TOLERANCE:g} of the rope length (and in tension) over rope length / span in "
        f"(1.001, 1.05, 1.5, 3, 4.33, 10) and omega in (0, 0.3, 2, 4 pi, 50 rad/s, no "
        f"gravity); and the limits hold to "
        f"{LIMIT_TOLERANCE:g}: a rope 1.0001 x the span sags < 1 % of it along the shallow-rope "
        f"asymptotes, slow spin gives the catenary, fast spin the gravity-free shape, which "
        f"does not depend on omega; tension positive everywhere.",
        reported="No numbers: figures of the omega = 0 catenary, the g = 0 curve "
        "y = int dx / sqrt(beta^2 x^4 - 1), and a solve_ivp (RK23) integration for omega = 2, "
        "g = 3 of Li Yongle's rope hanging from a spinning pole.",
        fidelity="as-posted",
        post_setting="Uniform rope, density 1, constant omega, planar relative equilibrium; "
        "analysis plus one numerical integration.",
        our_setting=f"Span {SPAN:g} m, g = {GRAVITY} m/s^2; closed form (scipy.special "
        f"elliptic integrals) vs scipy.integrate.solve_bvp (tol 1e-8), 401 points per rope.",
    )

    def run(self, ctx: Context) -> Run:
        lengths = ctx.pick(LENGTHS, LENGTHS, smoke=(1.5,))
        speeds = ctx.pick(SPEEDS, SPEEDS, smoke=(0.0, math.inf))
        metrics = {**agreement(lengths, speeds), **limits()}
        return Run(metrics, notes=[(
            "The post's g = 0 solution ds/dz = beta z^2 is the member without the rope-length "
            "multiplier: its tension -1/2 omega^2 z^2 is negative and its radius never falls "
            "below 1/sqrt(beta), so it cannot end at the hands; the closed form here keeps the "
            "multiplier (tension 1/2 omega^2 (R^2 - z^2) > 0) and stays an elliptic integral. "
            "The post's script assigns the first integral to dx/ds, the derivation to dy/ds; "
            "the solve_bvp check integrates the force balance and uses neither.")])

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run:
        from kexue.evidence.plots import lines
        from kexue.physics import plot_shapes

        speeds = {"omega = 0 (catenary)": 0.0, "omega = 3 rad/s": 3.0, "omega = 6 rad/s": 6.0,
                  "omega = 4 pi rad/s": 4 * math.pi, "no gravity (troposkien)": math.inf}
        shapes = {name: _shape(1.5, omega) for name, omega in speeds.items()}
        path = ctx.figure("shapes.png")
        plot_shapes(shapes, path, title=f"rope 1.5 m, hands {SPAN:g} m apart, at its lowest point")
        catenary = shapes["omega = 0 (catenary)"]
        deviation = ctx.figure("deviation.png")
        every = slice(None, None, 10)  # 41 of the 401 points: the plot marks each one
        lines({name: (list(s.x[every]), list(1000 * (s.y - catenary.y)[every]))
               for name, s in shapes.items()},
              deviation, xlabel="along the hands' line (m)",
              ylabel="sag minus the catenary's (mm)",
              title="the same rope at increasing speed, against the catenary")
        rows = ["| speed | sag (m) | tension at the hands | axial force |", "|---|---|---|---|"]
        rows += [f"| {name} | {s.sag:.5f} | {s.tension[0]:.4g} | {s.axial_force:.4g} |"
                 for name, s in shapes.items()]
        rows.append("\nForces per unit linear density (N per kg/m); the gravity-free row is at "
                    "omega = 1 rad/s (its forces scale with omega^2, its shape not at all).")
        return Run({}, figures=[path.name, deviation.name], tables=["\n".join(rows)])

    def checks(self, stats: Stats) -> list[Check]:
        return [
            stats.below("agreement/max_position_gap", TOLERANCE),
            stats.below("agreement/max_tension_gap", TOLERANCE),
            stats.below("straight/sag_over_span", 0.01),
            stats.below("straight/sine_asymptote_error", LIMIT_TOLERANCE),
            stats.below("straight/parabola_asymptote_error", LIMIT_TOLERANCE),
            stats.below("limit/slow_vs_catenary", LIMIT_TOLERANCE),
            stats.below("limit/fast_vs_troposkien", LIMIT_TOLERANCE),
            stats.below("limit/no_gravity_speed_invariance", TOLERANCE),
            stats.above("tension/min_over_max", 0.0),
        ]
