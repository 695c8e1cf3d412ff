"""RNN gradient flow: Jacobian norms against autograd through the unrolled sequence, the
post's LSTM split against autograd, its 0.45 bound, and tanh-bounded vs relu-unbounded."""

import math

import pytest
import torch

from kexue.explain import SATURATION_BOUND, lstm_gradient_terms, rnn_gradient_flow, step_jacobians
from kexue.nn import RNN_CELLS, LSTMCell, SimpleRNNCell, make_cell

pytestmark = pytest.mark.usefixtures("one_thread")


def autograd_norms(cell, x):
    """||dh_T/ds_{T-d}||_2 for every d by differentiating the unrolled reference loop."""
    states = cell.unroll(x)
    batch, seq = x.shape[:2]
    out = []
    for d in range(seq + 1):
        def last_hidden(s, d=d):
            return cell.hidden(cell.unroll(x[:, seq - d:], s)[:, -1]) if d else cell.hidden(s)
        jac = torch.autograd.functional.jacobian(last_hidden, states[:, seq - d])
        jac = torch.stack([jac[b, :, b] for b in range(batch)])  # (batch, hidden, S)
        out.append(torch.linalg.matrix_norm(jac, ord=2))
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", list(RNN_CELLS))
def test_norms_match_autograd_through_the_unrolled_cell(name):
    torch.manual_seed(0)
    cell = make_cell(name, 3, 4).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    flow = rnn_gradient_flow(cell, 6, inputs=x)
    assert flow.norms.shape == (2, 7) and flow.step_norms.shape == (2, 6)
    torch.testing.assert_close(flow.norms, autograd_norms(cell, x))
    torch.testing.assert_close(flow.norms[:, 0], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(flow.log10_norms, flow.norms.log10())
    assert (flow.lstm is not None) == (name == "lstm")


def test_step_jacobians_match_autograd_per_row():
    torch.manual_seed(1)
    cell = make_cell("proposed", 3, 4).double()
    projected = cell.project(torch.randn(5, 3, dtype=torch.float64))
    states = torch.randn(5, 8, dtype=torch.float64)
    jac = step_jacobians(cell, projected, states)
    for b in range(5):
        ref = torch.autograd.functional.jacobian(lambda s, b=b: cell.step(projected[b:b + 1], s),
                                                 states[b:b + 1])[0, :, 0]
        torch.testing.assert_close(jac[b], ref)


def test_lstm_split_sums_to_the_posts_total_derivative():
    # With h_{t-1} = o_{t-1} tanh(c_{t-1}) and o_{t-1} held fixed, dc_t/dc_{t-1} by autograd
    # equals diag(f_t) + the three secondary terms.
    torch.manual_seed(2)
    cell = make_cell("lstm", 3, 5).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64) * 2
    states = cell.unroll(x)
    terms = lstm_gradient_terms(cell, x, states)
    assert terms.forget.shape == (2, 3, 5) and terms.via_forget.shape == (2, 3, 5, 5)
    projected = cell.project(x)
    for t in range(2, 5):  # steps t = 2 .. T
        h_prev, c_prev = states[:, t - 1].chunk(2, -1)
        o_prev = cell.gate_values(projected[:, t - 2], states[:, t - 2, :5])[3]
        torch.testing.assert_close(h_prev, o_prev * torch.tanh(c_prev))

        def c_next(c, o_prev=o_prev, t=t):
            return cell.step(projected[:, t - 1], torch.cat([o_prev * torch.tanh(c), c], -1))[:, 5:]

        jac = torch.autograd.functional.jacobian(c_next, c_prev)
        jac = torch.stack([jac[b, :, b] for b in range(2)])
        torch.testing.assert_close(terms.jacobian()[:, t - 2], jac)


def test_the_posts_bound_holds_on_random_inputs():
    c = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    peak = ((1 - torch.tanh(c) ** 2) * c).abs().max()
    assert 0.447 < peak < SATURATION_BOUND  # max 0.4477 at c = 0.772
    torch.manual_seed(3)
    for scale in (0.1, 1.0, 10.0):
        cell = make_cell("lstm", 4, 6).double()
        with torch.no_grad():
            for p in cell.parameters():
                p.mul_(scale)
        x = torch.randn(8, 12, 4, dtype=torch.float64) * scale
        terms = rnn_gradient_flow(cell, 12, inputs=x).lstm
        assert terms.saturation.abs().max() < SATURATION_BOUND
        # the first secondary term is U_f times four factors in (-1, 1), 0.45 among them
        u_f = cell.weight_hh[6:12]
        bound = SATURATION_BOUND * terms.gate_factor * u_f.diagonal().abs()
        assert (terms.via_forget.diagonal(dim1=-2, dim2=-1).abs() <= bound + 1e-12).all()
        assert (terms.gate_factor <= 0.25).all()


