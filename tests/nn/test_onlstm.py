"""ON-LSTM: cumax, the reduction to an LSTM, the post's piecewise update with hard master
gates, DropConnect, syntactic distances and the greedy tree induction."""

import random

import pytest
import torch
from torch import nn

from kexue.nn import ONLSTM, cumax, distance_to_tree

pytestmark = pytest.mark.usefixtures("one_thread")

BIG = 60.0  # a logit margin that makes a softmax one-hot to float64 precision


def test_cumax_is_monotone_and_in_unit_interval():
    torch.manual_seed(0)
    x = torch.randn(50, 16, dtype=torch.float64) * torch.tensor([0.1, 1, 10, 100]).repeat(4)
    up, down = cumax(x), cumax(x, reverse=True)
    for y in (up, down):
        assert (y >= 0).all() and (y <= 1 + 1e-12).all()
    assert (up.diff(dim=-1) >= 0).all() and (down.diff(dim=-1) <= 0).all()
    torch.testing.assert_close(up[:, -1], torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(down[:, 0], torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(up, torch.softmax(x, -1).cumsum(-1))
    # the post's reversed gate is the paper's 1 - cumax shifted by one level
    torch.testing.assert_close(down[:, 1:], 1 - up[:, :-1])
    torch.testing.assert_close(cumax(x.T, dim=0), up.T)


def set_master_logits(layer, forget_level, input_level):
    """Zero the master-gate weights and put a one-hot logit at the given levels."""
    levels = layer.n_chunks
    with torch.no_grad():
        for w in (layer.weight_ih, layer.weight_hh):
            w[: 2 * levels] = 0
        layer.bias[: 2 * levels] = -BIG
        layer.bias[forget_level] = BIG
        layer.bias[levels + input_level] = BIG


def test_all_ones_master_gates_reduce_to_an_lstm():
    torch.manual_seed(1)
    layer = ONLSTM(3, 8, chunk_size=2).double()
    set_master_logits(layer, forget_level=0, input_level=layer.n_chunks - 1)  # f~ = i~ = 1
    ref = nn.LSTM(3, 8, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.weight_ih[8:])
        ref.weight_hh_l0.copy_(layer.weight_hh[8:])
        ref.bias_ih_l0.copy_(layer.bias[8:])
        ref.bias_hh_l0.zero_()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 2, 8, dtype=torch.float64)
    out = layer(x, (h0, c0))
    out_ref, (h_ref, c_ref) = ref(x, (h0[None], c0[None]))
    torch.testing.assert_close(out.output, out_ref)
    torch.testing.assert_close(out.state[0], h_ref[0])
    torch.testing.assert_close(out.state[1], c_ref[0])
    torch.testing.assert_close(out.distance, torch.zeros(2, 7, dtype=torch.float64))


@pytest.mark.parametrize(("d_f", "d_i"), [(1, 3), (2, 2), (3, 1), (0, 0)])
def test_hard_master_gates_give_the_posts_piecewise_update(d_f, d_i):
    # d_f <= d_i: copy the input below d_f, LSTM update on [d_f, d_i], keep the history
    # above d_i; d_f > d_i: input on [0, d_i], zeros in between, history from d_f up.
    torch.manual_seed(2)
    layer = ONLSTM(3, 10, chunk_size=2).double()  # 5 levels of 2 neurons
    set_master_logits(layer, d_f, d_i)
    x = torch.randn(4, 1, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 4, 10, dtype=torch.float64)
    c1 = layer(x, (h0, c0)).state[1].view(4, 5, 2)
    pre = (x[:, 0] @ layer.weight_ih[10:].T + h0 @ layer.weight_hh[10:].T + layer.bias[10:])
    i, f, g, _ = pre.view(4, 4, 5, 2).unbind(1)
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    lstm = f * c0.view(4, 5, 2) + i * g
    expected = torch.zeros(4, 5, 2, dtype=torch.float64)
    for level in range(5):
        if d_f <= d_i and level < d_f or d_f > d_i and level <= d_i:
            expected[:, level] = g[:, level]
        elif d_f <= d_i and level <= d_i:
            expected[:, level] = lstm[:, level]
        elif level >= d_f:
            expected[:, level] = c0.view(4, 5, 2)[:, level]
    torch.testing.assert_close(c1, expected)


def test_distances_are_one_minus_the_mean_master_forget_gate():
    torch.manual_seed(3)
    layer = ONLSTM(4, 12, chunk_size=3, master_input="paper").double()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    out = layer(x)
    assert out.output.shape == (2, 5, 12) and out.distance.shape == (2, 5)
    h, c = layer.initial_state(2)
    for t in range(5):
        pre = x[:, t] @ layer.weight_ih.T + h @ layer.weight_hh.T + layer.bias  # (2, 4 + 48)
        h, c, master_f, master_i = layer.step(pre - h @ layer.weight_hh.T, (h, c), layer.weight_hh)
        torch.testing.assert_close(master_f, cumax(pre[:, :4]))
        torch.testing.assert_close(master_i, 1 - cumax(pre[:, 4:8]))  # the paper's form
        torch.testing.assert_close(out.distance[:, t], 1 - master_f.mean(-1))
        torch.testing.assert_close(out.input_distance[:, t], master_i.mean(-1))
    assert ((out.distance >= 0) & (out.distance <= 1)).all()


def test_dropconnect_masks_recurrent_weights_only_in_training():
    torch.manual_seed(4)
    plain = ONLSTM(3, 8, chunk_size=4).double()
    dropped = ONLSTM(3, 8, chunk_size=4, dropconnect=0.5).double()
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(dropped.eval()(x).output, plain.eval()(x).output)
    dropped.train()
    torch.manual_seed(5)
    a = dropped(x).output
    torch.manual_seed(5)
    torch.testing.assert_close(dropped(x).output, a)  # one mask per call, seeded
    assert (a - plain(x).output).abs().max() > 1e-3
    a.sum().backward()
    assert dropped.weight_hh.grad is not None and torch.isfinite(dropped.weight_hh.grad).all()


def test_onlstm_rejects_bad_input():
    with pytest.raises(ValueError, match="chunk_size must divide hidden_size"):
        ONLSTM(4, 10, chunk_size=3)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        ONLSTM(4, 10, chunk_size=0)
    with pytest.raises(ValueError, match="dropconnect"):
        ONLSTM(4, 10, chunk_size=5, dropconnect=1.0)
    with pytest.raises(ValueError, match="master_input"):
        ONLSTM(4, 10, chunk_size=5, master_input="both")
    with pytest.raises(ValueError, match="inputs must have shape"):
        ONLSTM(4, 10, chunk_size=5)(torch.zeros(2, 3, 5))


def reference_tree(depth, sen):
    """The paper's build_tree (test_phrase_grammar.py), written out independently."""
    if len(depth) == 1:
        return sen[0]
    k = max(range(len(depth)), key=lambda t: (depth[t], -t))
    parse = []
    if k > 0:
        parse.append(reference_tree(depth[:k], sen[:k]))
    right = sen[k] if k + 1 == len(sen) else [sen[k], reference_tree(depth[k + 1:], sen[k + 1:])]
    return right if not parse else parse + [right]


def test_distance_to_tree_on_hand_made_distances():
    words = ["a", "b", "c", "d", "e"]
    assert distance_to_tree([0.1, 0.9, 0.2, 0.5, 0.3], words) == ["a", ["b", ["c", ["d", "e"]]]]
    # largest distance first -> a right-branching tree; increasing -> left-branching
    assert distance_to_tree([4, 3, 2, 1], "wxyz") == ["w", ["x", ["y", "z"]]]
    assert distance_to_tree([1, 2, 3, 4], "wxyz") == [[["w", "x"], "y"], "z"]
    # a split in the middle: [x_<k, [x_k, x_>k]]
    assert distance_to_tree([0.0, 0.2, 0.9, 0.1, 0.3]) == [[0, 1], [2, [3, 4]]]
    assert distance_to_tree(torch.tensor([0.5, 0.5, 0.1])) == [0, [1, 2]]  # ties: the first
    assert distance_to_tree([7.0], ["only"]) == "only"
    rng = random.Random(0)
    for n in range(1, 30):
        depth = [rng.random() for _ in range(n)]
        assert distance_to_tree(depth) == reference_tree(depth, list(range(n)))


def test_distance_to_tree_rejects_bad_input():
    with pytest.raises(ValueError, match="must not be empty"):
        distance_to_tree([])
    with pytest.raises(ValueError, match="leaves must match"):
        distance_to_tree([0.1, 0.2], ["a"])
    with pytest.raises(ValueError, match="finite"):
        distance_to_tree([0.1, float("nan")])
