"""A k-nearest-neighbour graph of vectors: the network InfoMap clusters words on.

Source: the post's word-clustering demo (kexue.fm/archives/7006; bojone/infomap,
``word_cluster.py``): each word links to its most similar words (cosine similarity of
their vectors, at most k of them, each at least ``min_similarity``), weighted by that
similarity; the links are directed (a word's neighbours need not list it back).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["knn_graph"]


def knn_graph(vectors: np.ndarray, k: int, min_similarity: float = -1.0,
              batch_size: int = 4096) -> sp.csr_matrix:
    """Directed kNN graph as an (n, n) sparse matrix: ``A[i, j]`` = cosine similarity of
    rows i and j when j is among the ``k`` rows most similar to i (itself excluded) and
    the similarity is at least ``min_similarity`` (and > 0: weights must be positive).

    Args:
        vectors: (n, dim) array; rows need not be normalised.
        k: neighbours per row (1 <= k < n).
        min_similarity: drop weaker links (the post keeps similarity >= 0.5).
        batch_size: rows of the similarity matrix computed at once.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"expected vectors of shape (n >= 2, dim), got shape {x.shape}")
    if not 1 <= k < len(x):
        raise ValueError(f"expected 1 <= k < n = {len(x)}, got k = {k}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise ValueError(f"expected non-zero vectors, got {int((norms == 0).sum())} zero row(s)")
    x = x / norms
    rows, cols, sims = [], [], []
    for start in range(0, len(x), batch_size):
        sim = x[start : start + batch_size] @ x.T  # (batch, n)
        idx = np.arange(len(sim))
        sim[idx, start + idx] = -np.inf  # no self-links
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (batch, k), unordered
        top_sim = np.take_along_axis(sim, top, 1)
        keep = (top_sim >= min_similarity) & (top_sim > 0)
        rows.append(np.broadcast_to(start + idx[:, None], top.shape)[keep])
        cols.append(top[keep])
        sims.append(top_sim[keep])
    n = len(x)
    return sp.csr_matrix((np.concatenate(sims), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))
