import math

import numpy as np
import pytest

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.whitening import POOLINGS, VARIANTS, BertWhitening, encoder_scores


def test_encoder_scores_name_every_pooling_and_variant():
    rng = np.random.default_rng(0)
    n, d = 50, 12
    a = rng.normal(size=(n, d))
    vectors = {"cls": np.concatenate([a, a + rng.normal(size=(n, d))]),
               "mean": np.concatenate([a, a + 0.1 * rng.normal(size=(n, d))])}
    gold = rng.uniform(0, 5, n)
    out = encoder_scores(vectors, n, gold, 40, "mlm")
    assert set(out) == {f"mlm/{p}/{v}" for p in vectors for v in VARIANTS}
    assert all(-100 <= s <= 100 for s in out.values())


def test_whitening_smoke(tmp_path):
    exp = BertWhitening()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert set(run.metrics) == {f"{e}/{p}/{v}" for e in ("mlm", "pretrained") for p in POOLINGS
                                for v in VARIANTS}
    assert all(math.isfinite(v) and -100 <= v <= 100 for v in run.metrics.values())
    stats = _aggregate([run], exp.deterministic)
    assert exp.summarize(stats, [run], ctx).figures
    checks = exp.checks(stats)
    assert len(checks) == 3 and all(c.holds is None for c in checks)  # one seed: noise unknown


def _stats(mlm_raw, mlm_white, mlm_third, pre_raw, pre_white):
    p = "first-last-avg"
    runs = [Run({f"mlm/{p}/raw": a, f"mlm/{p}/whitening": b, f"mlm/{p}/whitening-d/3": c,
                 f"pretrained/{p}/raw": pre_raw, f"pretrained/{p}/whitening": pre_white})
            for a, b, c in zip(mlm_raw, mlm_white, mlm_third)]
    return _aggregate(runs, False)


HOLDS = {"mlm_raw": [40.0, 42.0, 41.0], "mlm_white": [55.0, 56.0, 54.5],
             "mlm_third": [55.5, 55.8, 55.0], "pre_raw": 81.55, "pre_white": 77.85}


@pytest.mark.parametrize("change", [
    {},  # both halves as in the posts
    {"mlm_white": [38.0, 40.0, 39.5]},  # whitening lowers the raw encoder
    {"mlm_third": [48.0, 49.0, 47.5]},  # keeping a third loses 7 points
    {"pre_white": 85.0},  # whitening clearly helps the similarity-trained encoder
])
def test_every_half_of_the_claim_can_fail(change):
    stats = _stats(**{**HOLDS, **change})
    assert verdict(BertWhitening().checks(stats)) == (NOT_REPRODUCED if change else REPRODUCED)
