import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.gradient_normalized_gan import (
    METHODS,
    STD,
    GradientNormalizedGAN,
    mode_metrics,
    ring_centres,
    sample_ring,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ring_and_mode_metrics():
    centres = ring_centres()
    assert centres.shape == (8, 2) and torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    data = sample_ring(2500, torch.Generator().manual_seed(0))
    # P(‖ε‖ < 3σ) for a 2-D Gaussian is 1 − e^{−9/2}
    assert mode_metrics(data) == {"modes": 8.0, "hq": pytest.approx(1 - math.exp(-4.5), abs=0.006)}
    collapsed = centres[3] + STD * torch.randn(2500, 2)
    assert mode_metrics(collapsed)["modes"] == 1.0
    far = torch.zeros(100, 2)  # the centre of the ring: no mode nearby
    assert mode_metrics(far) == {"modes": 0.0, "hq": 0.0}


def test_smoke_run_gives_checks(tmp_path):
    exp = GradientNormalizedGAN()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert {f"{m}/modes" for m in METHODS} <= set(run.metrics)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert len(run.figures) == 1 and (tmp_path / run.figures[0]).exists()
    stats = _aggregate([run], False)
    assert len(exp.checks(stats)) == 4
    assert exp.summarize(stats, [run], ctx).tables


def synthetic(gn_modes: float, gn_hq: float):
    runs = []
    for noise in (-0.01, 0.0, 0.01):
        runs.append(Run({"plain/modes": 3 + noise, "plain/hq": 0.1, "gn/modes": gn_modes + noise,
                         "gn/hq": gn_hq + noise, "wgan-gp/modes": 8.0, "wgan-gp/hq": 0.6 + noise,
                         "gn/ms_g_step": 3.0 + noise, "wgan-gp/ms_g_step": 2.0 + noise}))
    return _aggregate(runs, False)


def test_verdicts_follow_the_measurements():
    exp = GradientNormalizedGAN()
    assert verdict(exp.checks(synthetic(7.5, 0.4))) == REPRODUCED
    assert verdict(exp.checks(synthetic(7.5, 0.9))) == NOT_REPRODUCED  # GN beats GP
    assert verdict(exp.checks(synthetic(2.0, 0.4))) == NOT_REPRODUCED  # GN collapses
