"""The shape of a spinning jump rope, in closed form (elliptic integrals) and numerically.

Source: Su Jianlin, "你跳绳的时候，想过绳子的形状曲线是怎样的吗？" (When you skip rope, have
you thought about the shape of the rope?), 2019-07-06, https://kexue.fm/archives/6784.

A uniform rope (linear density 1) of ``length`` L is held by two hands ``span`` d apart and
turned about the line through them at angular velocity ``omega``. The post takes the
rope at its lowest point, where gravity ``g`` and the centrifugal force both point away
from the axis: the potential per unit length is ``-1/2 omega^2 y^2 - g y`` (``y`` = distance
below the hands' line, ``x`` = position along it), which the shift ``z = y + g / omega^2``
turns into a pure centrifugal field about an axis ``r0 = g / omega^2`` above the hands
(the post's ``z = y - g / omega^2`` with ``y`` pointing up).

Errata handled here (research notes, section 17). The post's variation of
``S = int (1/2 omega^2 z^2) ds`` omits the multiplier ``lambda`` of the fixed rope length;
its g = 0 solution ``ds/dz = beta z^2`` is the lambda = 0 member, whose tension
``T = -1/2 omega^2 z^2`` is negative and whose radius never falls below ``1/sqrt(beta)``: it
cannot end on the axis. With ``lambda`` the tension is ``T = 1/2 omega^2 (R^2 - z^2) > 0`` and
the axial force ``T dx/ds = H`` is constant (the post's first integral belongs to the
axial coordinate; its script gives it to the other one), so with ``h = 2 H / omega^2``

    dx/dz = h / sqrt((a^2 - z^2)(b^2 - z^2)),   a^2 = R^2 - h,  b^2 = R^2 + h,

still an elliptic integral. With ``m = a^2/b^2`` and ``z = a sin(theta)``, from the hand
(``theta_0 = arcsin(r0 / a)``) to the middle (``theta = pi/2``):

    x + d/2 = (h/b) [F(theta|m) - F(theta_0|m)],
    s       = b [E(theta|m) - E(theta_0|m)] - (h/b) [F(theta|m) - F(theta_0|m)],

and ``x = 0, s = L/2`` at ``theta = pi/2`` fix ``a`` and ``m``. The post's special cases:
``g = 0`` (``r0 = 0``, the troposkien, whose shape does not depend on ``omega``) and
``omega = 0``, the catenary ``y = c (cosh(d/2c) - cosh(x/c))``, ``2 c sinh(d/2c) = L``.

The numerical solution integrates the force balance ``d(T t)/ds = -(omega^2 y + g) e_y``
(``t`` the unit tangent) as a boundary-value problem with ``scipy.integrate.solve_bvp``;
it uses none of the first integrals above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.integrate import cumulative_trapezoid, solve_bvp
from scipy.optimize import brentq
from scipy.special import ellipe, ellipeinc, ellipk, ellipkinc, j0

__all__ = ["RopeShape", "jump_rope", "plot_shapes"]

METHODS = ("elliptic", "bvp")


@dataclass(frozen=True)
class RopeShape:
    """Points of the rope, equally spaced in arc length from the left hand.

    ``x`` (n,) runs along the hands' line from ``-span/2`` to ``span/2``; ``y`` (n,) is the
    distance below it (outward from the axis); ``tension`` (n,) per unit linear density.
    ``axial_force`` is ``T dx/ds``, the same all along the rope.
    """

    s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tension: np.ndarray
    axial_force: float
    length: float
    span: float
    omega: float
    gravity: float

    @property
    def sag(self) -> float:
        """Largest distance of the rope below the hands' line (at its middle)."""
        return float(self.y.max())


def jump_rope(
    length: float,
    span: float,
    *,
    omega: float = 4 * math.pi,
    gravity: float = 9.81,
    num_points: int = 201,
    method: str = "elliptic",
    tol: float = 1e-8,
) -> RopeShape:
    """Shape of a rope of ``length`` held ``span`` apart and turned at ``omega`` (rad/s)
    under ``gravity``, at its lowest point (see the module docstring).

    Args:
        length: rope length L (> span).
        span: distance d between the hands (> 0).
        omega: angular velocity (>= 0; default two turns a second).
        gravity: g (>= 0; not both zero).
        num_points: points returned, equally spaced in arc length.
        method: "elliptic" (closed form) or "bvp" (``scipy.integrate.solve_bvp``).
        tol: residual tolerance of the boundary-value solver.
    """
    _check(length, span, omega, gravity, num_points, method, tol)
    s = np.linspace(0.0, length, num_points)
    if method == "bvp":
        return _bvp(length, span, omega, gravity, s, tol)
    if omega == 0:
        return _catenary(length, span, gravity, s)
    return _troposkien(length, span, omega, gravity, s)


