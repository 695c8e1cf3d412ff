import math

from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.recompute import Recompute, measure


def test_measure_reports_memory_and_time(one_thread):
    shape = {"layers": 2, "hidden": 64, "seq": 16, "batch": 2, "steps": 1, "seed": 0, "threads": 1}
    on, off = measure(recompute=True, **shape), measure(recompute=False, **shape)
    assert on["peak_extra_mb"] >= 0 and on["step_seconds"] > 0
    assert 0 < on["saved_mb"] < off["saved_mb"]


def test_smoke_run(tmp_path):
    exp = Recompute()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) and v >= 0 for v in run.metrics.values())
    assert 0 < run.metrics["memory_ratio"] < 1
    assert [c.description for c in exp.checks(_aggregate([run], False))] == [
        "memory_ratio < 0.3333", "time_ratio < 1.35"]
