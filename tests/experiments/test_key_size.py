import math

import pytest

from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.lm import build_lm
from kexue.experiments.key_size import KeySizeTalkingHeads, configs, count_parameters, rank_fit_kl

pytestmark = pytest.mark.usefixtures("one_thread")


def test_configs_have_matched_parameters_and_the_stated_shapes():
    cfgs = configs(70, hidden=128)
    counts = {n: count_parameters(build_lm(c, seed=0)) for n, c in cfgs.items()}
    base = counts["h8-k16"]
    for name, n in counts.items():
        assert abs(n - base) / base < 0.01, (name, n, base)
    attn = build_lm(cfgs["h8-k64-v16"], seed=0).blocks.layers[0].attn
    assert (attn.num_heads, attn.key_size, attn.head_size) == (8, 64, 16)
    attn = build_lm(cfgs["h16-k8-talking"], seed=0).blocks.layers[0].attn
    assert (attn.num_heads, attn.key_size, attn.talking_heads) == (16, 8, True)


def test_rank_fit_kl_is_nonnegative_and_full_rank_fits_best():
    kl = rank_fit_kl(16, (1, 16), steps=150, seed=0)
    assert all(v >= 0 for v in kl.values())
    assert kl[16] < kl[1]


def test_smoke_run(tmp_path):
    exp = KeySizeTalkingHeads()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 3 and all(c.holds in (True, False, None) and c.detail for c in checks)
    summary = exp.summarize(stats, [run], ctx)
    assert len(summary.tables) == 2 and all((tmp_path / f).exists() for f in summary.figures)