def _check(length, span, omega, gravity, num_points, method, tol) -> None:
    if not span > 0 or not math.isfinite(span):
        raise ValueError(f"expected a positive finite span, got {span}")
    if not length > span or not math.isfinite(length):
        raise ValueError(f"expected a rope longer than the span ({span}), got length {length}")
    if not (0 <= omega < math.inf and 0 <= gravity < math.inf) or omega == gravity == 0:
        raise ValueError(f"expected finite omega >= 0 and gravity >= 0, not both zero, got "
                         f"omega {omega} and gravity {gravity}")
    if num_points < 2:
        raise ValueError(f"expected num_points >= 2, got {num_points}")
    if not tol > 0:
        raise ValueError(f"expected tol > 0, got {tol}")
    if method not in METHODS:
        raise ValueError(f"expected method in {METHODS}, got {method!r}")


# ----------------------------------------------------------------------------- closed forms
def _troposkien(length, span, omega, gravity, s) -> RopeShape:
    r0 = gravity / omega**2  # the effective axis lies r0 above the hands
    a, m = _solve_troposkien(length, span, r0)
    b = a / math.sqrt(m)
    h = (b * b - a * a) / 2
    theta0 = math.asin(min(1.0, r0 / a))

    def arc(theta):  # arc length from the hand to the point at angle theta
        return b * (ellipeinc(theta, m) - ellipeinc(theta0, m)) - h / b * (
            ellipkinc(theta, m) - ellipkinc(theta0, m))

    half = np.minimum(s, length - s)  # the rope is symmetric about its middle
    theta = _invert_monotone(arc, half, theta0, math.pi / 2,
                             lambda t: b * np.sqrt(1 - m * np.sin(t) ** 2)
                             - h / (b * np.sqrt(1 - m * np.sin(t) ** 2)))
    x = -span / 2 + h / b * (ellipkinc(theta, m) - ellipkinc(theta0, m))
    x = np.where(s <= length / 2, x, -x)
    z = a * np.sin(theta)  # distance from the effective axis
    radius_sq = (a * a + b * b) / 2  # R^2: tension 1/2 omega^2 (R^2 - z^2)
    tension = 0.5 * omega**2 * (radius_sq - z**2)
    return RopeShape(s, x, z - r0, tension, 0.5 * omega**2 * h, length, span, omega, gravity)


def _solve_troposkien(length, span, r0):
    """``a`` (largest distance from the effective axis) and ``m = a^2/b^2`` for which the
    rope ends ``span`` apart at distance ``r0`` from the axis with the given length."""

    def span_residual(a, m):
        theta0 = math.asin(min(1.0, r0 / a))
        return a * (1 - m) / (2 * math.sqrt(m)) * (ellipk(m) - ellipkinc(theta0, m)) - span / 2

    def a_for(m):  # the span grows with a: bracket, then solve
        hi = max(r0, span) * 2 + 1e-12
        while span_residual(hi, m) < 0:
            hi *= 2
        lo = r0 if r0 > 0 else hi * 1e-12
        return brentq(span_residual, lo, hi, args=(m,), xtol=1e-15 * hi, rtol=1e-15,
                      maxiter=500)

    def length_residual(m):
        a = a_for(m)
        theta0 = math.asin(min(1.0, r0 / a))
        half_plus = a / math.sqrt(m) * (ellipe(m) - ellipeinc(theta0, m))  # (L + d)/2
        return 2 * half_plus - span - length

    lo = 1e-2  # small m = a nearly straight rope; too small m loses all precision
    while length_residual(lo) > 0:
        lo /= 10
        if lo < 1e-13:
            raise ValueError(f"expected a length measurably longer than the span, got "
                             f"length / span - 1 = {length / span - 1:.3g}")
    m = brentq(length_residual, lo, 1 - 1e-15, xtol=1e-16, rtol=1e-15, maxiter=500)
    return a_for(m), m


