"""Recurrent cells: the post's equations against direct formulas, the fast path against the
reference loop, the LSTM against torch.nn.LSTM, and the post's 1-D Jacobian formulas."""

import pytest
import torch
from torch import nn

from kexue.nn import (
    RNN_CELLS,
    GRUCell,
    LSTMCell,
    ProposedCell,
    RecurrentCell,
    SimpleRNNCell,
    make_cell,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def cell_and_inputs(name, input_size=3, hidden=5, batch=4, seq=6, seed=0):
    torch.manual_seed(seed)
    cell = make_cell(name, input_size, hidden).double()
    return cell, torch.randn(batch, seq, input_size, dtype=torch.float64)


@pytest.mark.parametrize("name", list(RNN_CELLS))
def test_fast_forward_matches_the_reference_unroll(name):
    cell, x = cell_and_inputs(name)
    state = torch.randn(4, cell.state_size, dtype=torch.float64) * 0.5
    outputs, final = cell(x, state)
    states = cell.unroll(x, state)
    assert states.shape == (4, 7, cell.state_size)
    torch.testing.assert_close(states[:, 0], state)
    torch.testing.assert_close(outputs, cell.hidden(states[:, 1:]))
    torch.testing.assert_close(final, states[:, -1])


@pytest.mark.parametrize("name", list(RNN_CELLS))
def test_fast_forward_gradients_match_the_reference(name):
    cell, x = cell_and_inputs(name)
    cell(x)[0].pow(2).sum().backward()
    fast = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    cell.hidden(cell.unroll(x)[:, 1:]).pow(2).sum().backward()
    for g, p in zip(fast, cell.parameters()):
        torch.testing.assert_close(g, p.grad)


def split(w, n):
    return [w[k * n:(k + 1) * n] for k in range(w.shape[0] // n)]


def test_cells_follow_the_posts_equations():
    sig, tanh = torch.sigmoid, torch.tanh
    n = 5
    for name in ("tanh", "relu"):
        cell, x = cell_and_inputs(name)
        h = torch.randn(4, n, dtype=torch.float64)
        act = tanh if name == "tanh" else torch.relu
        expected = act(x[:, 0] @ cell.weight_ih.T + h @ cell.weight_hh.T + cell.bias)
        torch.testing.assert_close(cell.step(cell.project(x[:, 0]), h), expected)

    cell, x = cell_and_inputs("lstm")
    h, c = torch.randn(2, 4, n, dtype=torch.float64)
    Wi, Wf, Wc, Wo = split(cell.weight_ih, n)
    Ui, Uf, Uc, Uo = split(cell.weight_hh, n)
    bi, bf, bc, bo = split(cell.bias, n)
    xt = x[:, 0]
    f = sig(xt @ Wf.T + h @ Uf.T + bf)
    i = sig(xt @ Wi.T + h @ Ui.T + bi)
    o = sig(xt @ Wo.T + h @ Uo.T + bo)
    c_new = f * c + i * tanh(xt @ Wc.T + h @ Uc.T + bc)
    torch.testing.assert_close(cell.step(cell.project(xt), torch.cat([h, c], -1)),
                               torch.cat([o * tanh(c_new), c_new], -1))

    cell, x = cell_and_inputs("gru")
    Wz, Wr, Wh = split(cell.weight_ih, n)
    Uz, Ur, Uh = split(cell.weight_hh, n)
    bz, br, bh = split(cell.bias, n)
    z = sig(xt @ Wz.T + h @ Uz.T + bz)
    r = sig(xt @ Wr.T + h @ Ur.T + br)
    h_hat = tanh(xt @ Wh.T + (r * h) @ Uh.T + bh)
    torch.testing.assert_close(cell.step(cell.project(xt), h), (1 - z) * h + z * h_hat)

    cell, x = cell_and_inputs("proposed")
    Wz, Wr, Wh = split(cell.weight_ih, n)
    Uz, Ur, Uh = split(cell.weight_hh, n)
    bz, br, bh = split(cell.bias, n)
    z = sig(xt @ Wz.T + h @ Uz.T + bz)
    r = sig(xt @ Wr.T + h @ Ur.T + br)
    c_new = (1 - z) * c + z * tanh(xt @ Wh.T + h @ Uh.T + bh)
    torch.testing.assert_close(cell.step(cell.project(xt), torch.cat([h, c], -1)),
                               torch.cat([r * c_new, c_new], -1))


def test_lstm_matches_torch_lstm_with_the_same_weights():
    torch.manual_seed(1)
    ref = nn.LSTM(3, 6, batch_first=True).double()
    cell = LSTMCell.from_torch(ref)
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 1, 2, 6, dtype=torch.float64)
    out_ref, (h_ref, c_ref) = ref(x, (h0, c0))
    out, final = cell(x, torch.cat([h0[0], c0[0]], -1))
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(final, torch.cat([h_ref[0], c_ref[0]], -1))
    torch.testing.assert_close(cell.unroll(x, torch.cat([h0[0], c0[0]], -1))[:, 1:, :6], out_ref)
    assert not list(cell.children())  # the kernel template is not a submodule
    assert sum(p.numel() for p in cell.parameters()) == 4 * 6 * (3 + 6 + 1)


def test_posts_gru_is_not_torch_gru():
    # torch.nn.GRU resets after the recurrent matmul and gives z to the old state; with the
    # gate weights mapped (z' = 1 - z via negated weights) the two still differ.
    torch.manual_seed(2)
    cell = GRUCell(3, 4).double()
    ref = nn.GRU(3, 4, batch_first=True).double()
    Wz, Wr, Wh = split(cell.weight_ih, 4)
    Uz, Ur, Uh = split(cell.weight_hh, 4)
    bz, br, bh = split(cell.bias, 4)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.cat([Wr, -Wz, Wh]))
        ref.weight_hh_l0.copy_(torch.cat([Ur, -Uz, Uh]))
        ref.bias_ih_l0.copy_(torch.cat([br, -bz, bh]))
        ref.bias_hh_l0.zero_()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    ours, ref_out = cell(x)[0], ref(x)[0]
    torch.testing.assert_close(ours[:, 0], ref_out[:, 0])  # h_0 = 0: r*h = 0 either way
    assert (ours[:, 1:] - ref_out[:, 1:]).abs().max() > 1e-3


def one_step_derivative(cell, x, state):
    """d s'/d s for a hidden-size-1 cell: (batch, S, S) by autograd."""
    jac = torch.autograd.functional.jacobian(lambda s: cell.step(cell.project(x), s), state)
    return torch.stack([jac[b, :, b] for b in range(state.shape[0])])


def test_simple_rnn_one_step_derivative_is_the_posts():
    for name in ("tanh", "relu"):
        cell, x = cell_and_inputs(name, hidden=1)
        h = torch.randn(4, 1, dtype=torch.float64)
        h_new = cell.step(cell.project(x[:, 0]), h)
        slope = 1 - h_new**2 if name == "tanh" else (h_new > 0).double()
        torch.testing.assert_close(one_step_derivative(cell, x[:, 0], h)[:, 0, 0],
                                   (slope * cell.weight_hh)[:, 0])


def test_gru_one_step_derivative_is_the_posts_formula():
    cell, x = cell_and_inputs("gru", hidden=1)
    h = torch.rand(4, 1, dtype=torch.float64) * 2 - 1
    xt = x[:, 0]
    p = cell.project(xt)
    Uz, Ur, Uh = cell.weight_hh[:, 0]
    z = torch.sigmoid(p[:, 0:1] + h * Uz)
    r = torch.sigmoid(p[:, 1:2] + h * Ur)
    h_hat = torch.tanh(p[:, 2:3] + r * h * Uh)
    post = (1 - z - z * (1 - z) * h * Uz + z * (1 - z) * h_hat * Uz
            + (1 - h_hat**2) * r * (1 + (1 - r) * h * Ur) * z * Uh)
    torch.testing.assert_close(one_step_derivative(cell, xt, h)[:, 0, 0], post[:, 0])


def test_make_cell_and_constructors_reject_bad_input():
    with pytest.raises(ValueError, match="cell must be one of"):
        make_cell("elman", 2, 3)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        make_cell("lstm", 2, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        SimpleRNNCell(2, 3, "sigmoid")
    cell = ProposedCell(2, 3)
    with pytest.raises(ValueError, match="inputs must have shape"):
        cell(torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="state must have shape"):
        cell(torch.zeros(4, 5, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one-layer"):
        LSTMCell.from_torch(nn.LSTM(2, 3, num_layers=2))
    assert all(isinstance(make_cell(n, 2, 3), RecurrentCell) for n in RNN_CELLS)
    assert [make_cell(n, 2, 3).state_size for n in RNN_CELLS] == [3, 3, 6, 3, 6]
