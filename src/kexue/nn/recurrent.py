"""Recurrent cells in the forms analysed by 也来谈谈RNN的梯度消失/爆炸问题.

Source: Su Jianlin, 也来谈谈RNN的梯度消失/爆炸问题 (2020-11-13,
https://kexue.fm/archives/7888). Five cells, all with the post's equations::

    simple RNN   h_t = tanh(W x_t + U h_{t-1} + b)          (or relu)
    LSTM         f, i, o = sigmoid(.), c^_t = tanh(.), c_t = f*c_{t-1} + i*c^_t, h_t = o*tanh(c_t)
    GRU (post)   z, r = sigmoid(.), h^_t = tanh(W_h x_t + U_h (r*h_{t-1}) + b_h),
                 h_t = (1 - z)*h_{t-1} + z*h^_t
    proposed     z, r = sigmoid(.), c^_t = tanh(W_h x_t + U_h h_{t-1} + b_h),
                 c_t = (1 - z)*c_{t-1} + z*c^_t, h_t = r*c_t

where every ``(.)`` is ``W x_t + U h_{t-1} + b`` with its own weights. The post's GRU is
*not* ``torch.nn.GRU``: PyTorch applies the reset gate after the recurrent matmul,
``n_t = tanh(W_n x_t + b_in + r*(U_n h_{t-1} + b_hn))`` ("reset-after", cuDNN's form), and
keeps ``z`` for the old state, ``h_t = (1 - z)*n_t + z*h_{t-1}``; the post resets the state
before the matmul, ``U_h (r*h_{t-1})``, and gives ``z`` to the candidate. The Jacobians
differ, so the post's formula for ``dh_t/dh_{t-1}`` holds for :class:`GRUCell` only.

Every cell keeps its whole recurrent state in one tensor ``(batch, state_size)``: ``h``
for the simple RNN and the GRU, ``[h, c]`` for the LSTM and the proposed cell, so the
one-step Jacobian ``ds_t/ds_{t-1}`` is one matrix (:mod:`kexue.explain.rnn`). The input
part ``W x_t + b`` of all steps is one matmul (:meth:`RecurrentCell.project`); a step
(:meth:`RecurrentCell.step`) adds the recurrent part. Weights and biases start uniform in
``(-1/sqrt(hidden), 1/sqrt(hidden))``, as in ``torch.nn.RNN``/``LSTM``/``GRU``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RNN_CELLS",
    "GRUCell",
    "LSTMCell",
    "ProposedCell",
    "RecurrentCell",
    "SimpleRNNCell",
    "make_cell",
]


class RecurrentCell(nn.Module):
    """Base class: ``project`` the inputs once, then ``step`` through time.

    ``forward(inputs, state=None) -> (outputs, final_state)`` with ``inputs`` (batch, seq,
    input_size), ``outputs`` (batch, seq, hidden_size) and states (batch, state_size) is the
    fast path (weights split and transposed once per sequence, fused ``addmm``); :meth:`step`
    and :meth:`unroll` (every state) are the readable reference path that the analysis
    differentiates, and the tests hold the two equal. Subclasses set ``gates`` (blocks of
    ``hidden_size`` rows in the weights) and ``num_states`` (1: ``s = h``; 2: ``s = [h, c]``)
    and implement :meth:`step` and :meth:`_scan`.
    """

    gates: int = 1
    num_states: int = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(self.gates * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def state_size(self) -> int:
        return self.num_states * self.hidden_size

    def initial_state(self, batch_size: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | None = None) -> Tensor:
        """Zeros ``(batch_size, state_size)``."""
        p = self.weight_hh
        return torch.zeros(batch_size, self.state_size, dtype=dtype or p.dtype,
                           device=device or p.device)

    def hidden(self, state: Tensor) -> Tensor:
        """The output ``h`` of a state ``(..., state_size) -> (..., hidden_size)``."""
        return state[..., : self.hidden_size]

    def project(self, inputs: Tensor) -> Tensor:
        """``W x + b`` for every step: ``(..., input_size) -> (..., gates * hidden_size)``."""
        return F.linear(inputs, self.weight_ih, self.bias)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        """One step: ``projected`` (batch, gates * hidden) = ``W x_t + b``, ``state``
        (batch, state_size) -> the next state (batch, state_size)."""
        raise NotImplementedError

    def _check(self, inputs: Tensor, state: Tensor | None) -> Tensor:
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must have shape (batch, seq, {self.input_size}), "
                             f"got {tuple(inputs.shape)}")
        if state is None:
            return self.initial_state(inputs.shape[0], dtype=inputs.dtype, device=inputs.device)
        if state.shape != (inputs.shape[0], self.state_size):
            raise ValueError(f"state must have shape ({inputs.shape[0]}, {self.state_size}), "
                             f"got {tuple(state.shape)}")
        return state

    def unroll(self, inputs: Tensor, state: Tensor | None = None) -> Tensor:
        """Every state: ``(batch, seq + 1, state_size)``, the initial one first."""
        state = self._check(inputs, state)
        states = [state]
        for projected in self.project(inputs).unbind(1):
            states.append(self.step(projected, states[-1]))
        return torch.stack(states, 1)

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(outputs (batch, seq, hidden), final state (batch, state_size))``."""
        state = self._check(inputs, state)
        return self._scan(self.project(inputs), state)

    def _scan(self, projected: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The fast loop: ``projected`` (batch, seq, gates * hidden) -> (outputs, state)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class SimpleRNNCell(RecurrentCell):
    """``h_t = act(W x_t + U h_{t-1} + b)`` with ``act`` = tanh or relu.

    The post's point: ``dh_t/dh_{t-1} = diag(1 - h_t^2) U`` is bounded in ``U`` for tanh
    (a large ``U`` saturates ``h_t``), but is ``diag(1[h_t > 0]) U`` for relu, unbounded.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        pre = projected + state @ self.weight_hh.T  # (batch, hidden)
        return torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)

    def _scan(self, projected: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        act, u = (torch.tanh if self.nonlinearity == "tanh" else torch.relu), self.weight_hh.T
        outputs = []
        for p in projected.unbind(1):
            h = act(torch.addmm(p, h, u))
            outputs.append(h)
        return torch.stack(outputs, 1), h

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"


class LSTMCell(RecurrentCell):
    """The post's LSTM, state ``[h, c]``; gate rows in ``torch.nn.LSTM``'s order
    (input ``i``, forget ``f``, candidate ``c^``, output ``o``).

    ``forward`` runs ``torch.nn.LSTM``'s fused kernel on these weights (the numbers of
    :meth:`unroll`, several times faster); :meth:`from_torch` copies an ``nn.LSTM``'s.
    """

    gates, num_states = 4, 2

    def gate_values(self, projected: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(i, f, c^, o)``, each (batch, hidden), for ``projected`` = ``W x_t + b``."""
        pre = (projected + h @ self.weight_hh.T).unflatten(-1, (4, self.hidden_size))
        i, f, candidate, o = pre.unbind(-2)
        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(candidate), torch.sigmoid(o)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        h, c = state.chunk(2, -1)
        i, f, candidate, o = self.gate_values(projected, h)
        c = f * c + i * candidate
        return torch.cat([o * torch.tanh(c), c], -1)

    @functools.cached_property
    def _kernel(self) -> nn.LSTM:
        # A weightless template (kept out of the module tree): ``forward`` runs it with this
        # cell's parameters through ``torch.func.functional_call``.
        return nn.LSTM(self.input_size, self.hidden_size, batch_first=True)

    def forward(self, inputs: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        state = self._check(inputs, state)
        h0, c0 = (s[None].contiguous() for s in state.chunk(2, -1))  # (1, batch, hidden)
        weights = {"weight_ih_l0": self.weight_ih, "weight_hh_l0": self.weight_hh,
                   "bias_ih_l0": self.bias, "bias_hh_l0": torch.zeros_like(self.bias)}
        outputs, (h, c) = torch.func.functional_call(self._kernel, weights, (inputs, (h0, c0)))
        return outputs, torch.cat([h[0], c[0]], -1)

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> LSTMCell:
        """A cell with the weights of a one-layer, unidirectional ``torch.nn.LSTM``."""
        if lstm.num_layers != 1 or lstm.bidirectional or lstm.proj_size or not lstm.bias:
            raise ValueError("from_torch expects a one-layer, unidirectional nn.LSTM with "
                             "biases and no projection")
        cell = cls(lstm.input_size, lstm.hidden_size).to(lstm.weight_hh_l0)
        with torch.no_grad():
            cell.weight_ih.copy_(lstm.weight_ih_l0)
            cell.weight_hh.copy_(lstm.weight_hh_l0)
            cell.bias.copy_(lstm.bias_ih_l0 + lstm.bias_hh_l0)
        return cell


class GRUCell(RecurrentCell):
    """The post's GRU (reset before the recurrent matmul; ``z`` weights the candidate),
    state ``h``; gate rows ``(z, r, h^)``. Not ``torch.nn.GRU``: see the module docstring.

    ``dh_t/dh_{t-1} = 1 - z - z(1-z) h U_z + z(1-z) h^ U_z + (1 - h^^2) r (1 + (1-r) h U_r) z U_h``
    (1-D): dominated by ``1 - z``, with secondary terms one gate short of the LSTM's.
    """

    gates = 3

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        n = self.hidden_size
        zr = torch.sigmoid(projected[..., : 2 * n] + state @ self.weight_hh[: 2 * n].T)
        z, r = zr.chunk(2, -1)
        candidate = torch.tanh(projected[..., 2 * n:] + (r * state) @ self.weight_hh[2 * n:].T)
        return torch.lerp(state, candidate, z)  # (1 - z) h + z h^

    def _scan(self, projected: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        n = self.hidden_size
        u_zr, u_h = (u.T for u in self.weight_hh.split([2 * n, n]))
        outputs = []
        for p_zr, p_h in zip(*(p.unbind(1) for p in projected.split([2 * n, n], -1))):
            z, r = torch.sigmoid(torch.addmm(p_zr, h, u_zr)).chunk(2, -1)
            h = torch.lerp(h, torch.tanh(torch.addmm(p_h, r * h, u_h)), z)
            outputs.append(h)
        return torch.stack(outputs, 1), h


class ProposedCell(RecurrentCell):
    """The post's proposed cell: the GRU with its reset gate moved to the output,
    ``c_t = (1 - z) c_{t-1} + z tanh(W x_t + U h_{t-1} + b)``, ``h_t = r * c_t``.

    Like the LSTM, ``dc_t/dc_{t-1}`` is dominated by a gate (``1 - z``) with secondary
    terms that carry several gates; the price is a second state ``c``. State ``[h, c]``,
    gate rows ``(z, r, c^)``.
    """

    gates, num_states = 3, 2

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        n = self.hidden_size
        h, c = state.chunk(2, -1)
        pre = projected + h @ self.weight_hh.T  # (batch, 3 hidden)
        z, r = torch.sigmoid(pre[..., : 2 * n]).chunk(2, -1)
        c = torch.lerp(c, torch.tanh(pre[..., 2 * n:]), z)  # (1 - z) c + z c^
        return torch.cat([r * c, c], -1)

    def _scan(self, projected: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        n, u = self.hidden_size, self.weight_hh.T
        h, c = state.chunk(2, -1)
        outputs = []
        for p in projected.unbind(1):
            pre = torch.addmm(p, h, u)
            z, r = torch.sigmoid(pre[:, : 2 * n]).chunk(2, -1)
            c = torch.lerp(c, torch.tanh(pre[:, 2 * n:]), z)
            h = r * c
            outputs.append(h)
        return torch.stack(outputs, 1), torch.cat([h, c], -1)


RNN_CELLS: dict[str, str] = {
    "tanh": "simple RNN, h = tanh(W x + U h + b)",
    "relu": "simple RNN, h = relu(W x + U h + b)",
    "lstm": "LSTM",
    "gru": "the post's GRU (reset before the recurrent matmul)",
    "proposed": "the post's proposed cell (reset gate moved to the output, h = r * c)",
}


def make_cell(name: str, input_size: int, hidden_size: int) -> RecurrentCell:
    """A fresh cell by name: one of :data:`RNN_CELLS`."""
    if name == "tanh" or name == "relu":
        return SimpleRNNCell(input_size, hidden_size, nonlinearity=name)
    classes = {"lstm": LSTMCell, "gru": GRUCell, "proposed": ProposedCell}
    if name not in classes:
        raise ValueError(f"cell must be one of {list(RNN_CELLS)}, got {name!r}")
    return classes[name](input_size, hidden_size)
