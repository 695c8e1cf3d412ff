"""The infomap package (C++ core) as the reference, and small graphs with known answers."""

from __future__ import annotations

import numpy as np


def peer_codelength(edges, num_nodes, partition, **options) -> float:
    """infomap's codelength of a fixed two-level ``partition`` (no search)."""
    import infomap

    net = infomap.Network()
    for i in range(num_nodes):
        net.add_node(i)
    for u, v, *w in edges:
        net.add_link(int(u), int(v), float(w[0]) if w else 1.0)
    result = infomap.run(net, options=infomap.Options(no_infomap=True, two_level=True, **options),
                         initial_partition={i: int(m) for i, m in enumerate(partition)})
    return result.codelength


def peer_run(edges, num_nodes, **options):
    """infomap's own search: (codelength, top module per node, tree path per node)."""
    import infomap

    net = infomap.Network()
    for i in range(num_nodes):
        net.add_node(i)
    for u, v, *w in edges:
        net.add_link(int(u), int(v), float(w[0]) if w else 1.0)
    result = infomap.run(net, options=infomap.Options(**options))
    nodes = {node.node_id: node for node in result.nodes()}
    modules = np.array([nodes[i].path[0] for i in range(num_nodes)])
    paths = [tuple(nodes[i].path[:-1]) for i in range(num_nodes)]  # leaf index dropped
    return result.codelength, modules, paths


def random_digraph(n, p, seed, dangling=()):
    """Weighted directed links (u, v, w) with integer weights 1..3; ``dangling`` nodes get
    no out-links."""
    rng = np.random.default_rng(seed)
    return [(u, v, float(rng.integers(1, 4))) for u in range(n) for v in range(n)
            if u != v and u not in dangling and rng.random() < p]


def planted_hierarchy(seed=0, groups=4, per_group=4, size=10, p=(0.8, 0.08, 0.003)):
    """Undirected links of ``groups`` super-groups of ``per_group`` dense groups of ``size``
    nodes; returns (edges, super label, group label)."""
    rng = np.random.default_rng(seed)
    n = groups * per_group * size
    group = np.arange(n) // size
    sup = np.arange(n) // (per_group * size)
    i, j = np.triu_indices(n, 1)
    prob = np.where(group[i] == group[j], p[0], np.where(sup[i] == sup[j], p[1], p[2]))
    keep = rng.random(len(i)) < prob
    return list(zip(i[keep].tolist(), j[keep].tolist())), sup, group


TWO_CLIQUES = [(a, b) for a in range(4) for b in range(a + 1, 4)] + [
    (a, b) for a in range(4, 8) for b in range(a + 1, 8)] + [(3, 4)]
