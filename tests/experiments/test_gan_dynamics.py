import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.gan_dynamics import GanDynamics, closed_form_eigenvalues, ema

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ema_is_the_recursion_started_at_the_first_value():
    x = torch.tensor([[1.0], [3.0], [-2.0]], dtype=torch.float64)
    expected = [1.0]
    for v in (3.0, -2.0):
        expected.append(0.9 * expected[-1] + 0.1 * v)
    torch.testing.assert_close(ema(x, 0.9)[:, 0], torch.tensor(expected, dtype=torch.float64))


def test_smoke_run_gives_well_formed_checks(tmp_path):
    exp = GanDynamics()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert len(run.figures) == 3 and all((tmp_path / f).exists() for f in run.figures)
    checks = exp.checks(_aggregate([run], True))
    assert all(c.holds is not None for c in checks)  # deterministic: never "within noise"
    eigen = [c for c in checks if "closed form" in c.description]
    assert len(eigen) == 2 * len(closed_form_eigenvalues()) and all(c.holds for c in eigen)


def full_metrics(converging_gp: bool) -> dict[str, float]:
    m = {}
    for v in ("ns-gan", "wgan", "wgan-gp c=1", "gan-qp"):
        m[f"{v}/continuous/late_min"] = 0.7
    for v in ("wgan-gp c=0", "gan-qp + L2", "ns-gan + gp c=0", "ns-gan + consensus"):
        for method in ("continuous", "simultaneous", "alternating"):
            m[f"{v}/{method}/final"] = 1e-6 if converging_gp else 0.5
    m.update({"ns-gan/simultaneous/final": 9.0, "ns-gan/alternating/late_min": 0.78,
              "ns-gan/alternating/theta": 0.16, "ns-gan/alternating/ema_theta": 0.03})
    for v, value in closed_form_eigenvalues().items():
        for part, x in (("real", value.real), ("imag", value.imag)):
            m[f"{v}/eig_{part}"] = m[f"{v}/eig_{part}_closed"] = x
    return m


def test_verdicts_follow_the_measurements():
    exp = GanDynamics()
    assert verdict(exp.checks(_aggregate([Run(full_metrics(True))], True))) == REPRODUCED
    assert verdict(exp.checks(_aggregate([Run(full_metrics(False))], True))) == NOT_REPRODUCED
