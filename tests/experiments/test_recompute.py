import math

from kexue.experiments.base import Context
from kexue.experiments.recompute import Recompute, measure
from kexue.experiments.suite import _aggregate


def test_measure_reports_positive_memory_and_time():
    m = measure(recompute=True, layers=2, hidden=64, seq=16, batch=2, steps=1, seed=0)
    assert m["peak_extra_mb"] >= 0 and m["step_seconds"] > 0


def test_smoke_run(tmp_path):
    exp = Recompute()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) and v > 0 for v in run.metrics.values())
    assert [c.description for c in exp.checks(_aggregate([run], False))] == [
        "memory_ratio < 0.3333", "time_ratio < 1.35"]
