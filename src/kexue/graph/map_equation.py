"""The map equation: how many bits per step a two-level (or deeper) code of a random walk
needs, given a partition of the network into modules.

Source: Su Jianlin, "最小熵原理（五）："层层递进"之社区发现与聚类" (The minimum entropy
principle (5): community detection and clustering, layer by layer), 2019-10-19,
https://kexue.fm/archives/7006; Rosvall & Bergstrom, PNAS 2008 (arXiv:0707.0609) and
"Multilevel compression of random walks on networks" (arXiv:1010.0431).

With visit rates ``p_a``, module exit rates ``q_i`` (flow leaving module i) and enter rates
(flow entering it; equal to ``q_i`` on undirected networks), the post's

    L(M) = q H(Q) + sum_i p_i H(P^i),   q = sum_i q_i,   p_i = q_i + sum_{a in i} p_a,

written out in ``plogp(x) = x log2 x`` terms, as infomap computes it, is

    L = plogp(sum_i enter_i) - sum_i plogp(enter_i) - sum_i plogp(exit_i)
        + sum_i plogp(exit_i + sum_{a in i} p_a) - sum_a plogp(p_a)        (bits).

For a hierarchy every module ``m`` has a codebook with a codeword for leaving it
(``exit_m``, zero at the root), one for entering each child module (``enter_c``) and one
for each node directly in it (``p_a``); its average length is
``plogp(T_m) - plogp(exit_m) - sum_c plogp(enter_c) - sum_a plogp(p_a)`` with ``T_m`` the
sum of those rates, and ``L`` is the sum over all modules. The two-level ``L`` is the case
of one level of modules below the root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kexue.graph.flow import Flow, GraphLike, network_flow

__all__ = ["map_equation", "plogp"]


def plogp(x: np.ndarray | float) -> np.ndarray:
    """``x log2 x`` elementwise, with ``0 log 0 = 0``."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, x * np.log2(safe), 0.0)


def map_equation(
    graph: GraphLike | Flow,
    partition: Sequence | Mapping | np.ndarray,
    *,
    directed: bool | None = None,
    teleportation_probability: float = 0.15,
    recorded_teleportation: bool = False,
    to_nodes: bool = False,
    num_nodes: int | None = None,
) -> float:
    """Codelength in bits per step of ``partition`` of ``graph``.

    Args:
        graph: an edge list, ``scipy.sparse`` matrix or networkx graph (see
            :func:`kexue.graph.network_flow`, whose keyword arguments the remaining ones
            are), or a precomputed :class:`~kexue.graph.Flow`.
        partition: the module of every node, in node order (``0..n-1``; ``list(graph)`` for
            networkx): a sequence of n labels (two-level), a mapping ``{node: label}``, or
            a sequence of n integer tuples / an (n, depth) integer array padded with -1,
            each node's path of modules from the top (hierarchical; the form of infomap's
            ``multilevel_modules``).
    """
    flow = graph if isinstance(graph, Flow) else network_flow(
        graph, directed=directed, teleportation_probability=teleportation_probability,
        recorded_teleportation=recorded_teleportation, to_nodes=to_nodes,
        num_nodes=num_nodes)
    return tree_codelength(flow, as_paths(partition, flow))


def as_paths(partition: Any, flow: Flow) -> np.ndarray:
    """A partition as an (n, depth) int64 array of module paths, -1 after a node's last
    module (each column relabelled to 0, 1, ...)."""
    n = flow.num_nodes
    if isinstance(partition, Mapping):
        missing = [v for v in flow.labels if v not in partition]
        if missing:
            raise ValueError(f"expected a module for every node, got none for {len(missing)} "
                             f"node(s), e.g. {missing[0]!r}")
        partition = [partition[v] for v in flow.labels]
    if len(partition) != n:
        raise ValueError(f"expected a partition of length {n} (one module per node), got "
                         f"length {len(partition)}")
    if n and isinstance(partition[0], (tuple, list)):  # module paths, maybe ragged
        arr = np.full((n, max(len(path) for path in partition)), -1, np.int64)
        for i, path in enumerate(partition):
            arr[i, : len(path)] = path
    else:
        arr = np.asarray(partition)
    if arr.ndim == 1:
        return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(n, 1)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected module paths as integers of shape (n, depth), got "
                         f"shape {arr.shape} of {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr[:, 0] < 0).any():
        raise ValueError("expected every node to be in a top-level module (path[0] >= 0)")
    if (np.diff((arr >= 0).astype(np.int8), axis=1) > 0).any():
        raise ValueError("expected -1 only after a node's last module in a path")
    return arr


def tree_codelength(flow: Flow, paths: np.ndarray) -> float:
    """Hierarchical map equation of module ``paths`` (n, depth), -1 padded (see module
    docstring); depth 1 is the two-level map equation."""
    n, depth = paths.shape
    total = -float(plogp(flow.node).sum())  # every node's own codeword
    parent = np.zeros(n, np.int64)  # each node's module one level up (root = 0), -1: none
    rate = np.zeros(1)  # T_m of the modules one level up, filled in as children appear
    for level in range(depth):
        inside = paths[:, level] >= 0  # nodes with a module at this level
        ended = ~inside & (parent >= 0)  # nodes held directly by their parent module
        rate += np.bincount(parent[ended], flow.node[ended], len(rate))
        key = np.where(inside, parent * (paths[:, level].max() + 2) + paths[:, level] + 1, -1)
        uniq, module = np.unique(key, return_inverse=True)
        module = module.astype(np.int64) - int(uniq[0] == -1)  # -1 for nodes not inside
        exit_, enter = boundary_rates(flow, module, len(uniq) - int(uniq[0] == -1))
        owner = np.zeros(len(enter), np.int64)
        owner[module[inside]] = parent[inside]
        rate += np.bincount(owner, enter, len(rate))  # codewords for entering each child
        total += float(plogp(rate).sum() - plogp(enter).sum() - plogp(exit_).sum())
        parent, rate = module, exit_.copy()  # the children's own exit codewords
    held = parent >= 0  # the deepest modules hold the rest of their nodes
    rate += np.bincount(parent[held], flow.node[held], len(rate))
    return total + float(plogp(rate).sum())


def boundary_rates(flow: Flow, module: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exit and enter rates of ``k`` modules, (k,) each; ``module[a] = -1`` for a node in
    none of them."""
    ms, mt = module[flow.source], module[flow.target]
    cross = ms != mt
    out, into = cross & (ms >= 0), cross & (mt >= 0)
    exit_ = np.bincount(ms[out], flow.link[out], k).astype(np.float64)  # (empty -> int)
    enter = np.bincount(mt[into], flow.link[into], k).astype(np.float64)
    if flow.recorded:
        inside = module >= 0
        t = np.bincount(module[inside], flow.teleport_out[inside], k)
        v = np.bincount(module[inside], flow.teleport_in[inside], k)
        exit_ += t * (1 - v)
        enter += (flow.teleport_out.sum() - t) * v
    return exit_, enter
