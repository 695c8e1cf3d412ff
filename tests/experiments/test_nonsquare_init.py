import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.nonsquare_init import (
    ACTIVATIONS,
    STRATEGIES,
    NonSquareInit,
    measured_moments,
    predicted_factors,
    widths,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_widths_return_to_the_input_width():
    assert widths(3, 5, 2) == [3, 5, 3, 5, 3]


def test_predicted_factors_are_m_t_and_n_t():
    fwd, bwd = predicted_factors([64, 256, 64], "arithmetic")
    assert fwd == pytest.approx([64 / 160, 256 / 160]) and bwd == pytest.approx([256 / 160, 64 / 160])
    fwd, bwd = predicted_factors([64, 256, 64], "geometric")
    assert math.prod(fwd) == pytest.approx(1) and math.prod(bwd) == pytest.approx(1)


def test_measured_moments_of_one_linear_layer_match_m_t():
    torch.manual_seed(0)
    forward, backward = measured_moments([100, 400], "arithmetic", "linear", 64, 32)
    t = 1 / 250
    assert (forward[1] / forward[0]).item() == pytest.approx(100 * t, rel=0.03)
    assert (backward[0] / backward[1]).item() == pytest.approx(400 * t, rel=0.03)


def test_smoke_run_gives_checks(tmp_path):
    exp = NonSquareInit()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == len(ACTIVATIONS) * (2 * (len(STRATEGIES) + 2) + 2)
    extra = exp.summarize(stats, [run], ctx)
    assert len(extra.figures) == 4 and all((tmp_path / f).exists() for f in extra.figures)


def synthetic(geometric_drift: float):
    """Per-seed metrics as the post predicts, with geometric drifting by ``geometric_drift``."""
    runs = []
    for noise in (-0.01, 0.0, 0.01):
        m = {}
        for a in ACTIVATIONS:
            for s, (end, local) in {"fan_in": (0, 4.8), "fan_out": (0, 4.8),
                                    "arithmetic": (-1.94, 0.72), "geometric": (0, 1.25),
                                    "quadratic": (-4.61, 0.53)}.items():
                drift = geometric_drift if s == "geometric" else 0.0
                for d in ("forward", "backward"):
                    m[f"{a}/{s}/{d}"] = end + drift + noise
                    m[f"{a}/{s}/{d}_predicted"] = end
                m[f"{a}/{s}/local"] = local + noise
        runs.append(Run(m))
    return _aggregate(runs, False)


def test_verdicts_follow_the_measurements():
    exp = NonSquareInit()
    assert verdict(exp.checks(synthetic(0.0))) == REPRODUCED
    assert verdict(exp.checks(synthetic(-3.0))) == NOT_REPRODUCED  # geometric drifts most
