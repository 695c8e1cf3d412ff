import math

import pytest

from kexue.evidence import verdict
from kexue.evidence.base import Context, Stat, Stats
from kexue.evidence.suite import _aggregate
from kexue.experiments.jump_rope import JumpRope

HOLDS = {
    "agreement/max_position_gap": 1e-11,
    "agreement/max_tension_gap": 1e-10,
    "straight/sag_over_span": 0.006,
    "straight/sine_asymptote_error": 3e-5,
    "straight/parabola_asymptote_error": 3e-5,
    "limit/slow_vs_catenary": 1e-6,
    "limit/fast_vs_troposkien": 3e-6,
    "limit/no_gravity_speed_invariance": 0.0,
    "tension/min_over_max": 0.3,
}


def stats_for(metrics):
    stats = Stats({k: Stat([v]) for k, v in metrics.items()})
    stats.deterministic = True
    return stats


def test_verdict_reproduced_when_forms_agree_and_limits_hold():
    assert verdict(JumpRope().checks(stats_for(HOLDS))) == "reproduced"


@pytest.mark.parametrize("key, value", [
    ("agreement/max_position_gap", 1e-3),  # the closed form misses the numerical shape
    ("straight/sag_over_span", 0.2),  # a taut rope that still sags
    ("limit/slow_vs_catenary", 0.05),  # omega -> 0 is not the catenary
    ("tension/min_over_max", -0.5),  # the post's lambda = 0 branch: negative tension
])
def test_verdict_not_reproduced_when_a_check_fails(key, value):
    assert verdict(JumpRope().checks(stats_for({**HOLDS, key: value}))) == "not reproduced"


def test_smoke_run_reproduces_and_draws_the_shapes(tmp_path):
    exp = JumpRope()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert set(run.metrics) == set(HOLDS) | {"limit/catenary_vs_troposkien"}
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], True)
    extra = exp.summarize(stats, [run], ctx)
    assert all((tmp_path / f).exists() for f in extra.figures) and len(extra.figures) == 2
    assert verdict(exp.checks(stats)) == "reproduced"
