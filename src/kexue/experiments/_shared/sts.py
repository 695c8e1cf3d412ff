"""Sentence-similarity helpers shared by the embedding experiments (whitening, CoSENT).

Pairs are ``(sentence_a, sentence_b, score)``; scores are Spearman x100 against gold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

Pair = tuple[str, str, float]

# name -> None (raw vectors), 0 (full whitening) or k (whitening-k)
WHITENING_VARIANTS: dict[str, int | None] = {
    "raw": None, "whitening": 0, "whitening-256": 256, "whitening-128": 128,
}


def fraction_variants(dim: int) -> dict[str, int | None]:
    """Variant name -> components kept (None = no whitening, 0 = all d) for a hidden size
    ``dim``: the posts' 256 of 768 and 128 of 768 become ``whitening-d/3`` and
    ``whitening-d/6`` (post 8321 keeps 128 of the 384 of the small models: d/3 too)."""
    if dim < 6:
        raise ValueError(f"expected a hidden size >= 6 to keep d/6 components, got {dim}")
    return {"raw": None, "whitening": 0, "whitening-d/3": round(dim / 3),
            "whitening-d/6": round(dim / 6)}


def whitening_scores(
    emb_a: np.ndarray,
    emb_b: np.ndarray,
    gold: np.ndarray,
    n_eval: int,
    kept: dict[str, int | None] = WHITENING_VARIANTS,
) -> dict[str, float]:
    """Spearman x100 on the last ``n_eval`` pairs for each variant of ``kept``
    (name -> ``None`` raw, ``0`` full whitening, ``k`` whitening-k).

    The whitening is fitted on every sentence vector given (both sides, all splits).
    """
    from kexue.embed import Whitening, sts_spearman

    if not 2 <= n_eval <= len(gold):
        raise ValueError(f"expected 2 <= n_eval <= {len(gold)} pairs, got {n_eval}")
    out = {}
    fit_on = np.concatenate([emb_a, emb_b])
    ea, eb, g = emb_a[-n_eval:], emb_b[-n_eval:], gold[-n_eval:]
    for variant, k in kept.items():
        if k is None:
            out[variant] = 100 * sts_spearman(ea, eb, g)
        else:
            w = Whitening(n_components=k or None).fit(fit_on)
            out[variant] = 100 * sts_spearman(w.transform(ea), w.transform(eb), g)
    return out


def stsb_pairs(splits: tuple[str, ...]) -> tuple[list[str], list[str], np.ndarray, int]:
    """All pairs of ``splits``; the last split's pairs are the evaluation pairs (returned count)."""
    from kexue.data import load_stsb

    a, b, gold, n_eval = [], [], [], 0
    for split in splits:
        rows = load_stsb(split, lang="en")
        a += [r[0] for r in rows]
        b += [r[1] for r in rows]
        gold += [r[2] for r in rows]
        n_eval = len(rows)
    return a, b, np.asarray(gold, dtype=np.float64), n_eval


def subsample(rows: Sequence[Pair], n: int | None, seed: int) -> list[Pair]:
    """A fixed random subset of ``n`` rows (all of them if ``n`` is None or larger)."""
    rows = list(rows)
    if n is None or n >= len(rows):
        return rows
    return random.Random(seed).sample(rows, n)

