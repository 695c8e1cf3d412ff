"""STS evaluation: Spearman correlation between the pairs' cosine and the gold scores.

The metric of both BERT-whitening (kexue.fm/archives/8069, 2021-01-11) and CoSENT
(kexue.fm/archives/8847, 2022-01-06): ``spearman(cos(a_i, b_i), gold_i)``; the posts print it
x100, which is left to the caller.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from torch import Tensor

__all__ = ["rowwise_cosine", "sts_spearman"]


def _as_array(x: np.ndarray | Tensor, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        shape = "(n_pairs, dim)" if ndim == 2 else "(n_pairs,)"
        raise ValueError(f"expected {name} of shape {shape}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~np.isfinite(x)).sum())} entries)")
    return x


def rowwise_cosine(emb_a: np.ndarray | Tensor, emb_b: np.ndarray | Tensor) -> np.ndarray:
    """Row-wise cosine of two (n_pairs, dim) arrays, in float64: (n_pairs,)."""
    a = _as_array(emb_a, "emb_a", 2)
    b = _as_array(emb_b, "emb_b", 2)
    if a.shape != b.shape:
        raise ValueError(f"expected emb_a and emb_b of the same shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)  # (n_pairs,)
    if (norms == 0).any():
        raise ValueError(
            f"cosine undefined: {int((norms == 0).sum())} pair(s) contain a zero vector"
        )
    return np.einsum("nd,nd->n", a, b) / norms


def sts_spearman(
    emb_a: np.ndarray | Tensor, emb_b: np.ndarray | Tensor, gold: np.ndarray | Tensor
) -> float:
    """Spearman rank correlation of ``cos(emb_a[i], emb_b[i])`` with ``gold[i]``, in [-1, 1].

    Raises ValueError (instead of returning NaN) when fewer than two pairs are given or when
    the cosines or the gold scores are all equal.
    """
    cos = rowwise_cosine(emb_a, emb_b)
    gold = _as_array(gold, "gold", 1)
    if gold.shape[0] != cos.shape[0]:
        raise ValueError(f"expected {cos.shape[0]} gold scores (one per pair), got {gold.shape[0]}")
    if cos.shape[0] < 2:
        raise ValueError(f"expected at least 2 pairs for a rank correlation, got {cos.shape[0]}")
    for name, x in (("cosines", cos), ("gold scores", gold)):
        if np.all(x == x[0]):
            raise ValueError(f"Spearman undefined: all {name} are equal ({x[0]})")
    return float(spearmanr(cos, gold).statistic)
