import math

import pytest

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.recompute import Recompute, measure


def test_measure_reports_memory_and_time(one_thread):
    shape = {"layers": 2, "hidden": 64, "seq": 16, "batch": 2, "steps": 1, "seed": 0, "threads": 1}
    on, off = measure(recompute=True, **shape), measure(recompute=False, **shape)
    assert on["peak_mb"] >= 0 and on["step_seconds"] > 0 and math.isfinite(on["per_sample_mb"])
    assert 0 < on["saved_mb"] < off["saved_mb"]


def test_smoke_run(tmp_path):
    exp = Recompute()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert 0 < run.metrics["memory_ratio"] < 1 and run.metrics["time_ratio"] > 0
    checks = exp.checks(_aggregate([run], False))
    assert [c.metrics for c in checks] == [["batch_gain"], ["time_ratio"]]


@pytest.mark.parametrize(("gain", "ratio", "expected"), [
    (6.0, 1.2, REPRODUCED),
    (1.5, 1.2, NOT_REPRODUCED),  # memory barely shrinks
    (6.0, 2.0, NOT_REPRODUCED),  # twice the time
])
def test_the_verdict_follows_the_claim(gain, ratio, expected):
    runs = [Run({"batch_gain": gain + e, "time_ratio": ratio + e / 20}) for e in (0.0, 0.3, -0.2)]
    assert verdict(Recompute().checks(_aggregate(runs, False))) == expected
