"""LFR benchmark graphs with planted communities (Lancichinetti, Fortunato & Radicchi,
Phys. Rev. E 78, 046110, 2008), through networkx, with the parameters kexue's benchmark
and evidence suite use."""

from __future__ import annotations

import numpy as np

__all__ = ["LFR_PARAMETERS", "lfr_graph"]

# degree exponent, community-size exponent, mean / max degree, community sizes
LFR_PARAMETERS = {"tau1": 2.5, "tau2": 1.5, "average_degree": 15, "max_degree": 50,
                  "min_community": 20, "max_community": 100}


def lfr_graph(n: int, mu: float = 0.2, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """An undirected LFR graph of ``n`` nodes: its edges (m, 2) and the planted community
    of every node (n,). ``mu`` is the fraction of each node's links that leave its
    community; the other parameters are :data:`LFR_PARAMETERS`. networkx's generator
    realises more mixing than ``mu`` (0.30 of the links join communities at mu = 0.2,
    n = 1000) and adds self-links, which are dropped here."""
    if not 0 <= mu <= 1:
        raise ValueError(f"expected a mixing fraction 0 <= mu <= 1, got {mu}")
    try:
        import networkx as nx
    except ImportError as err:
        raise ImportError("lfr_graph needs networkx: pip install networkx") from err
    graph = nx.LFR_benchmark_graph(n, mu=mu, seed=seed, **LFR_PARAMETERS)
    community = np.empty(n, np.int64)
    for label, members in enumerate({frozenset(graph.nodes[v]["community"]) for v in graph}):
        community[list(members)] = label
    edges = np.array([(u, v) for u, v in graph.edges() if u != v], np.int64).reshape(-1, 2)
    return edges, np.unique(community, return_inverse=True)[1].ravel()
