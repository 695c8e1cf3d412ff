import math

import numpy as np
import pytest

from kexue.embed import sts_spearman
from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.sts import fraction_variants, whitening_scores
from kexue.experiments.whitening_zh import TASKS, WhiteningChinese, task_pairs

needs_zh = pytest.mark.data("stsb-zh", "senteval_cn")


def _anisotropic(n=300, d=12, seed=0):
    """Pairs whose similarity is planted in the noise level, plus a nuisance direction of
    large, pair-specific amplitude shared by both sides (it pushes the raw cosine of some
    pairs towards 1 whatever their gold score: the anisotropy whitening removes)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    gold = rng.uniform(0, 5, size=n)
    noise = rng.normal(size=(n, d)) * (5 - gold)[:, None] / 5
    nuisance = np.zeros((n, d))
    nuisance[:, 0] = 20 * rng.normal(size=n)
    return base + nuisance, base + noise + nuisance, gold


def test_variants_keep_the_posts_fractions():
    assert fraction_variants(768) == {"raw": None, "whitening": 0, "whitening-d/3": 256, "whitening-d/6": 128}
    assert fraction_variants(128)["whitening-d/3"] == 43 and fraction_variants(128)["whitening-d/6"] == 21
    with pytest.raises(ValueError, match="hidden size"):
        fraction_variants(4)


def test_raw_score_is_the_plain_spearman_of_the_test_pairs():
    a, b, gold = _anisotropic()
    scores = whitening_scores(a, b, gold, 100, {"raw": None})
    assert scores["raw"] == pytest.approx(100 * sts_spearman(a[-100:], b[-100:], gold[-100:]))


def test_full_whitening_is_invariant_to_invertible_affine_maps():
    # (x A + c) whitened equals x whitened up to an orthogonal map, so cosines are unchanged.
    a, b, gold = _anisotropic()
    rng = np.random.default_rng(1)
    A = rng.normal(size=(12, 12)) + 3 * np.eye(12)
    c = rng.normal(size=12) * 5
    kept = {"raw": None, "whitening": 0}
    s1 = whitening_scores(a, b, gold, 150, kept)
    s2 = whitening_scores(a @ A + c, b @ A + c, gold, 150, kept)
    assert s1["whitening"] == pytest.approx(s2["whitening"], abs=1e-8)
    assert s1["raw"] != pytest.approx(s2["raw"], abs=1e-3)


def test_whitening_undoes_planted_anisotropy():
    a, b, gold = _anisotropic()
    s = whitening_scores(a, b, gold, 300, {"raw": None, "whitening": 0})
    assert s["whitening"] > s["raw"] + 10


def test_whitening_scores_rejects_bad_n_eval():
    a, b, gold = _anisotropic(n=20)
    with pytest.raises(ValueError, match="n_eval"):
        whitening_scores(a, b, gold, 21, {"raw": None})


@needs_zh
def test_task_pairs_put_the_test_split_last():
    from kexue.data import load_senteval_cn, load_stsb

    a, b, gold, n_test = task_pairs("BQ", None)
    test = load_senteval_cn("BQ", "test")
    assert n_test == len(test) and len(a) == len(b) == len(gold) == len(test) + 10000
    assert (a[-1], b[-1], gold[-1]) == test[-1]
    a, b, gold, n_test = task_pairs("STS-B", 30)
    assert len(a) == 90 and n_test == 30
    test_pairs = {(r[0], r[1]) for r in load_stsb("test", "zh")}
    assert all((x, y) in test_pairs for x, y in zip(a[-30:], b[-30:]))
    with pytest.raises(ValueError, match="task"):
        task_pairs("MNLI", 1)


@needs_zh
def test_whitening_zh_smoke(tmp_path):
    exp = WhiteningChinese()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert len(run.metrics) == (len(TASKS) + 1) * 3 * 4  # + the five-task average
    assert all(math.isfinite(v) and -100 <= v <= 100 for v in run.metrics.values())
    assert {f"avg/{p}/{v}" for p in ("cls", "mean", "first-last-avg")
            for v in fraction_variants(32)} <= set(run.metrics)
    assert not WhiteningChinese.deterministic  # the encoder is trained, one per seed
    stats = _aggregate([run], False)
    assert exp.summarize(stats, [run], ctx).figures
    checks = exp.checks(stats)
    assert len(checks) == 3 and all(c.holds is None for c in checks)  # one seed: noise unknown


def _stats(raw, whitened, reduced, avg_raw, avg_whitened):
    p = "first-last-avg"
    runs = [Run({f"STS-B/{p}/raw": r, f"STS-B/{p}/whitening": w, f"STS-B/{p}/whitening-d/3": k,
                 f"avg/{p}/raw": ar, f"avg/{p}/whitening": aw})
            for r, w, k, ar, aw in zip(raw, whitened, reduced, avg_raw, avg_whitened)]
    return _aggregate(runs, False)


HOLDS = {"raw": [44.0, 45.0, 43.5], "whitened": [60.0, 62.0, 61.0], "reduced": [60.5, 61.8, 61.2],
             "avg_raw": [20.0, 21.0, 20.5], "avg_whitened": [25.0, 26.0, 25.2]}


@pytest.mark.parametrize("change", [
    {},  # the post's pattern
    {"whitened": [38.0, 39.5, 38.2]},  # whitening lowers STS-B
    {"reduced": [54.0, 55.5, 55.0]},  # keeping a third loses 6 points (our old -6.5)
    {"avg_whitened": [18.0, 19.5, 19.0]},  # whitening lowers the average
])
def test_every_half_of_the_claim_can_fail(change):
    stats = _stats(**{**HOLDS, **change})
    assert verdict(WhiteningChinese().checks(stats)) == (NOT_REPRODUCED if change else REPRODUCED)
