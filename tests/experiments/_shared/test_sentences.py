import torch
from torch.utils.data import TensorDataset

from kexue.experiments._shared import sentences


def test_train_caches_the_weights_and_loss(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randn(32, 1))

    def loss(model, batch):
        return ((model(batch[0]) - batch[1]) ** 2).mean()

    path = sentences.cache_file(tmp_path, "toy", steps=5, width=3)
    assert path == sentences.cache_file(tmp_path, "toy", width=3, steps=5) != \
        sentences.cache_file(tmp_path, "toy", steps=6, width=3)
    first = torch.nn.Linear(3, 1)
    got = sentences.train(first, loss, data, steps=5, seed=0, batch_size=8, cache=path)
    second = torch.nn.Linear(3, 1)  # different initial weights, loaded from the cache
    assert sentences.train(second, loss, data, steps=5, seed=0, batch_size=8, cache=path) == got
    torch.testing.assert_close(second.weight, first.weight)


def test_clauses_are_cut_at_punctuation():
    texts = sentences.clauses("valid", 4, 6, limit=50)
    assert texts and all(4 <= len(t) <= 6 for t in texts)
    assert not any(c in t for t in texts for c in "，。！？ ")
