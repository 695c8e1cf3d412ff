"""STS Spearman of row-wise cosine against gold scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from kexue.embed import rowwise_cosine, sts_spearman


def test_equals_direct_spearman_of_cosine() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    gold = rng.uniform(0, 5, size=50)
    cos = np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)])
    np.testing.assert_allclose(rowwise_cosine(a, b), cos, rtol=1e-12)
    assert sts_spearman(a, b, gold) == pytest.approx(spearmanr(cos, gold).statistic, abs=1e-12)
    # tensors in, same number out; row scaling and monotone maps of gold change nothing
    assert sts_spearman(torch.from_numpy(a).float(), torch.from_numpy(b).float(),
                        torch.from_numpy(gold)) == pytest.approx(sts_spearman(a, b, gold), abs=1e-6)
    scaled = a * rng.uniform(0.1, 10, size=(50, 1))
    assert sts_spearman(scaled, b, np.exp(gold)) == pytest.approx(sts_spearman(a, b, gold))


def test_perfect_ranking() -> None:
    angles = np.linspace(0.1, 3.0, 20)
    a = np.stack([np.ones(20), np.zeros(20)], axis=1)
    b = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert sts_spearman(a, b, -angles) == pytest.approx(1.0)


def test_bad_input() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="expected 4 gold scores"):
        sts_spearman(a, b, np.arange(3.0))
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3\) and \(3, 3\)"):
        sts_spearman(a, b[:3], np.arange(4.0))
    nan = b.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="emb_b contains NaN"):
        sts_spearman(a, nan, np.arange(4.0))
    with pytest.raises(ValueError, match="all gold scores are equal"):
        sts_spearman(a, b, np.ones(4))
    with pytest.raises(ValueError, match="zero vector"):
        sts_spearman(a, np.zeros((4, 3)), np.arange(4.0))
    with pytest.raises(ValueError, match="all cosines are equal"):
        sts_spearman(np.tile(a[:1], (4, 1)), np.tile(b[:1], (4, 1)), np.arange(4.0))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        sts_spearman(a[:1], b[:1], np.arange(1.0))
