import math
from types import SimpleNamespace

import pytest
import torch

from kexue.evidence.base import NOT_REPRODUCED, REPRODUCED, Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.lm import LMConfig, build_lm
from kexue.experiments.entropy_scale import EntropyScale, attention_entropy_study, mlm_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_entropy_study_scales_agree_at_512_and_entropy_drifts_less():
    study = attention_entropy_study(64, (64, 512, 4096), trials=50, seed=0)
    # at n = 512 the two scales are the same number, hence the same attention
    assert study["sqrt"][512] == pytest.approx(study["entropy"][512])
    # uniform attention bound: entropy <= log n
    for scale in study:
        for n, (entropy, weight) in study[scale].items():
            assert 0 < entropy <= math.log(n) and 0 < weight < 1
    drift = {s: study[s][4096][0] - study[s][64][0] for s in study}
    assert abs(drift["entropy"]) < abs(drift["sqrt"])


def test_mlm_accuracy_matches_direct_count():
    model = build_lm(LMConfig(vocab_size=12, hidden=16, layers=1, heads=2), seed=0).eval()
    val = torch.randint(1, 11, (256,), generator=torch.Generator().manual_seed(1))
    acc = mlm_accuracy(model, val, 32, 128, 11, 12)
    assert 0 <= acc <= 100
    # a model that always predicts the target is 100% accurate
    class Oracle(torch.nn.Module):
        def forward(self, ids, is_causal=True):
            hits = torch.nn.functional.one_hot(val[:128].view(-1, ids.shape[1])[: len(ids)], 12)
            return SimpleNamespace(logits=hits.float())

    assert mlm_accuracy(Oracle(), val, 32, 128, 11, 12, batch_size=100) == 100.0
    with pytest.raises(ValueError, match="length"):
        mlm_accuracy(model, val, 64, 32, 11, 12)


def test_smoke_run(tmp_path):
    exp = EntropyScale()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == len([k for k in run.metrics if k.startswith("sqrt_acc_")])
    assert all(c.holds in (True, False, None) and c.detail for c in checks)
    summary = exp.summarize(stats, [run], ctx)
    assert len(summary.tables) == 2 and all((tmp_path / f).exists() for f in summary.figures)


def _runs(sqrt: tuple[float, ...], entropy: tuple[float, ...]) -> list[Run]:
    """Three seeds of accuracies at 64 / 128 / 256 / 512 with a little paired noise."""
    return [Run({f"{name}_acc_{n}": v + 0.1 * s + (0.05 if name == "entropy" and s == 1 else 0)
                 for name, values in (("sqrt", sqrt), ("entropy", entropy))
                 for n, v in zip((64, 128, 256, 512), values)}) for s in range(3)]


def test_verdict_follows_the_claim():
    exp = EntropyScale()
    # the post's own numbers: equal at 64, better beyond
    post = _runs((43.27, 36.53, 23.02, 15.12), (43.11, 41.17, 34.04, 20.15))
    assert verdict(exp.checks(_aggregate(post, False))) == REPRODUCED
    # the entropy scale costs accuracy at the training length
    costly = _runs((43.27, 36.53, 23.02, 15.12), (38.0, 41.17, 34.04, 20.15))
    assert verdict(exp.checks(_aggregate(costly, False))) == NOT_REPRODUCED
    # no better (worse) beyond the training length
    worse = _runs((43.27, 36.53, 23.02, 15.12), (43.11, 35.0, 21.0, 14.0))
    assert verdict(exp.checks(_aggregate(worse, False))) == NOT_REPRODUCED
