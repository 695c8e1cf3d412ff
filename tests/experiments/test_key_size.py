import math

import pytest

from kexue.evidence.base import NOT_REPRODUCED, REPRODUCED, Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.lm import build_lm
from kexue.experiments.key_size import (
    LAYOUTS,
    KeySizeTalkingHeads,
    configs,
    count_parameters,
    layout,
    rank_fit_kl,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_configs_have_matched_parameters_and_the_stated_shapes():
    cfgs = configs(70, hidden=128)
    assert tuple(cfgs) == LAYOUTS
    counts = {n: count_parameters(build_lm(c, seed=0)) for n, c in cfgs.items()}
    base = counts["base"]
    for name, n in counts.items():
        assert abs(n - base) / base < 0.01, (name, n, base)
    attn = build_lm(cfgs["wide-key"], seed=0).blocks.layers[0].attn
    assert (attn.num_heads, attn.key_size, attn.head_size) == (8, 64, 16)
    attn = build_lm(cfgs["many-talking"], seed=0).blocks.layers[0].attn
    assert (attn.num_heads, attn.key_size, attn.talking_heads) == (16, 8, True)
    assert layout(cfgs["wide-key"]) == "8 x 64/16" and layout(cfgs["base-talking"]) == "8 x 16/16 (talking)"


def test_configs_reject_a_hidden_size_without_16_wide_heads():
    with pytest.raises(ValueError, match="hidden"):
        configs(70, hidden=40)


def test_rank_fit_kl_is_nonnegative_and_full_rank_fits_best():
    kl = rank_fit_kl(16, (1, 16), steps=150, seed=0)
    assert all(v >= 0 for v in kl.values())
    assert kl[16] < kl[1]


def _runs(bpc: dict[str, float]) -> list[Run]:
    """Three seeds around the given bits/char, with a little paired noise."""
    jitter = {0: 0.0, 1: 0.003, 2: -0.002}
    return [Run({f"{n}_bpc": v + 0.01 * s + (jitter[s] if n == "base" else -jitter[s])
                 for n, v in bpc.items()}) for s in range(3)]


def test_verdict_follows_the_claim():
    exp = KeySizeTalkingHeads()
    holds = {"base": 2.50, "wide-key": 2.40, "base-talking": 2.45, "many": 2.55, "many-talking": 2.35}
    assert verdict(exp.checks(_aggregate(_runs(holds), False))) == REPRODUCED
    # a larger key_size hurts: the low-rank claim is false
    wide_worse = dict(holds, **{"wide-key": 2.60})
    assert verdict(exp.checks(_aggregate(_runs(wide_worse), False))) == NOT_REPRODUCED
    # with talking heads, more heads hurt: the post's figure is false
    many_worse = dict(holds, **{"many-talking": 2.50})
    assert verdict(exp.checks(_aggregate(_runs(many_worse), False))) == NOT_REPRODUCED


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
