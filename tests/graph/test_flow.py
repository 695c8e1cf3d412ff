import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from kexue.graph import network_flow

from ._peer import random_digraph


def test_undirected_visit_rates_are_degree_shares_and_links_carry_w_over_2W():
    flow = network_flow([(0, 1, 2.0), (1, 2, 1.0), (2, 2, 3.0)])
    strength = np.array([2.0, 3.0, 1.0 + 3.0])  # a self-link counts once
    np.testing.assert_allclose(flow.node, strength / strength.sum())
    pairs = dict(zip(zip(flow.source.tolist(), flow.target.tolist()), flow.link))
    assert pairs == pytest.approx({(0, 1): 2 / 9, (1, 0): 2 / 9, (1, 2): 1 / 9, (2, 1): 1 / 9})
    assert not flow.directed and not flow.recorded


def test_directed_unrecorded_flow_is_one_step_of_pagerank_along_links():
    edges = random_digraph(25, 0.15, seed=1, dangling=(3,))
    flow = network_flow(edges, directed=True, num_nodes=25)
    assert flow.node.sum() == pytest.approx(1.0)
    # node rate = flow arriving on links (self-links dropped here carry none in this graph)
    np.testing.assert_allclose(np.bincount(flow.target, flow.link, 25), flow.node, atol=1e-15)
    # PageRank stationarity, checked against networkx (teleport to out-weight shares)
    g = nx.DiGraph()
    g.add_nodes_from(range(25))
    g.add_weighted_edges_from(edges)
    out_w = np.array([g.out_degree(i, weight="weight") for i in range(25)])
    personal = dict(enumerate(out_w / out_w.sum()))
    pr = nx.pagerank(g, alpha=0.85, personalization=personal, dangling=personal, tol=1e-14,
                     max_iter=1000)
    p = np.array([pr[i] for i in range(25)])
    transition = nx.to_scipy_sparse_array(g, nodelist=range(25), weight="weight").toarray()
    rows = transition.sum(1, keepdims=True)
    step = p @ np.divide(transition, rows, out=np.zeros_like(transition), where=rows > 0)
    np.testing.assert_allclose(flow.node, step / (1 - p[out_w == 0].sum()), atol=1e-10)


def test_recorded_teleportation_keeps_pagerank_and_teleport_terms():
    edges = random_digraph(20, 0.2, seed=2, dangling=(5,))
    flow = network_flow(edges, directed=True, recorded_teleportation=True, to_nodes=True,
                        num_nodes=20)
    assert flow.recorded
    np.testing.assert_allclose(flow.teleport_in, np.full(20, 1 / 20))
    tau = 0.15
    expected = np.where(np.arange(20) == 5, 1.0, tau) * flow.node  # dangling nodes always jump
    np.testing.assert_allclose(flow.teleport_out, expected)
    # balance: arriving = link flow in + teleports landing
    arriving = np.bincount(flow.target, flow.link, 20) + flow.teleport_out.sum() * flow.teleport_in
    np.testing.assert_allclose(arriving, flow.node, atol=1e-12)


def test_edge_list_matrix_and_networkx_inputs_agree():
    edges = [(0, 1, 1.0), (1, 2, 2.0), (2, 0, 1.5), (2, 3, 0.5)]
    g = nx.Graph()
    g.add_weighted_edges_from(edges)
    u, v, w = zip(*edges)
    matrix = sp.coo_matrix((w, (u, v)), shape=(4, 4))
    symmetric = matrix + matrix.T
    flows = [network_flow(edges), network_flow(g), network_flow(symmetric.tocsr())]
    for f in flows[1:]:
        np.testing.assert_allclose(f.node, flows[0].node)
        assert not f.directed
    assert network_flow(matrix).directed  # a non-symmetric matrix is directed
    assert network_flow(nx.DiGraph(g)).directed


@pytest.mark.parametrize("graph, match", [
    ([(0, 1, -1.0), (1, 2, 1.0)], "non-negative edge weights"),
    ([], "at least one edge"),
    ([(0, 1, 0.0)], "at least one edge"),
    ([(0, 1, float("nan"))], "finite"),
    ([(0, 1.5)], "non-negative integers"),
    ([(0, 1, 1, 1)], r"\(u, v\) or \(u, v, weight\)"),
    (sp.csr_matrix(np.ones((2, 3))), "square"),
    ("abc", "edge list"),
])
def test_bad_graphs_raise(graph, match):
    with pytest.raises(ValueError, match=match):
        network_flow(graph)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="teleportation_probability"):
        network_flow([(0, 1)], teleportation_probability=1.0)
    with pytest.raises(ValueError, match="num_nodes >= 3"):
        network_flow([(0, 2)], num_nodes=2)
