import numpy as np
import pytest

from kexue.graph import knn_graph


def test_each_row_links_to_its_k_most_similar_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    graph = knn_graph(x, 4, batch_size=7).toarray()  # batches must not matter
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    for i in range(30):
        top = np.argsort(-sim[i])[:4]
        expected = {j for j in top if sim[i, j] > 0}
        assert set(np.flatnonzero(graph[i])) == expected
        np.testing.assert_allclose(graph[i, sorted(expected)], sim[i, sorted(expected)])
    assert np.diag(graph).sum() == 0


def test_min_similarity_drops_weak_links():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    graph = knn_graph(x, 2, min_similarity=0.5).toarray()
    assert set(zip(*np.nonzero(graph))) == {(0, 1), (1, 0), (2, 3), (3, 2)}


@pytest.mark.parametrize("x, k, match", [
    (np.ones((1, 3)), 1, "n >= 2"),
    (np.ones((4, 3)), 4, "1 <= k < n"),
    (np.zeros((4, 3)), 1, "non-zero"),
])
def test_bad_input_raises(x, k, match):
    with pytest.raises(ValueError, match=match):
        knn_graph(x, k)
