import math

import pytest
import torch
import torch.nn.functional as F

from kexue.evidence.base import Context
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
)
from kexue.experiments.length_extrapolation import KEY_VARIANTS, LengthExtrapolation, variants

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
    assert "tang_rerope+logn_64_ratio" in run.metrics
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 * (1 + len(KEY_VARIANTS))
    assert all(c.holds in (True, False, None) and c.detail for c in checks)
    summary = exp.summarize(stats, [run], ctx)
    assert len(summary.tables) == 2 and all((tmp_path / f).exists() for f in summary.figures)
