import math

from kexue.evidence import Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments.tta import TTAScoring, timed


def test_timed_returns_the_median():
    calls = []
    assert timed(lambda: calls.append(1), 3) >= 0 and len(calls) == 4  # one warm-up


def test_smoke_run(tmp_path, one_thread):
    exp = TTAScoring()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert -1 <= run.metrics["spearman"] <= 1 and run.metrics["params_ratio"] < 1.05
    stats = _aggregate([run], False)
    assert len(exp.checks(stats)) == 3
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert (tmp_path / extra.figures[0]).exists() and extra.tables


def _stats(speedup, spearman=0.8, tta_disc=80.0):
    return _aggregate([Run({"speedup/n128": speedup + d, "spearman": spearman + d / 100,
                            "tta/discrimination": tta_disc + d, "bert/discrimination": 80.0 + d})
                       for d in (-0.5, 0.0, 0.5)], False)


def test_verdict_follows_the_measurements():
    exp = TTAScoring()
    assert verdict(exp.checks(_stats(20.0))) == "reproduced"
    assert verdict(exp.checks(_stats(2.0))) == "not reproduced"
    assert verdict(exp.checks(_stats(20.0, spearman=0.2))) == "not reproduced"
    assert verdict(exp.checks(_stats(20.0, tta_disc=60.0))) == "not reproduced"