def _catenary(length, span, gravity, s) -> RopeShape:
    """omega = 0: ``y = c (cosh(d/2c) - cosh(x/c))`` with ``2 c sinh(d/2c) = L``."""
    ratio = length / span  # sinh(u)/u with u = d / 2c
    u = brentq(lambda u: math.sinh(u) / u - ratio, 1e-12, 1.0 + math.asinh(ratio) * 2,
               xtol=1e-15, rtol=1e-15)
    c = span / (2 * u)
    x = c * np.arcsinh(s / c - math.sinh(u))  # arc length s = c (sinh(x/c) + sinh(d/2c))
    y = c * (math.cosh(u) - np.cosh(x / c))
    return RopeShape(s, x, y, gravity * c * np.cosh(x / c), gravity * c, length, span, 0.0,
                     gravity)


def _invert_monotone(f, target, lo, hi, df, grid=4001, newton_steps=6):
    """Solve ``f(t) = target`` for an increasing ``f`` on [lo, hi], vectorised:
    interpolation on a grid, then Newton steps kept inside the interval."""
    t_grid = np.linspace(lo, hi, grid)
    t = np.interp(target, f(t_grid), t_grid)
    for _ in range(newton_steps):
        t = np.clip(t - (f(t) - target) / df(t), lo, hi)
    return t


# ----------------------------------------------------------------------------- numerical (BVP)
def _bvp(length, span, omega, gravity, s, tol) -> RopeShape:
    """Force balance in arc length, lengths in units of L and forces in units of
    ``omega^2 L^2 + g L``: state (x, y, T_x, T_y) with T_x = T dx/ds, T_y = T dy/ds."""
    scale = omega**2 * length**2 + gravity * length
    alpha, beta = omega**2 * length**2 / scale, gravity * length / scale
    half = span / (2 * length)

    def rhs(_, state):
        _x, y, tx, ty = state
        t = np.hypot(tx, ty)
        return np.vstack([tx / t, ty / t, np.zeros_like(tx), -(alpha * y + beta)])

    def bc(left, right):
        return np.array([left[0] + half, left[1], right[0] - half, right[1]])

    mesh = np.linspace(0.0, 1.0, 101)
    guess = _guess(mesh, span / length, alpha, beta)
    sol = solve_bvp(rhs, bc, mesh, guess, tol=tol, max_nodes=200_000)
    if not sol.success:
        raise RuntimeError(f"solve_bvp did not converge: {sol.message}")
    x, y, tx, ty = sol.sol(s / length)
    return RopeShape(s, x * length, y * length, np.hypot(tx, ty) * scale,
                     float(tx.mean() * scale), length, span, omega, gravity)


def _guess(mesh, span, alpha, beta):
    """A starting curve of the right length and span (unit rope length): tangent angle
    ``psi(s) = psi0 cos(pi s)`` below the horizontal, so ``x(1) - x(0) = J0(psi0) = span``,
    under a constant tension of the order of the load."""
    psi0 = brentq(lambda p: j0(p) - span, 0.0, 2.404825557695773)  # J0's first zero
    psi = psi0 * np.cos(np.pi * mesh)
    x = -span / 2 + cumulative_trapezoid(np.cos(psi), mesh, initial=0.0)
    y = cumulative_trapezoid(np.sin(psi), mesh, initial=0.0)
    tension = 0.5 * (alpha * 0.25 + beta)
    return np.vstack([x, y, tension * np.cos(psi), tension * np.sin(psi)])

def plot_shapes(shapes: dict[str, RopeShape], path: str | Path, title: str = "") -> Path:
    """Draw rope shapes (name -> shape) hanging below the hands' line, to scale; PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    for name, shape in shapes.items():
        ax.plot(shape.x, -shape.y, label=name)
    ends = next(iter(shapes.values())).span / 2
    ax.plot([-ends, ends], [0, 0], "ko", ms=4)
    ax.set_aspect("equal")
    ax.set_xlabel("along the hands' line (m)")
    ax.set_ylabel("height relative to the hands (m)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
