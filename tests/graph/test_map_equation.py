import math

import networkx as nx
import numpy as np
import pytest

from kexue.graph import map_equation, network_flow, plogp

from ._peer import TWO_CLIQUES, peer_codelength, peer_run, planted_hierarchy, random_digraph

FLOW_MODELS = {  # kexue keyword arguments -> the infomap options meaning the same
    "undirected": ({"directed": False}, {}),
    "directed": ({"directed": True}, {"flow_model": "directed"}),
    "directed-to-nodes": ({"directed": True, "to_nodes": True},
                          {"flow_model": "directed", "to_nodes": True}),
    "recorded": ({"directed": True, "recorded_teleportation": True},
                 {"flow_model": "directed", "recorded_teleportation": True}),
    "recorded-to-nodes (the post's formula)": (
        {"directed": True, "recorded_teleportation": True, "to_nodes": True},
        {"flow_model": "directed", "recorded_teleportation": True, "to_nodes": True}),
}


def posts_formula(edges, n, partition, tau=0.15):
    """L(M) = q H(Q) + sum_i p_i H(P^i) exactly as the post writes it: PageRank with
    teleportation to uniform nodes, q_i = tau (n - n_i)/n sum p + (1 - tau) sum sum p P,
    one loop per term. The post codes module entries by q_i (its exit rate), which on a
    directed network differs from the enter rate, so this is compared on undirected
    links (tau = 0) and on the post's own q_i-only variant below."""
    w = np.zeros((n, n))
    for u, v, *x in edges:
        w[u, v] += x[0] if x else 1.0
    P = w / w.sum(1, keepdims=True)
    p = np.full(n, 1 / n)
    for _ in range(5000):
        p = (1 - tau) * p @ P + tau / n
    modules = sorted(set(partition))
    q = {}
    for i in modules:
        inside = [a for a in range(n) if partition[a] == i]
        outside = [b for b in range(n) if partition[b] != i]
        q[i] = tau * (n - len(inside)) / n * sum(p[a] for a in inside) + (1 - tau) * sum(
            p[a] * P[a, b] for a in inside for b in outside)
    q_total = sum(q.values())
    h_q = -sum(q[i] / q_total * math.log2(q[i] / q_total) for i in modules if q[i] > 0)
    total = q_total * h_q
    for i in modules:
        p_circ = q[i] + sum(p[a] for a in range(n) if partition[a] == i)
        terms = [q[i]] + [p[a] for a in range(n) if partition[a] == i]
        total += p_circ * -sum(t / p_circ * math.log2(t / p_circ) for t in terms if t > 0)
    return total


@pytest.mark.parametrize("model", list(FLOW_MODELS))
@pytest.mark.parametrize("seed", [0, 1])
def test_codelength_equals_the_infomap_package(model, seed):
    pytest.importorskip("infomap")
    ours, theirs = FLOW_MODELS[model]
    n = 40
    edges = random_digraph(n, 0.1, seed, dangling=(7,))
    partition = np.random.default_rng(seed).integers(0, 5, n)
    expected = peer_codelength(edges, n, partition, **theirs)
    ours = map_equation(edges, partition, num_nodes=n, **ours)
    assert ours == pytest.approx(expected, abs=1e-9)


def test_self_links_count_as_infomap_counts_them():
    pytest.importorskip("infomap")
    edges = [(0, 0, 2.0), (0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0), (2, 3, 0.5), (3, 4, 1.0),
             (4, 5, 1.0), (5, 3, 1.0), (5, 5, 3.0)]
    partition = [0, 0, 0, 1, 1, 1]
    for ours, theirs in (FLOW_MODELS["undirected"], FLOW_MODELS["directed"]):
        assert map_equation(edges, partition, **ours) == pytest.approx(
            peer_codelength(edges, 6, partition, **theirs), abs=1e-9)


