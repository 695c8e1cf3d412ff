import math

import pytest

from kexue.data import available
from kexue.evidence import Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments.kgclue import KgCLUE, score, split_subject, target_text


def test_subject_sense_split_and_target():
    assert split_subject("守望星光（韩玉玲、刘东考演唱歌曲）") == ("守望星光", "韩玉玲、刘东考演唱歌曲")
    assert split_subject("龙编站") == ("龙编站", "")
    assert target_text("刘晓华（广东工业大学教授）", "主讲课程") == "刘晓华|主讲课程|广东工业大学教授"


def test_score_looks_objects_up_in_the_kb():
    kb = {"a|p|": "x", "b|q|m": "yz"}
    gold = [("a", "p", "x"), ("b（m）", "q", "yw")]
    got = score(["a|p|", "b|q|"], gold, kb)  # the second misses its sense: not an entry
    assert got == {"em": 50.0, "f1": 50.0, "sp_em": 100.0, "in_kb": 50.0}


@pytest.mark.skipif(not available("kgclue"), reason="kgclue not available (set KEXUE_DATA)")
def test_smoke_run(tmp_path, one_thread):
    exp = KgCLUE()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert run.metrics["constrained/in_kb"] == 100.0 and run.metrics["lookahead/in_kb"] == 100.0
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)  # one seed: noise unknown
    assert exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path)).tables


def _stats(constrained_em, in_kb):
    runs = [Run({"constrained/in_kb": in_kb, "constrained/em": constrained_em + d,
                 "unconstrained/em": 10.0 + d}) for d in (-1.0, 0.0, 1.0)]
    return _aggregate(runs, False)


def test_verdict_follows_the_measurements():
    exp = KgCLUE()
    assert verdict(exp.checks(_stats(60.0, 100.0))) == "reproduced"
    assert verdict(exp.checks(_stats(5.0, 100.0))) == "not reproduced"  # the trie did not help
    assert verdict(exp.checks(_stats(60.0, 97.0))) == "not reproduced"  # an output left the KB
