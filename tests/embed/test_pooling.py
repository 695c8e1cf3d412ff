"""Pooling strategies of BERT-whitening (kexue.fm/archives/8069): padding-aware means."""

from __future__ import annotations

import pytest
import torch

from kexue.embed import POOLING_STRATEGIES, masked_mean, pool


def layers(batch: int = 3, seq: int = 5, hidden: int = 4, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, seq, hidden, generator=g, dtype=torch.float64) for _ in range(n))


MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])


def test_masked_mean_equals_mean_of_real_tokens() -> None:
    (h,) = layers(n=1)
    out = masked_mean(h, MASK)
    for row, length in enumerate(MASK.sum(dim=1).tolist()):
        torch.testing.assert_close(out[row], h[row, :length].mean(dim=0))
    torch.testing.assert_close(masked_mean(h), h.mean(dim=1))
    torch.testing.assert_close(masked_mean(h, MASK.bool()), out)


def test_padding_values_do_not_matter() -> None:
    hs = layers()
    garbage = tuple(torch.where(MASK[..., None].bool(), h, torch.full_like(h, 1e6)) for h in hs)
    for pooling in POOLING_STRATEGIES:
        torch.testing.assert_close(pool(garbage, MASK, pooling), pool(hs, MASK, pooling))


def test_strategies_read_the_right_layers() -> None:
    hs = layers(n=4)  # embeddings output, then layers 1..3
    emb, first, second, last = hs
    torch.testing.assert_close(pool(hs, MASK, "cls"), last[:, 0])
    torch.testing.assert_close(pool(hs, MASK, "mean"), masked_mean(last, MASK))
    # first-last-avg: first *Transformer layer* output (hidden_states[1]), not the embeddings
    expected = (masked_mean(first, MASK) + masked_mean(last, MASK)) / 2
    torch.testing.assert_close(pool(hs, MASK, "first-last-avg"), expected)
    assert not torch.allclose(pool(hs, MASK, "first-last-avg"),
                              (masked_mean(emb, MASK) + masked_mean(last, MASK)) / 2)
    expected = (masked_mean(second, MASK) + masked_mean(last, MASK)) / 2
    torch.testing.assert_close(pool(hs, MASK, "last-2-avg"), expected)
    torch.testing.assert_close(pool((last,), MASK, "mean"), masked_mean(last, MASK))


def test_bad_input() -> None:
    hs = layers()
    with pytest.raises(ValueError, match="expected pooling in"):
        pool(hs, MASK, "max")
    with pytest.raises(ValueError, match=r">= 3 hidden states.*got 2"):
        pool(hs[:2], MASK, "last-2-avg")
    with pytest.raises(ValueError, match=r"shape \(3, 5\) \(batch, seq\), got \(3, 4\)"):
        masked_mean(hs[0], MASK[:, :4])
    with pytest.raises(ValueError, match=r"no tokens in rows \[1\]"):
        masked_mean(hs[0], torch.tensor([[1, 1, 0, 0, 0], [0] * 5, [1] * 5]))
    with pytest.raises(ValueError, match="empty sequence"):
        pool((), MASK)