@pytest.mark.parametrize("directed", [False, True])
def test_hierarchical_codelength_equals_the_infomap_package_on_its_own_tree(directed):
    pytest.importorskip("infomap")
    edges, _, _ = planted_hierarchy()
    if directed:  # one direction per link, plus the reverse of every third
        edges = edges + [(v, u) for u, v in edges[::3]]
    n = 160
    length, _, paths = peer_run(edges, n, num_trials=2, seed=1,
                                flow_model="directed" if directed else "undirected")
    assert max(len(p) for p in paths) >= 2  # a real hierarchy
    assert map_equation(edges, paths, directed=directed) == pytest.approx(length, abs=1e-9)


def test_the_posts_formula_two_cliques_example():
    # research notes: one module 2.98777 bits, the two cliques 2.46449 (infomap 2.16 agrees)
    assert map_equation(TWO_CLIQUES, [0] * 8) == pytest.approx(2.987773, abs=1e-6)
    assert map_equation(TWO_CLIQUES, [0] * 4 + [1] * 4) == pytest.approx(2.464485, abs=1e-6)
    both_ways = TWO_CLIQUES + [(v, u) for u, v in TWO_CLIQUES]
    assert map_equation(TWO_CLIQUES, [0] * 4 + [1] * 4) == pytest.approx(
        posts_formula(both_ways, 8, [0] * 4 + [1] * 4, tau=0.0))


def test_recorded_teleportation_is_the_posts_exit_rate():
    # on a graph whose walk is balanced (each node as many in- as out-links, equal
    # weights), enter and exit rates coincide and the post's q_i-only formula applies
    n = 12
    edges = [(a, (a + 1) % n) for a in range(n)] + [(a, (a + 5) % n) for a in range(n)]
    partition = [a // 4 for a in range(n)]
    ours = map_equation(edges, partition, directed=True, recorded_teleportation=True,
                        to_nodes=True)
    assert ours == pytest.approx(posts_formula(edges, n, partition), abs=1e-12)


def test_one_module_costs_the_entropy_of_the_visit_rates():
    g = nx.karate_club_graph()
    flow = network_flow(g)
    assert map_equation(flow, [0] * 34) == pytest.approx(float(-plogp(flow.node).sum()))


def test_invariant_to_module_names_weight_scale_and_node_order():
    edges = random_digraph(30, 0.15, seed=3)
    partition = np.random.default_rng(3).integers(0, 4, 30)
    base = map_equation(edges, partition, directed=True, num_nodes=30)
    renamed = np.array(["abcd"[m] for m in partition])
    assert map_equation(edges, renamed, directed=True, num_nodes=30) == pytest.approx(base)
    scaled = [(u, v, 7.5 * w) for u, v, w in edges]
    assert map_equation(scaled, partition, directed=True, num_nodes=30) == pytest.approx(base)
    perm = np.random.default_rng(4).permutation(30)
    moved = [(perm[u], perm[v], w) for u, v, w in edges]
    moved_partition = np.empty(30, int)
    moved_partition[perm] = partition
    assert map_equation(moved, moved_partition, directed=True, num_nodes=30) == pytest.approx(base)


def test_partition_forms_agree():
    g = nx.karate_club_graph()
    labels = [0 if g.nodes[v]["club"] == "Mr. Hi" else 1 for v in g]
    as_dict = {v: m for v, m in zip(g, labels)}
    as_paths = [(m,) for m in labels]
    base = map_equation(g, labels)
    assert map_equation(g, as_dict) == pytest.approx(base)
    assert map_equation(g, as_paths) == pytest.approx(base)
    assert map_equation(g, np.array(labels)[:, None]) == pytest.approx(base)
    # a hierarchy whose sub-modules are the whole modules codes more (an extra codeword)
    assert map_equation(g, [(m, 0) for m in labels]) > base


@pytest.mark.parametrize("partition, match", [
    ([0, 1], "length 4"),
    ({0: 0, 1: 0}, r"none for 2 node\(s\)"),
    ([(0,), (0, 1), (-1,), (1,)], "top-level module"),
    ([(0, -1, 2), (0,), (1,), (1,)], "-1 only after"),
])
def test_bad_partitions_raise(partition, match):
    with pytest.raises(ValueError, match=match):
        map_equation([(0, 1), (1, 2), (2, 3)], partition)
