"""The flow of a random walker on a network: what the map equation codes.

Source: Su Jianlin, "最小熵原理（五）："层层递进"之社区发现与聚类" (The minimum entropy
principle (5): community detection and clustering, layer by layer), 2019-10-19,
https://kexue.fm/archives/7006; Rosvall & Bergstrom, "Maps of random walks on complex
networks reveal community structure", PNAS 2008 (arXiv:0707.0609).

A graph (edge list, ``scipy.sparse`` matrix or networkx graph) becomes visit rates ``p_a``
of its nodes and flows ``f_ab`` on its links, with the conventions of the ``infomap``
package (2.x), so that codelengths computed here equal its codelengths:

* undirected: ``p_a = s_a / sum_b s_b`` (``s`` = weighted degree, a self-link counted
  once); each direction of a link {a, b} carries ``f_ab = w_ab / sum_b s_b``.
* directed: PageRank with teleportation probability ``tau`` (0.15),

      p = (tau + (1 - tau) d) v + (1 - tau) P^T p,      P_ab = w_ab / sum_c w_ac,

  ``d`` = the rate at dangling nodes (no out-links; they always teleport), ``v`` = where a
  teleport lands: proportional to out-weight ("to links", infomap's default) or uniform
  (``to_nodes=True``, the post's ``tau / n``).

  - unrecorded teleportation (infomap's default): teleport steps are not coded. The visit
    rates are one step of the walk along links from the PageRank,
    ``f_ab = p_a P_ab / (1 - d)`` and ``p'_b = sum_a f_ab``.
  - recorded teleportation (the post's formula, ``recorded_teleportation=True,
    to_nodes=True``): ``p`` is the PageRank, ``f_ab = (1 - tau) p_a P_ab``, and a module
    ``i`` also exits (enters) by teleporting, the post's

        q_i = tau (n - n_i) / n sum_{a in i} p_a + (1 - tau) sum_{a in i} sum_{b not in i} p_a P_ab,

    kept here as the teleport flow leaving each node, ``t_a = tau p_a`` (``p_a`` if
    dangling), and the share ``v_a`` of teleports landing on it: a module exits by
    ``t_i (1 - v_i)`` and is entered by ``(t - t_i) v_i``. With "to links" a recorded
    teleport lands in proportion to in-weight, as in infomap.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["Flow", "network_flow"]

GraphLike = Any  # an edge list, a scipy.sparse matrix, or a networkx graph


@dataclass(frozen=True)
class Flow:
    """Visit rates and link flows of a network, in the node order of :attr:`labels`.

    ``node`` (n,) sums to 1. ``source``, ``target``, ``link`` (m,) are the links between
    distinct nodes (each direction of an undirected link separately; duplicates summed,
    self-links dropped: they never cross a module boundary). ``teleport_out`` (n,) and
    ``teleport_in`` (n,) are the recorded-teleportation terms (zeros otherwise).
    """

    node: np.ndarray  # (n,) p_a
    source: np.ndarray  # (m,) int64
    target: np.ndarray  # (m,) int64
    link: np.ndarray  # (m,) f_ab
    teleport_out: np.ndarray  # (n,) t_a
    teleport_in: np.ndarray  # (n,) v_a, sums to 1 when teleportation is recorded
    directed: bool
    labels: list[Hashable]  # node names: 0..n-1 for edge lists and matrices

    @property
    def num_nodes(self) -> int:
        return len(self.node)

    @property
    def recorded(self) -> bool:
        return bool(self.teleport_out.any())


def network_flow(
    graph: GraphLike,
    *,
    directed: bool | None = None,
    teleportation_probability: float = 0.15,
    recorded_teleportation: bool = False,
    to_nodes: bool = False,
    num_nodes: int | None = None,
) -> Flow:
    """Visit rates and link flows of ``graph`` (see the module docstring for the formulas).

    Args:
        graph: an edge list (``(u, v)`` or ``(u, v, w)`` rows, nodes ``0..n-1``), a square
            ``scipy.sparse`` matrix (``A[u, v]`` = weight of u -> v), or a networkx graph
            (edge attribute ``weight``, default 1; node order ``list(graph)``).
        directed: treat links as directed. None: a networkx graph's own kind, a matrix
            is directed unless symmetric, an edge list is undirected.
        teleportation_probability: ``tau`` of the directed walk (ignored if undirected).
        recorded_teleportation: code the teleport steps (the post's formula).
        to_nodes: teleport uniformly to nodes instead of in proportion to link weight.
        num_nodes: for edge lists, the number of nodes (default: largest id + 1).
    """
    if not 0.0 < teleportation_probability < 1.0:
        raise ValueError(
            f"expected 0 < teleportation_probability < 1, got {teleportation_probability}")
    n, src, dst, w, kind, labels = _edges(graph, num_nodes)
    directed = kind if directed is None else bool(directed)
    if directed:
        return _directed_flow(n, src, dst, w, labels, teleportation_probability,
                              recorded_teleportation, to_nodes)
    return _undirected_flow(n, src, dst, w, labels)


# ----------------------------------------------------------------------------- input
def _edges(graph: GraphLike, num_nodes: int | None):
    """``(n, source, target, weight, directed_by_default, labels)`` of any accepted graph."""
    if sp.issparse(graph):
        n, src, dst, w, kind = _matrix_edges(graph)
        labels: list[Hashable] = list(range(n))
    elif hasattr(graph, "is_directed") and hasattr(graph, "nodes") and hasattr(graph, "edges"):
        n, src, dst, w, kind, labels = _networkx_edges(graph)
    else:
        n, src, dst, w = _list_edges(graph, num_nodes)
        kind, labels = False, list(range(n))
    if not np.isfinite(w).all():
        raise ValueError(f"expected finite edge weights, got {int((~np.isfinite(w)).sum())} "
                         f"NaN or inf")
    if (w < 0).any():
        raise ValueError(f"expected non-negative edge weights, got {int((w < 0).sum())} "
                         f"negative (smallest {w.min():g})")
    if n == 0 or not (w > 0).any():
        raise ValueError(f"expected a graph with at least one edge of positive weight, got "
                         f"{n} nodes and {len(w)} edges")
    keep = w > 0
    return n, src[keep], dst[keep], w[keep], kind, labels


def _matrix_edges(graph):
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"expected a square adjacency matrix, got shape {graph.shape}")
    coo = sp.coo_matrix(graph)
    coo.sum_duplicates()
    symmetric = (abs(coo - coo.T) > 0).nnz == 0
    if symmetric:  # each undirected link once, from its upper-triangle entry
        upper = coo.row <= coo.col
        coo = sp.coo_matrix((coo.data[upper], (coo.row[upper], coo.col[upper])), coo.shape)
    return (graph.shape[0], coo.row.astype(np.int64), coo.col.astype(np.int64),
            coo.data.astype(np.float64), not symmetric)


def _networkx_edges(graph):
    labels = list(graph.nodes)
    index = {v: i for i, v in enumerate(labels)}
    rows = [(index[u], index[v], d.get("weight", 1.0)) for u, v, d in graph.edges(data=True)]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return (len(labels), arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2],
            bool(graph.is_directed()), labels)


def _list_edges(graph: Sequence, num_nodes: int | None):
    try:
        arr = np.asarray(graph, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError("expected an edge list of (u, v) or (u, v, weight) rows, a "
                         "scipy.sparse matrix or a networkx graph, got "
                         f"{type(graph).__name__}") from err
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"expected edge-list rows (u, v) or (u, v, weight), got an array of "
                         f"shape {arr.shape}")
    ends = arr[:, :2]
    if (ends < 0).any() or (ends != np.round(ends)).any():
        raise ValueError("expected node ids that are non-negative integers in an edge list")
    src, dst = ends[:, 0].astype(np.int64), ends[:, 1].astype(np.int64)
    w = arr[:, 2] if arr.shape[1] == 3 else np.ones(len(arr))
    needed = int(ends.max()) + 1 if len(arr) else 0
    n = needed if num_nodes is None else int(num_nodes)
    if n < needed:
        raise ValueError(f"expected num_nodes >= {needed} (largest node id + 1), got {num_nodes}")
    return n, src, dst, w


# ----------------------------------------------------------------------------- flow models
def _merge_links(n: int, src, dst, flow):
    """Drop self-links and sum duplicate (source, target) pairs."""
    keep = src != dst
    m = sp.coo_matrix((flow[keep], (src[keep], dst[keep])), shape=(n, n)).tocsr()
    m.sum_duplicates()
    m = m.tocoo()
    return m.row.astype(np.int64), m.col.astype(np.int64), m.data


def _undirected_flow(n, src, dst, w, labels) -> Flow:
    strength = np.bincount(src, w, n) + np.bincount(dst, np.where(src != dst, w, 0.0), n)
    total = strength.sum()  # 2 W - (self-link weight)
    both_src, both_dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    s, t, f = _merge_links(n, both_src, both_dst, np.concatenate([w, w]) / total)
    zeros = np.zeros(n)
    return Flow(strength / total, s, t, f, zeros, zeros, False, labels)


def _pagerank(n, src, dst, w, tau, teleport_to, tol=1e-15, max_iter=10_000):
    """Stationary rates of the walk that follows ``P`` with prob. 1 - tau, teleports to
    ``teleport_to`` otherwise and always from dangling nodes (power iteration, L1 < tol)."""
    out_weight = np.bincount(src, w, n)
    dangling = out_weight == 0
    step = sp.csr_matrix((w / out_weight[src], (dst, src)), shape=(n, n))  # P^T
    p = np.full(n, 1.0 / n)
    for it in range(max_iter):
        new = (tau + (1 - tau) * p[dangling].sum()) * teleport_to + (1 - tau) * (step @ p)
        new /= new.sum()
        err = np.abs(new - p).sum()
        p = new
        if err < tol and it >= 50:
            break
    return p, step, dangling


def _directed_flow(n, src, dst, w, labels, tau, recorded, to_nodes) -> Flow:
    if to_nodes:
        teleport_to = np.full(n, 1.0 / n)
    else:  # to links: out-weight, or in-weight when the teleport step is recorded
        teleport_to = np.bincount(dst if recorded else src, w, n) / w.sum()
    p, step, dangling = _pagerank(n, src, dst, w, tau, teleport_to)
    transition = step.tocoo()  # entries (b, a) = P_ab
    a, b, prob = transition.col.astype(np.int64), transition.row.astype(np.int64), transition.data
    if recorded:
        s, t, f = _merge_links(n, a, b, (1 - tau) * p[a] * prob)
        teleport_out = np.where(dangling, 1.0, tau) * p
        return Flow(p, s, t, f, teleport_out, teleport_to, True, labels)
    link = p[a] * prob / (1 - p[dangling].sum())
    node = np.bincount(b, link, n)  # one step along links
    s, t, f = _merge_links(n, a, b, link)
    zeros = np.zeros(n)
    return Flow(node, s, t, f, zeros, zeros, True, labels)
