"""Gradient flow through a recurrent cell: how ``h_T`` reacts to the state ``d`` steps back.

Source: Su Jianlin, 也来谈谈RNN的梯度消失/爆炸问题 (2020-11-13,
https://kexue.fm/archives/7888). Since ``dh_t/dtheta = (dh_t/dh_{t-1}) dh_{t-1}/dtheta +
dh_t/dtheta``, the contribution of step ``t`` to the gradient at step ``T`` is multiplied
by the product of one-step Jacobians ``ds_T/ds_{T-1} ... ds_{t+1}/ds_t``: it vanishes when
they stay below 1 in norm and explodes when they stay above. :func:`rnn_gradient_flow`
measures that product for every distance ``d = T - t``::

    norms[:, d] = || dh_T / ds_{T-d} ||_2        (spectral norm, d = 0 .. T)

with ``s = h`` (simple RNN, GRU) or ``s = [h, c]`` (LSTM, proposed cell), and, for the
LSTM, the post's split of the cell-state Jacobian (with ``h_{t-1} = o_{t-1} tanh(c_{t-1})``
and ``o_{t-1}`` held fixed, the post's assumption)::

    dc_t/dc_{t-1} = f_t                                       (main term, a gate in (0, 1))
                  + c_{t-1} df_t/dc_{t-1}  = f(1-f) o_{t-1} (1 - tanh^2 c_{t-1}) c_{t-1} U_f
                  + c^_t   di_t/dc_{t-1}  = i(1-i) o_{t-1} (1 - tanh^2 c_{t-1}) c^_t U_i
                  + i_t    dc^_t/dc_{t-1} = (1 - c^^2) o_{t-1} (1 - tanh^2 c_{t-1}) i_t U_c

(1-D; in ``d`` dimensions each secondary term is ``diag(row factor) U diag(o_{t-1}
(1 - tanh^2 c_{t-1}))``). Since ``|(1 - tanh^2 c) c| < 0.45`` for every ``c`` (maximum
0.4477 at ``c = 0.772``), the first secondary term is ``U_f`` times four factors in
``(-1, 1)``: the forget gate dominates unless ``U`` is large.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from kexue.nn.recurrent import LSTMCell, RecurrentCell, make_cell

__all__ = [
    "SATURATION_BOUND",
    "GradientFlow",
    "LSTMGradientTerms",
    "lstm_gradient_terms",
    "rnn_gradient_flow",
    "step_jacobians",
]

SATURATION_BOUND = 0.45  # the post's bound on |(1 - tanh^2 c) c|; the maximum is 0.4477


class LSTMGradientTerms(NamedTuple):
    """The post's split of ``dc_t/dc_{t-1}`` for steps ``t = 2 .. T`` (step 1 has no
    ``o_0``). Shapes: ``(batch, T - 1, hidden)`` for vectors, ``(..., hidden, hidden)``
    for the secondary matrices (row = component of ``c_t``, column = of ``c_{t-1}``)."""

    forget: Tensor  # f_t, the main (diagonal) term
    via_forget: Tensor  # c_{t-1} df_t/dc_{t-1}
    via_input: Tensor  # c^_t di_t/dc_{t-1}
    via_candidate: Tensor  # i_t dc^_t/dc_{t-1}
    saturation: Tensor  # (1 - tanh^2 c_{t-1}) c_{t-1}, |.| < SATURATION_BOUND
    gate_factor: Tensor  # f_t (1 - f_t) o_{t-1}: the gates in the first term's diagonal

    def secondary(self) -> Tensor:
        """The three secondary terms summed: ``(batch, T - 1, hidden, hidden)``."""
        return self.via_forget + self.via_input + self.via_candidate

    def jacobian(self) -> Tensor:
        """``dc_t/dc_{t-1} = diag(f_t) + secondary``: ``(batch, T - 1, hidden, hidden)``."""
        return torch.diag_embed(self.forget) + self.secondary()


class GradientFlow(NamedTuple):
    """What :func:`rnn_gradient_flow` measured."""

    norms: Tensor  # (batch, T + 1): ||dh_T/ds_{T-d}||_2 at distance d = 0 .. T
    log10_norms: Tensor  # (batch, T + 1): log10 of norms, exact where norms over/underflow
    step_norms: Tensor  # (batch, T): ||ds_t/ds_{t-1}||_2 for t = 1 .. T
    lstm: LSTMGradientTerms | None  # the split of dc_t/dc_{t-1}, LSTM only


def step_jacobians(cell: RecurrentCell, projected: Tensor, states: Tensor) -> Tensor:
    """One-step Jacobians ``ds'/ds`` of ``s' = cell.step(projected, s)`` for a batch of
    independent rows: ``projected`` (n, gates * hidden), ``states`` (n, state_size) ->
    ``(n, state_size, state_size)`` (row = component of ``s'``, column = of ``s``).

    Reverse mode, one backward pass per state component; since rows are independent, the
    gradient of a component summed over rows is that component's Jacobian row for every
    row at once. (On CPU this is several times faster than ``vmap`` over the components.)
    """
    with torch.enable_grad():
        s = states.detach().requires_grad_(True)
        out = cell.step(projected.detach(), s)  # (n, state_size)
        rows = [torch.autograd.grad(out[:, k].sum(), s, retain_graph=True)[0]
                for k in range(out.shape[-1])]
    return torch.stack(rows, 1)


def lstm_gradient_terms(cell: LSTMCell, inputs: Tensor, states: Tensor) -> LSTMGradientTerms:
    """The post's split of ``dc_t/dc_{t-1}`` along a sequence.

    ``inputs`` (batch, T, input_size); ``states`` (batch, T + 1, 2 hidden) from
    ``cell.unroll(inputs)``. Terms for ``t = 2 .. T``, where ``h_{t-1} = o_{t-1}
    tanh(c_{t-1})`` holds (the initial state is arbitrary).
    """
    if not isinstance(cell, LSTMCell):
        raise ValueError(f"cell must be an LSTMCell, got {type(cell).__name__}")  # noqa: TRY004
    n = cell.hidden_size
    projected = cell.project(inputs)  # (batch, T, 4 hidden)
    h, c = states[:, :-1].chunk(2, -1)  # state before each step, (batch, T, hidden)
    i, f, candidate, o = cell.gate_values(projected, h)
    o_prev, c_prev = o[:, :-1], c[:, 1:]  # o_{t-1}, c_{t-1} for t = 2 .. T
    i, f, candidate = i[:, 1:], f[:, 1:], candidate[:, 1:]
    saturation = (1 - torch.tanh(c_prev) ** 2) * c_prev
    column = o_prev * (1 - torch.tanh(c_prev) ** 2)  # dh_{t-1}/dc_{t-1}, diagonal
    u_i, u_f, u_c, _ = cell.weight_hh.split(n)  # (hidden, hidden) each

    def term(row: Tensor, u: Tensor) -> Tensor:  # diag(row) U diag(column)
        return row[..., :, None] * u * column[..., None, :]

    return LSTMGradientTerms(
        forget=f,
        via_forget=term(c_prev * f * (1 - f), u_f),
        via_input=term(candidate * i * (1 - i), u_i),
        via_candidate=term(i * (1 - candidate ** 2), u_c),
        saturation=saturation,
        gate_factor=f * (1 - f) * o_prev,
    )


def rnn_gradient_flow(
    cell: str | RecurrentCell,
    seq_len: int,
    *,
    inputs: Tensor | None = None,
    state: Tensor | None = None,
    batch_size: int = 16,
    input_size: int = 8,
    hidden_size: int = 32,
    generator: torch.Generator | None = None,
) -> GradientFlow:
    """Per-distance Jacobian norms ``||dh_T/ds_{T-d}||`` of a recurrent cell.

    Args:
        cell: a :class:`kexue.nn.RecurrentCell` (e.g. a trained one) or a name from
            :data:`kexue.nn.RNN_CELLS` (``"tanh"``, ``"relu"``, ``"lstm"``, ``"gru"``,
            ``"proposed"``) for a freshly initialised cell of ``input_size`` ->
            ``hidden_size`` (weights from torch's global generator).
        seq_len: ``T``, the number of steps.
        inputs: (batch, T, input_size); default standard normal (``batch_size`` rows,
            drawn with ``generator``).
        state: the initial state (batch, state_size); default zeros.

    Returns:
        :class:`GradientFlow`: ``norms`` (batch, T + 1) indexed by distance and their
        ``log10_norms``, ``step_norms`` (batch, T), and for an LSTM the split of
        ``dc_t/dc_{t-1}`` (:func:`lstm_gradient_terms`). The products of Jacobians are
        accumulated in float64 and rescaled as they grow or shrink, so ``log10_norms`` is
        exact over any number of steps (``norms`` itself saturates at 0 or inf beyond
        float64's range). Non-finite states raise ``ValueError``.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    if isinstance(cell, str):
        cell = make_cell(cell, input_size, hidden_size)
    elif not isinstance(cell, RecurrentCell):
        raise ValueError(  # noqa: TRY004
            f"cell must be a cell name or a kexue.nn.RecurrentCell, got {type(cell).__name__}")
    if inputs is None:
        p = cell.weight_hh
        inputs = torch.randn(batch_size, seq_len, cell.input_size, generator=generator,
                             device=p.device).to(p.dtype)
    elif inputs.dim() != 3 or inputs.shape[1] != seq_len:
        raise ValueError(f"inputs must have shape (batch, seq_len={seq_len}, "
                         f"{cell.input_size}), got {tuple(inputs.shape)}")
    with torch.no_grad():
        states = cell.unroll(inputs, state)  # (batch, T + 1, S)
        if not torch.isfinite(states).all():
            raise ValueError("the cell's states are not finite (NaN or inf in the weights, the "
                             "inputs, or a forward pass that overflows); nothing to measure")
        batch = inputs.shape[0]
        projected = cell.project(inputs).flatten(0, 1)  # (batch * T, gates * hidden)
        jac = step_jacobians(cell, projected, states[:, :-1].flatten(0, 1))
        jac = jac.unflatten(0, (batch, seq_len)).double()  # (batch, T, S, S): ds_t/ds_{t-1}
        log10_norms = _product_log10_norms(jac, cell.hidden_size)
        step_norms = torch.linalg.matrix_norm(jac, ord=2)  # (batch, T)
        terms = (lstm_gradient_terms(cell, inputs, states)
                 if isinstance(cell, LSTMCell) and seq_len > 1 else None)
    return GradientFlow(10.0**log10_norms, log10_norms, step_norms, terms)


def _product_log10_norms(jac: Tensor, hidden: int) -> Tensor:
    """``log10 ||[I 0] J_T ... J_{T-d+1}||_2`` for d = 0..T from ``jac`` (batch, T, S, S).

    The running product is rescaled to unit Frobenius norm after every factor and the
    scales are summed as logarithms, so hundreds of factors above or below 1 neither
    overflow nor lose the result to underflow (a product that is exactly 0 gives -inf).
    """
    batch, seq_len, size, _ = jac.shape
    product = torch.eye(hidden, size, dtype=jac.dtype, device=jac.device).expand(batch, -1, -1)
    log_scale = torch.zeros(batch, dtype=jac.dtype, device=jac.device)
    out = [torch.zeros_like(log_scale)]  # d = 0: ||[I 0]|| = 1
    for t in range(seq_len - 1, -1, -1):  # dh_T/ds_{T-d} = [I 0] J_T J_{T-1} ... J_{T-d+1}
        product = product @ jac[:, t]
        scale = torch.linalg.matrix_norm(product)  # Frobenius, (batch,)
        product = product / scale.clamp_min(torch.finfo(jac.dtype).tiny)[:, None, None]
        log_scale = log_scale + scale.log10()
        out.append(log_scale + torch.linalg.matrix_norm(product, ord=2).log10())
    return torch.stack(out, 1)
