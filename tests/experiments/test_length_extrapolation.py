import math

import pytest
import torch
import torch.nn.functional as F

from kexue.evidence.base import NOT_REPRODUCED, REPRODUCED, Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.lm import (
    LMConfig,
    build_lm,
    encode_chars,
    eval_ends,
    evaluate_variants,
    tail_loss,
    train_cached,
    training_windows,
    window_rows,
)
from kexue.experiments.length_extrapolation import LengthExtrapolation, metric, variants

pytestmark = pytest.mark.usefixtures("one_thread")


def test_encode_chars_maps_unknown_to_zero():
    assert encode_chars("abca?", ["a", "b", "c"]).tolist() == [1, 2, 3, 1, 0]


def test_training_windows_are_consecutive_slices():
    ids = torch.arange(20)
    w = training_windows(ids, 6, stride=3)
    assert w.shape == (5, 7)
    assert w[1].tolist() == list(range(3, 10)) and w[-1].tolist() == list(range(12, 19))
    with pytest.raises(ValueError, match="need at least 7 ids"):
        training_windows(torch.arange(5), 6)


@pytest.fixture(scope="module")
def tiny_model():
    return build_lm(LMConfig(vocab_size=12, hidden=16, layers=1, heads=2), seed=0).eval()


def test_tail_loss_scores_the_same_targets_at_every_length(tiny_model):
    val = torch.randint(1, 12, (200,), generator=torch.Generator().manual_seed(1))
    ends = eval_ends(val, 64, 3)
    assert min(ends) >= 64 and max(ends) <= len(val) - 2
    got = tail_loss(tiny_model, val, ends, 32, 8)
    ref = []
    for e in ends:
        with torch.no_grad():
            logits = tiny_model(val[None, e - 32:e]).logits[0, -8:]
        ref.append(F.cross_entropy(logits, val[e - 7:e + 1], reduction="none"))
    assert math.isclose(got, float(torch.cat(ref).mean()), rel_tol=1e-5)
    with pytest.raises(ValueError, match="last"):
        tail_loss(tiny_model, val, ends, 8, 16)


def test_window_rows_plain_and_repeated():
    val = torch.arange(100)
    ends = torch.tensor([50, 90])
    plain = window_rows(val, ends, 8)
    assert plain[0].tolist() == list(range(42, 51)) and plain[1].tolist() == list(range(82, 91))
    rep = window_rows(val, ends, 8, period=4)  # the last 4 ids up to the end, repeated
    assert rep[0].tolist() == [50, 47, 48, 49, 50, 47, 48, 49, 50]
    assert torch.equal(window_rows(val, ends, 8, period=9), plain)  # one period = plain
    with pytest.raises(ValueError, match="period"):
        window_rows(val, ends, 8, period=0)


def test_tail_loss_on_repeated_windows_scores_the_repeated_text(tiny_model):
    val = torch.randint(1, 12, (200,), generator=torch.Generator().manual_seed(3))
    ends = [100, 150]
    got = tail_loss(tiny_model, val, ends, 32, 8, period=16)
    rows = window_rows(val, torch.tensor(ends), 32, period=16)
    with torch.no_grad():
        logits = tiny_model(rows[:, :-1]).logits[:, -8:]
    want = F.cross_entropy(logits.flatten(0, 1), rows[:, -8:].flatten())
    assert math.isclose(got, float(want), rel_tol=1e-5)


def test_every_variant_is_plain_rope_within_the_training_length(tiny_model):
    """In-length the extrapolation options change nothing except ReRoPE/windows beyond w."""
    val = torch.randint(1, 12, (300,), generator=torch.Generator().manual_seed(2))
    losses = evaluate_variants(tiny_model, val, variants(tiny_model.rope.dim, 32), [32, 64], 32, 2)
    plain = losses["plain"][32]
    for name in ("plain+logn", "pi", "pi+logn", "ntk", "ntk+logn", "yarn", "window"):
        assert math.isclose(losses[name][32], plain, rel_tol=1e-5), name
    assert not math.isclose(losses["pi"][64], losses["plain"][64], rel_tol=1e-6)


def test_train_cached_reloads_the_same_weights(tmp_path):
    config = LMConfig(vocab_size=10, hidden=16, layers=1, heads=2)
    windows = torch.randint(1, 10, (40, 9))
    a = train_cached(config, windows, steps=3, seed=0, cache_dir=tmp_path, tag="t", batch_size=4,
                     log=lambda s: None)
    seen = []
    b = train_cached(config, windows, steps=3, seed=0, cache_dir=tmp_path, tag="t", batch_size=4,
                     log=seen.append)
    assert seen and "loaded cached" in seen[0]
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert len(list(tmp_path.glob("lm-t-s0-*.pt"))) == 1


def test_smoke_run(tmp_path):
    exp = LengthExtrapolation()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert "text_rerope+logn_256_ratio" in run.metrics and "repeated_window_256" in run.metrics
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 9
    assert all(c.holds in (True, False, None) and c.detail for c in checks)
    summary = exp.summarize(stats, [run], ctx)
    assert len(summary.tables) == 2 and all((tmp_path / f).exists() for f in summary.figures)


def _runs(text: dict[str, float], repeated: dict[str, float], base: float = 2.0) -> list[Run]:
    """Three seeds: losses at 128 all ``base``, at 1024 as given, a little paired noise."""
    runs = []
    for s in range(3):
        noise = 0.002 * (s - 1)
        m = {metric(v, 1024): loss + noise for v, loss in text.items()}
        m |= {metric(v, 1024, True): loss + noise for v, loss in repeated.items()}
        m |= {metric(v, 128): base + noise for v in text}
        m["text_plain_1024_ratio"] = m[metric("plain", 1024)] / m[metric("plain", 128)]
        m["text_rerope+logn_1024_ratio"] = m[metric("rerope+logn", 1024)] / m[metric("plain", 128)]
        runs.append(Run(m))
    return runs


HOLDS = {"plain": 2.8, "pi": 3.2, "ntk+logn": 2.3, "rerope+logn": 1.95,
         "leaky-rerope+logn": 1.94, "window": 1.99}
REPEATED_HOLDS = {"window": 1.99, "rerope+logn": 0.8, "leaky-rerope+logn": 0.7}


def test_verdict_follows_the_claim():
    exp = LengthExtrapolation()
    assert verdict(exp.checks(_aggregate(_runs(HOLDS, REPEATED_HOLDS), False))) == REPRODUCED
    # ReRoPE only as good as a window that ignores the extra context: not reproduced
    blind = {"window": 1.99, "rerope+logn": 2.05, "leaky-rerope+logn": 2.05}
    assert verdict(exp.checks(_aggregate(_runs(HOLDS, blind), False))) == NOT_REPRODUCED
    # PI better than doing nothing at 8x: the post's order is broken
    pi_good = dict(HOLDS, pi=2.5)
    assert verdict(exp.checks(_aggregate(_runs(pi_good, REPEATED_HOLDS), False))) == NOT_REPRODUCED
