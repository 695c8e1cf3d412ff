import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.word_vector_dim import (
    FACTORS,
    SkipGram,
    WordVectorDimension,
    build_vocab,
    heldout_loss,
    saturation_ratio,
    skipgram_pairs,
    train_skipgram,
    unigram_entropy,
)


def test_skipgram_pairs_equal_brute_force():
    ids = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    window = 2
    expected = sorted((int(ids[i]), int(ids[j])) for i in range(len(ids)) for j in range(len(ids))
                      if 0 < abs(i - j) <= window)
    got = sorted(map(tuple, skipgram_pairs(ids, window).tolist()))
    assert got == expected


def test_skipgram_pairs_rejects_bad_input():
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(torch.arange(5), 0)
    with pytest.raises(ValueError, match="1-d"):
        skipgram_pairs(torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="tokens"):
        skipgram_pairs(torch.arange(2), 2)


def test_build_vocab_orders_by_frequency_then_alphabet():
    vocab = build_vocab([["b", "a", "c", "a"], ["c", "d"]])
    assert vocab == {"a": 0, "c": 1, "b": 2, "d": 3}


def test_sampled_softmax_with_every_word_once_is_the_full_softmax():
    # With q uniform and the S = N negatives = the whole vocabulary, the -log(S q) = 0
    # correction vanishes and masking the target's own copy leaves exactly the full softmax.
    torch.manual_seed(0)
    model = SkipGram(30, 8)
    centre, context = torch.randint(0, 30, (50,)), torch.randint(0, 30, (50,))
    full = model.full_loss(centre, context)
    sampled = model.sampled_loss(centre, context, torch.arange(30), torch.zeros(30))
    torch.testing.assert_close(sampled, full)


def test_heldout_loss_is_the_batch_independent_mean():
    torch.manual_seed(0)
    model = SkipGram(20, 4)
    pairs = torch.randint(0, 20, (101, 2))
    whole = model.full_loss(pairs[:, 0], pairs[:, 1]).item()
    assert heldout_loss(model, pairs, batch_size=7) == pytest.approx(whole, rel=1e-5)


def test_training_learns_a_deterministic_successor():
    # Context of w is always w + 1 or w - 1 (mod N) in a cyclic stream: far below log N.
    n = 40
    ids = torch.arange(n).repeat(60)
    pairs = skipgram_pairs(ids, 1)
    counts = torch.bincount(ids, minlength=n)
    model = train_skipgram(pairs, n, 16, counts, epochs=3, batch_size=256, num_sampled=20,
                           lr=0.05, seed=0)
    assert heldout_loss(model, pairs) < 0.5 * math.log(n)


def test_saturation_ratio():
    losses = {1 / 8: 6.0, 1 / 4: 5.5, 1 / 2: 5.2, 1: 5.0, 2: 4.95, 4: 4.9}
    assert saturation_ratio(losses) == pytest.approx(0.1 / 1.0)
    assert set(losses) == set(FACTORS)
    with pytest.raises(ValueError, match="did not improve"):
        saturation_ratio({**losses, 1: 6.0})


def test_unigram_entropy():
    assert unigram_entropy(torch.ones(16)) == pytest.approx(math.log(16))
    assert unigram_entropy(torch.tensor([5, 0, 0])) == pytest.approx(0.0)


@pytest.mark.data("ptb-lm")
def test_word_vector_dim_smoke(tmp_path):
    exp = WordVectorDimension()
    ctx = Context(0, "smoke", tmp_path, tmp_path)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert run.metrics["bound"] == pytest.approx(8.33 * math.log(10000))
    assert len([k for k in run.metrics if k.startswith("heldout_loss/")]) == len(FACTORS)
    stats = _aggregate([run], False)
    assert exp.summarize(stats, [run], ctx).figures
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)  # one seed: noise unknown


def _stats(gains_below, ratios):
    runs = [Run({"gain_bound8_to_bound": g, "saturation_ratio": r})
            for g, r in zip(gains_below, ratios)]
    return _aggregate(runs, False)


@pytest.mark.parametrize("gains_below, ratios, expected", [
    ([0.44, 0.43, 0.45], [0.10, 0.12, 0.09], REPRODUCED),  # saturates at the bound
    ([0.44, 0.43, 0.45], [0.66, 0.70, 0.64], NOT_REPRODUCED),  # linear in log n all the way
    ([-0.20, -0.21, -0.19], [0.10, 0.12, 0.09], NOT_REPRODUCED),  # dimensions never helped
])
def test_the_verdict_follows_the_curve(gains_below, ratios, expected):
    assert verdict(WordVectorDimension().checks(_stats(gains_below, ratios))) == expected
