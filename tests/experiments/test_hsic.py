import math

import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.hsic import HSIC, posts_numbers, rejection_rates


def test_posts_numbers_come_out():
    values = posts_numbers(torch.Generator().manual_seed(0))
    assert values["post/independent"] < 0.001
    assert 0.086 < values["post/dependent"] < 0.106


def test_pearson_misses_the_square_and_hsic_does_not(one_thread):
    generator = torch.Generator().manual_seed(0)
    hsic_power, pearson_power, r = rejection_rates(60, 20, 99, generator, dependent=True)
    assert hsic_power > 0.8 and pearson_power < 0.5 and abs(r) < 0.2


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path, one_thread):
    exp = HSIC()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {"hsic/false_positive_rate", "backprop/accuracy", "hsic-bottleneck/accuracy"} <= set(
        run.metrics)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 6 and all(c.holds is None for c in checks)
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 5


def synthetic(hsic_power, pearson_power, fpr=(0.05, 0.04, 0.06)):
    runs = [Run({"post/independent": 0.0003, "post/dependent": 0.094, "hsic/power@160": h,
                 "pearson/power@160": p, "hsic/false_positive_rate": f})
            for h, p, f in zip(hsic_power, pearson_power, fpr)]
    return _aggregate(runs, False)


def test_verdict_follows_the_power_of_the_tests():
    exp = HSIC()
    assert verdict(exp.checks(synthetic([0.97, 0.99, 0.98], [0.08, 0.1, 0.07]))) == REPRODUCED
    blind = synthetic([0.30, 0.25, 0.35], [0.08, 0.1, 0.07])
    assert verdict(exp.checks(blind)) == NOT_REPRODUCED
    uncalibrated = synthetic([0.97, 0.99, 0.98], [0.08, 0.1, 0.07], fpr=(0.30, 0.32, 0.31))
    assert verdict(exp.checks(uncalibrated)) == NOT_REPRODUCED
