import networkx as nx
import numpy as np
import pytest

from kexue.data import load_graph
from kexue.graph import infomap, map_equation, network_flow

from ._peer import TWO_CLIQUES, peer_run, planted_hierarchy, random_digraph


def same_partition(a, b) -> bool:
    """Equal up to module names."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(a)) == len(set(b))


def test_two_cliques_split_at_the_bridge():
    result = infomap(TWO_CLIQUES, seed=0)
    assert same_partition(result.modules, [0] * 4 + [1] * 4)
    assert result.codelength == pytest.approx(2.464485, abs=1e-6)
    assert result.one_level_codelength == pytest.approx(2.987773, abs=1e-6)


def test_reported_codelength_is_the_map_equation_of_the_modules():
    edges = random_digraph(60, 0.08, seed=5)
    result = infomap(edges, directed=True, num_nodes=60, seed=1, trials=2)
    assert result.codelength == pytest.approx(
        map_equation(edges, result.modules, directed=True, num_nodes=60), abs=1e-12)
    assert result.codelength <= result.one_level_codelength


def test_modules_are_numbered_by_decreasing_flow():
    g = load_graph("football")
    result = infomap(g["edges"], seed=0, trials=3)
    module_flow = np.bincount(result.modules, result.flow.node)
    assert (np.diff(module_flow) <= 0).all()
    communities = result.communities()
    assert sorted(v for c in communities for v in c) == list(range(115))
    assert all(result.modules[c[0]] == i for i, c in enumerate(communities))


def test_karate_club_matches_the_infomap_package():
    pytest.importorskip("infomap")
    g = nx.karate_club_graph()
    nx.set_edge_attributes(g, 1.0, "weight")
    edges = list(g.edges())
    length, modules, _ = peer_run(edges, 34, two_level=True, num_trials=10, seed=1)
    result = infomap(g, trials=10, seed=0)
    assert result.codelength == pytest.approx(length, abs=1e-9)  # 4.311793 bits, 3 modules
    assert same_partition(result.modules, modules)


@pytest.mark.parametrize("name", ["football", "polbooks"])
def test_shipped_graphs_match_the_infomap_package(name):
    pytest.importorskip("infomap")
    g = load_graph(name)
    n = len(g["labels"])
    length, modules, _ = peer_run(g["edges"], n, two_level=True, num_trials=10, seed=1)
    result = infomap(g["edges"], num_nodes=n, trials=10, seed=0)
    assert result.codelength == pytest.approx(length, abs=1e-9)
    assert same_partition(result.modules, modules)


def test_directed_search_is_within_half_a_percent_of_the_infomap_package():
    pytest.importorskip("infomap")
    edges, _, _ = planted_hierarchy(seed=2, p=(0.5, 0.05, 0.01))
    edges = edges[::2] + [(v, u) for u, v in edges[1::2]]  # one direction per link
    length, _, _ = peer_run(edges, 160, two_level=True, num_trials=5, seed=1,
                            flow_model="directed")
    ours = infomap(edges, directed=True, trials=5, seed=0).codelength
    assert ours <= length * 1.005


def test_hierarchical_finds_the_planted_levels():
    edges, sup, group = planted_hierarchy()
    flat = infomap(edges, seed=0)
    deep = infomap(edges, seed=0, hierarchical=True)
    assert deep.paths.shape[1] == 2
    assert same_partition(deep.modules, sup)
    bottom = np.unique(deep.paths, axis=0, return_inverse=True)[1].ravel()
    assert same_partition(bottom, group)
    assert deep.codelength < flat.codelength
    assert deep.codelength == pytest.approx(map_equation(edges, deep.paths), abs=1e-12)


def test_recorded_teleportation_search_beats_the_planted_partition():
    edges, _, group = planted_hierarchy(seed=4, groups=2, per_group=3, p=(0.6, 0.02, 0.02))
    edges = edges[::2] + [(v, u) for u, v in edges[1::2]]
    options = {"directed": True, "recorded_teleportation": True, "to_nodes": True}
    result = infomap(edges, seed=0, trials=3, **options)
    assert result.codelength <= map_equation(edges, group, **options) + 1e-9
    assert result.codelength == pytest.approx(map_equation(edges, result.modules, **options))


def test_no_structure_gives_one_module():
    result = infomap(nx.complete_graph(12), seed=0)
    assert result.num_modules == 1
    assert result.codelength == pytest.approx(result.one_level_codelength)


def test_same_seed_same_result_and_flow_reuse():
    edges = random_digraph(50, 0.1, seed=6)
    a = infomap(edges, directed=True, num_nodes=50, seed=3)
    flow = network_flow(edges, directed=True, num_nodes=50)
    b = infomap(flow, seed=3)
    np.testing.assert_array_equal(a.modules, b.modules)
    assert a.codelength == b.codelength


def test_bad_input_raises():
    with pytest.raises(ValueError, match="trials >= 1"):
        infomap(TWO_CLIQUES, trials=0)
    with pytest.raises(ValueError, match="non-negative edge weights"):
        infomap([(0, 1, 1.0), (1, 2, -2.0)])
    with pytest.raises(ValueError, match="at least one edge"):
        infomap(nx.empty_graph(5))
