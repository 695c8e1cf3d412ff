import numpy as np
import pytest

from kexue.graph import LFR_PARAMETERS, lfr_graph


def test_lfr_graph_plants_communities_of_the_stated_sizes_and_mixing():
    pytest.importorskip("networkx")
    edges, community = lfr_graph(300, mu=0.2, seed=1)
    sizes = np.bincount(community)
    assert len(community) == 300 and community.min() == 0
    assert LFR_PARAMETERS["min_community"] <= sizes.min()
    assert sizes.max() <= LFR_PARAMETERS["max_community"]
    assert (edges[:, 0] != edges[:, 1]).all()

    def mixing(e, c):  # fraction of links between communities
        return (c[e[:, 0]] != c[e[:, 1]]).mean()

    mixed_edges, mixed_community = lfr_graph(300, mu=0.4, seed=1)
    assert mixing(edges, community) < min(0.5, mixing(mixed_edges, mixed_community))
    again, _ = lfr_graph(300, mu=0.2, seed=1)
    np.testing.assert_array_equal(edges, again)  # fixed seed, same graph


def test_bad_mixing_raises():
    with pytest.raises(ValueError, match="mu"):
        lfr_graph(100, mu=1.5)
