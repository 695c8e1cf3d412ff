import math

import torch

from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.unilm import CLS, SEP, UniLMSeq2Seq, reverse_task


def test_reverse_task_layout():
    data = reverse_task(50, 3, 6, torch.Generator().manual_seed(0))
    for ids, seg, mask, src_len in zip(*data.tensors):
        n = int(src_len) - 2
        src = ids[1 : n + 1]
        assert ids[0] == CLS and ids[n + 1] == SEP
        assert torch.equal(ids[n + 2 : 2 * n + 2], src.flip(0)) and ids[2 * n + 2] == SEP
        assert seg[: n + 2].sum() == 0 and seg[n + 2 : 2 * n + 3].all()
        assert mask.sum() == 2 * n + 3 and not seg[mask == 0].any()


def test_smoke_run_gives_finite_metrics_and_checks(tmp_path):
    exp = UniLMSeq2Seq()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert 0 <= run.metrics["unilm_exact_match"] <= 100
    checks = exp.checks(_aggregate([run], False))
    assert len(checks) == 2 and all(c.holds is None or isinstance(c.holds, bool) for c in checks)


def test_verdict_follows_the_claim():
    from kexue.evidence.base import NOT_REPRODUCED, REPRODUCED, Run, verdict

    def runs(unilm, bidirectional):
        return [Run({"unilm_exact_match": u, "bidirectional_exact_match": b})
                for u, b in zip(unilm, bidirectional)]

    exp = UniLMSeq2Seq()
    assert verdict(exp.checks(_aggregate(runs([99.0, 100.0, 99.6], [3.0, 0.0, 12.0]), False))) \
        == REPRODUCED
    # the bidirectional mask does better: the UniLM mask is not what makes it work
    worse = runs([96.0, 97.0, 96.4], [99.2, 100.0, 99.8])
    assert verdict(exp.checks(_aggregate(worse, False))) == NOT_REPRODUCED
    # the UniLM model has not learnt the task
    weak = runs([60.0, 62.0, 58.0], [3.0, 0.0, 12.0])
    assert verdict(exp.checks(_aggregate(weak, False))) == NOT_REPRODUCED
