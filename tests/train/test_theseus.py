import copy

import pytest
import torch

from kexue.models import Bert, BertConfig
from kexue.train import LinearReplacement, Theseus, TrainConfig, fit


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def bert(layers: int, seed: int = 0) -> Bert:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return Bert(config, pooler=False)


def inputs():
    torch.manual_seed(1)
    ids = torch.randint(0, 50, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


def compress(teacher: Bert, successor_layers: int, p) -> tuple[Bert, Theseus]:
    """The teacher with its layers mixed with a fresh successor's (first layers of a
    differently seeded model)."""
    student = bert(successor_layers, seed=3)
    mixed = copy.deepcopy(teacher)
    theseus = Theseus(mixed.encoder.layers, student.encoder.layers, replace_prob=p)
    mixed.encoder.layers = theseus
    return mixed, theseus


def test_p0_is_the_predecessor_and_p1_the_successor_alone():
    teacher, ids_mask = bert(6), inputs()
    expected = teacher(*ids_mask).last_hidden_state
    mixed, theseus = compress(teacher, 3, 0.0)
    mixed.train()
    torch.testing.assert_close(mixed(*ids_mask).last_hidden_state, expected, rtol=0, atol=0)

    student = bert(3, seed=3)
    mixed, theseus = compress(teacher, 3, 1.0)
    mixed.train()
    alone = copy.deepcopy(teacher)
    alone.encoder.layers = student.encoder.layers
    torch.testing.assert_close(mixed(*ids_mask).last_hidden_state,
                               alone(*ids_mask).last_hidden_state, rtol=0, atol=0)
    mixed.eval()  # inference always takes the successor, whatever p is
    theseus.replace_prob = 0.0
    torch.testing.assert_close(mixed(*ids_mask).last_hidden_state,
                               alone(*ids_mask).last_hidden_state, rtol=0, atol=0)
    assert len(theseus.successor) == 3 and len(theseus.predecessor) == 6
    assert list(theseus[1:]) == [theseus[1], theseus[2]] and len(theseus[:0]) == 0


def test_a_mixed_path_equals_the_hand_composed_model():
    """eps = (successor, predecessor, successor): layers s0, p2, p3, s2."""
    teacher, ids_mask = bert(6), inputs()
    mixed, theseus = compress(teacher, 3, 0.5)
    mixed.train()
    draws = iter([True, False, True])
    theseus.use_successor = lambda training: next(draws)
    s, p = theseus.successor, theseus.predecessor
    hand = copy.deepcopy(teacher)
    hand.encoder.layers = torch.nn.ModuleList([s[0], p[2], p[3], s[2]])
    torch.testing.assert_close(mixed(*ids_mask).last_hidden_state,
                               hand(*ids_mask).last_hidden_state, rtol=0, atol=0)


def test_gradients_reach_the_successor_through_the_frozen_predecessor_only():
    teacher, (ids, mask) = bert(6), inputs()
    mixed, theseus = compress(teacher, 3, 0.5)
    mixed.train()
    draws = iter([True, False, False])  # successor layer 0 sits below two predecessor modules
    theseus.use_successor = lambda training: next(draws)
    mixed(ids, mask).last_hidden_state.pow(2).sum().backward()
    assert all(not q.requires_grad and q.grad is None for q in theseus.predecessor.parameters())
    first = theseus.successor[0]
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in first.parameters())
    assert all(q.grad is None for q in theseus.successor[1:].parameters())  # not on the path


def test_draws_are_bernoulli_p_per_module_and_the_linear_schedule_advances():
    teacher = bert(4)
    _, theseus = compress(teacher, 2, 0.3)
    torch.manual_seed(0)
    draws = torch.tensor([theseus.use_successor(True) for _ in range(4000)], dtype=torch.float)
    assert abs(draws.mean().item() - 0.3) < 0.03

    schedule = LinearReplacement(start=0.3, slope=0.1)
    assert [schedule(t) for t in (0, 2, 7, 100)] == pytest.approx([0.3, 0.5, 1.0, 1.0])
    mixed, theseus = compress(teacher, 2, schedule)
    ids, mask = inputs()
    data = [(ids[i], mask[i]) for i in range(3)]
    fit(mixed, lambda m, b: m(b[0], b[1]).last_hidden_state.pow(2).mean(), data,
        TrainConfig(steps=4, batch_size=2, lr=1e-3, progress=False), step=theseus.step)
    assert theseus.steps == 4 and theseus.current_prob() == pytest.approx(0.7)


def test_a_step_through_the_frozen_predecessor_only_fills_no_gradient():
    teacher, (ids, mask) = bert(4), inputs()
    mixed, theseus = compress(teacher, 2, 0.0)
    mixed.embeddings.requires_grad_(False)
    mixed.train()
    loss = theseus.step(mixed, (ids, mask), lambda m, b: m(*b).last_hidden_state.pow(2).mean())
    assert loss.dim() == 0 and theseus.steps == 1
    assert all(q.grad is None for q in mixed.parameters())


def test_works_on_transformers_bert_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4,
                                     num_attention_heads=2, intermediate_size=32,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    teacher = transformers.BertModel(config)
    student = transformers.BertModel(config)
    ids, mask = inputs()
    expected = teacher(ids, attention_mask=mask).last_hidden_state
    theseus = Theseus(teacher.encoder.layer, student.encoder.layer[:2], replace_prob=0.0)
    teacher.encoder.layer = theseus
    teacher.train()
    torch.testing.assert_close(teacher(ids, attention_mask=mask).last_hidden_state, expected)
    teacher.eval()  # successor only: the student's first two layers on the teacher's embeddings
    student.encoder.layer = student.encoder.layer[:2]
    student.embeddings = teacher.embeddings
    torch.testing.assert_close(teacher(ids, attention_mask=mask).last_hidden_state,
                               student(ids, attention_mask=mask).last_hidden_state)


def test_bad_input():
    layers = bert(6).encoder.layers
    with pytest.raises(ValueError, match="divisor of 6, got 4"):
        Theseus(layers, bert(4).encoder.layers)
    with pytest.raises(ValueError, match="divisor of 6, got 0"):
        Theseus(layers, [])
    with pytest.raises(ValueError, match=r"replace_prob must lie in \[0, 1\], got 1.5"):
        Theseus(layers, bert(3).encoder.layers, replace_prob=1.5)
    theseus = Theseus(layers, bert(3).encoder.layers, replace_prob=lambda step: -0.1)
    with pytest.raises(ValueError, match="replace_prob must lie"):
        theseus.use_successor(True)
    with pytest.raises(ValueError, match="start must lie"):
        LinearReplacement(start=2.0)
