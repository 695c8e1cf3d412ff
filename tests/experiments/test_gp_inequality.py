import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Context, verdict
from kexue.evidence.base import Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.gp_inequality import (
    GradientPenaltyInequality,
    both_sides,
    hashed_bags,
    mlp,
)


def test_hashed_bags_are_unit_rows_and_stable():
    x = hashed_bags(["a good film", "A good film", ""], 64)
    assert torch.equal(x[0], x[1]) and x[2].abs().sum() == 0
    assert torch.allclose(x[0].norm(), torch.tensor(1.0))


def test_both_sides_hold_on_random_networks():
    torch.manual_seed(0)
    for activation in ("tanh", "relu"):
        model = mlp(20, 8, 2, activation)
        lhs, rhs = both_sides(model, torch.randn(50, 20), torch.randint(0, 2, (50,)))
        assert (lhs <= rhs * (1 + 1e-5)).all() and (lhs > 0).any()


def test_smoke_run(tmp_path, one_thread):
    exp = GradientPenaltyInequality()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert run.metrics["tanh/violations"] == 0 and run.metrics["relu/violations"] == 0
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert (tmp_path / run.figures[0]).is_file()
    stats = _aggregate([run, run], False)
    assert exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path)).tables


def _stats(violations):
    runs = [Run({"tanh/violations": v, "relu/violations": 0.0}) for v in violations]
    return _aggregate(runs, False)


@pytest.mark.parametrize("violations, expected", [([0.0, 0.0, 0.0], REPRODUCED),
                                                   ([3.0, 2.0, 4.0], NOT_REPRODUCED)])
def test_the_verdict_follows_the_violations(violations, expected):
    assert verdict(GradientPenaltyInequality().checks(_stats(violations))) == expected