def test_one_dimensional_lstm_secondary_terms_are_bounded_by_gates_times_u():
    torch.manual_seed(4)
    cell = make_cell("lstm", 2, 1).double()
    x = torch.randn(16, 30, 2, dtype=torch.float64) * 3
    terms = rnn_gradient_flow(cell, 30, inputs=x).lstm
    u_i, u_f, u_c, _ = cell.weight_hh[:, 0]
    # i(1-i) <= 1/4 and |c^| < 1 ; (1 - c^^2) i <= 1 ; o (1 - tanh^2 c) <= 1
    assert (terms.via_forget.abs() <= SATURATION_BOUND * 0.25 * u_f.abs()).all()
    assert (terms.via_input.abs() <= 0.25 * u_i.abs()).all()
    assert (terms.via_candidate.abs() <= u_c.abs()).all()


def test_tanh_step_jacobian_is_bounded_in_u_relu_is_not():
    # The post's 1-D argument: for a fixed h_{t-1} != 0, (1 - tanh^2(a + U h)) U stays
    # bounded however large U grows; relu's derivative is U itself.
    a, h = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)
    u_grid = torch.logspace(-2, 4, 601, dtype=torch.float64)
    slopes = {}
    for name in ("tanh", "relu"):
        cell = SimpleRNNCell(1, 1, name).double()
        values = []
        for u in u_grid:
            with torch.no_grad():
                cell.weight_hh.fill_(u)
            values.append(step_jacobians(cell, a, h)[0, 0, 0].item())
        slopes[name] = torch.tensor(values, dtype=torch.float64)
    # sup_z |sech^2(z) (z - a)| / |h| with z = a + U h: about 0.45 / 0.5 plus a small shift
    z = torch.linspace(-50, 50, 100_001, dtype=torch.float64)
    bound = ((1 - torch.tanh(z) ** 2) * (z - a[0, 0])).abs().max() / h.abs()[0, 0]
    assert slopes["tanh"].abs().max() <= bound + 1e-9 and bound < 1.5
    assert slopes["tanh"][-1].abs() < 1e-6  # saturated at U = 1e4
    torch.testing.assert_close(slopes["relu"], u_grid)  # unbounded


def test_log10_norms_stay_exact_beyond_float64_range():
    # relu RNN with U = 0.01 I on positive states: ||dh_T/dh_{T-d}|| = 10^(-2d), below
    # float64's smallest number from d = 155 on
    cell = SimpleRNNCell(1, 3, "relu").double()
    with torch.no_grad():
        cell.weight_hh.copy_(0.01 * torch.eye(3, dtype=torch.float64))
        cell.weight_ih.fill_(1.0)
        cell.bias.fill_(1.0)
    x = torch.ones(2, 200, 1, dtype=torch.float64)
    flow = rnn_gradient_flow(cell, 200, inputs=x)
    expected = -2.0 * torch.arange(201, dtype=torch.float64).expand(2, -1)
    torch.testing.assert_close(flow.log10_norms, expected)
    assert flow.norms[0, -1] == 0  # the plain norm underflows; its log10 does not
    with torch.no_grad():
        cell.weight_hh.zero_()  # no recurrence: the product is exactly 0
    flow = rnn_gradient_flow(cell, 5, inputs=x[:, :5])
    assert torch.isneginf(flow.log10_norms[:, 1:]).all() and (flow.norms[:, 1:] == 0).all()


def test_non_finite_states_raise():
    cell = SimpleRNNCell(2, 3, "relu")
    with torch.no_grad():
        cell.weight_hh.fill_(float("nan"))
    with pytest.raises(ValueError, match="states are not finite"):
        rnn_gradient_flow(cell, 4)


def test_string_cells_and_default_inputs():
    g = torch.Generator().manual_seed(0)
    flow = rnn_gradient_flow("gru", 5, batch_size=3, input_size=2, hidden_size=4, generator=g)
    assert flow.norms.shape == (3, 6) and torch.isfinite(flow.norms).all()
    assert math.isclose(flow.norms[0, 0].item(), 1.0, rel_tol=1e-6)


def test_bad_input():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="seq_len must be a positive int"):
            rnn_gradient_flow("tanh", bad)
    with pytest.raises(ValueError, match="cell must be one of"):
        rnn_gradient_flow("elman", 5)
    with pytest.raises(ValueError, match="cell must be a cell name"):
        rnn_gradient_flow(torch.nn.Linear(2, 2), 5)
    with pytest.raises(ValueError, match="inputs must have shape"):
        rnn_gradient_flow("lstm", 5, inputs=torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match="LSTMCell"):
        cell = make_cell("gru", 2, 3)
        lstm_gradient_terms(cell, torch.zeros(1, 3, 2), torch.zeros(1, 4, 3))
    assert isinstance(make_cell("lstm", 2, 3), LSTMCell)
