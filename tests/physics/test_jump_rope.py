import math

import numpy as np
import pytest

from kexue.physics import jump_rope, plot_shapes

CASES = [  # (length, span, omega, gravity): a jump rope, slow, no gravity, no spin, slack
    (2.6, 0.6, 4 * math.pi, 9.81),
    (1.5, 1.0, 2.0, 9.81),
    (1.5, 1.0, 3.0, 0.0),
    (1.5, 1.0, 0.0, 9.81),
    (5.0, 1.0, 1.0, 1.0),
]


@pytest.mark.parametrize("length, span, omega, gravity", CASES)
def test_closed_form_and_boundary_value_solution_agree(length, span, omega, gravity):
    kw = {"omega": omega, "gravity": gravity, "num_points": 301}
    closed = jump_rope(length, span, **kw)
    numeric = jump_rope(length, span, method="bvp", **kw)
    for a, b in [(closed.x, numeric.x), (closed.y, numeric.y)]:
        assert np.abs(a - b).max() < 1e-6 * length
    np.testing.assert_allclose(closed.tension, numeric.tension, rtol=1e-6)
    assert closed.axial_force == pytest.approx(numeric.axial_force, rel=1e-6)


@pytest.mark.parametrize("length, span, omega, gravity", CASES)
def test_the_curve_has_the_rope_length_ends_at_the_hands_and_is_symmetric(length, span, omega,
                                                                          gravity):
    shape = jump_rope(length, span, omega=omega, gravity=gravity, num_points=4001)
    polyline = np.hypot(np.diff(shape.x), np.diff(shape.y)).sum()
    assert polyline == pytest.approx(length, rel=1e-6)
    assert (shape.x[0], shape.x[-1]) == pytest.approx((-span / 2, span / 2), abs=1e-12)
    assert (shape.y[0], shape.y[-1]) == pytest.approx((0.0, 0.0), abs=1e-12)
    np.testing.assert_allclose(shape.x, -shape.x[::-1], atol=1e-10)
    np.testing.assert_allclose(shape.y, shape.y[::-1], atol=1e-10)
    assert (shape.tension > 0).all()  # the errata: positive tension, unlike lambda = 0


def test_force_balance_holds_along_the_closed_form():
    # d(T dx/ds)/ds = 0 and d(T dy/ds)/ds = -(omega^2 y + g), by finite differences
    omega, g = 3.0, 9.81
    shape = jump_rope(1.8, 1.0, omega=omega, gravity=g, num_points=20001)
    ds = shape.s[1] - shape.s[0]
    tx = shape.tension * np.gradient(shape.x, ds)
    ty = shape.tension * np.gradient(shape.y, ds)
    inner = slice(10, -10)
    assert np.abs(tx[inner] - shape.axial_force).max() < 1e-6 * shape.axial_force
    residual = np.gradient(ty, ds) + omega**2 * shape.y + g
    assert np.abs(residual[inner]).max() < 1e-4 * (omega**2 * shape.sag + g)


def test_without_gravity_the_shape_does_not_depend_on_the_speed():
    slow = jump_rope(1.5, 1.0, omega=1.0, gravity=0.0)
    fast = jump_rope(1.5, 1.0, omega=50.0, gravity=0.0)
    np.testing.assert_allclose(slow.y, fast.y, atol=1e-12)
    np.testing.assert_allclose(fast.tension, slow.tension * 2500, rtol=1e-10)


def test_slow_spin_tends_to_the_catenary_and_fast_spin_to_the_troposkien():
    catenary = jump_rope(1.5, 1.0, omega=0.0, gravity=9.81)
    troposkien = jump_rope(1.5, 1.0, omega=1.0, gravity=0.0)
    for omega, limit in [(0.05, catenary), (300.0, troposkien)]:
        shape = jump_rope(1.5, 1.0, omega=omega, gravity=9.81)
        assert np.abs(shape.y - limit.y).max() < 1e-3
    gap = np.abs(catenary.y - troposkien.y).max()
    assert gap > 5e-3  # the two limits are different curves


def test_a_rope_barely_longer_than_the_span_is_nearly_straight():
    span, slack = 1.0, 1e-6
    sine = jump_rope(span * (1 + slack), span, omega=1.0, gravity=0.0)  # linearised: sine arch
    assert sine.sag == pytest.approx(2 / math.pi * span * math.sqrt(slack), rel=1e-3)
    parabola = jump_rope(span * (1 + slack), span, omega=0.0, gravity=9.81)  # shallow catenary
    assert parabola.sag == pytest.approx(span * math.sqrt(3 * slack / 8), rel=1e-3)


@pytest.mark.parametrize("args, kw, match", [
    ((0.5, 1.0), {}, "longer than the span"),
    ((1.0, 1.0), {}, "longer than the span"),
    ((1.0, 0.0), {}, "positive finite span"),
    ((2.0, 1.0), {"omega": -1.0}, "omega >= 0"),
    ((2.0, 1.0), {"omega": 0.0, "gravity": 0.0}, "not both zero"),
    ((2.0, 1.0), {"omega": math.inf}, "finite omega"),
    ((2.0, 1.0), {"num_points": 1}, "num_points"),
    ((2.0, 1.0), {"method": "bvp", "tol": 0.0}, "tol > 0"),
    ((2.0, 1.0), {"method": "shooting"}, "method"),
])
def test_bad_input_raises(args, kw, match):
    with pytest.raises(ValueError, match=match):
        jump_rope(*args, **kw)


def test_plot_shapes_writes_a_png(tmp_path):
    shapes = {f"omega = {w}": jump_rope(1.5, 1.0, omega=w) for w in (2.0, 8.0)}
    path = plot_shapes(shapes, tmp_path / "rope.png", title="shapes")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
