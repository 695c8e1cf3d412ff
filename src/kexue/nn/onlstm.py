"""ON-LSTM: ordered neurons, cumax master gates, and trees from syntactic distances.

Source: Su Jianlin, ON-LSTM：用有序神经元表达层次结构 (2019-05-28,
https://kexue.fm/archives/6621), on Shen, Tan, Sordoni & Courville, "Ordered Neurons:
Integrating Tree Structures into Recurrent Neural Networks" (ICLR 2019,
arXiv:1810.09536). The LSTM's gates ``f, i, o, c^`` are kept; two master gates give the
level of the history (``d_f``) and of the input (``d_i``), softened::

    f~_t = cumax(W_f~ x_t + U_f~ h_{t-1} + b_f~)          increasing, "history from level d_f up"
    i~_t = rev_cumax(W_i~ x_t + U_i~ h_{t-1} + b_i~)      decreasing, "input up to level d_i"
    w_t  = f~_t * i~_t                                     the overlap
    c_t  = w_t * (f_t * c_{t-1} + i_t * c^_t) + (f~_t - w_t) * c_{t-1} + (i~_t - w_t) * c^_t
    h_t  = o_t * tanh(c_t)

with ``cumax(x) = cumsum(softmax(x))`` and ``rev_cumax`` the cumulative sum from the right
(the post's choice; the paper and its code use ``1 - cumax(x)``, which is the same vector
shifted by one level and never lets the input reach the top level: ``master_input="paper"``).
Below ``min(d_f, d_i)`` the input is copied, above ``max`` the history, in between the
plain LSTM update; if ``d_f > d_i`` the gap is zeroed. The master gates have one entry per
*chunk* of ``chunk_size`` neurons (``hidden = n_chunks * chunk_size``), repeated over it.

Unsupervised parsing: the syntactic distance of step ``t`` is ``d_t = 1 - mean_k f~_t(k)``
(the post's soft ``d_f = n d_t + 1``, an affine map of it): a large ``d_t`` means little
history is kept, i.e. a new constituent starts at ``x_t``. :func:`distance_to_tree` splits
greedily top-down at the largest distance: ``[x_<k, [x_k, x_>k]]``, recursively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ONLSTM", "ONLSTMOutput", "cumax", "distance_to_tree"]


def cumax(x: Tensor, dim: int = -1, *, reverse: bool = False) -> Tensor:
    """``cumsum(softmax(x))`` along ``dim``: monotone increasing from ``softmax(x)[0]`` to 1.

    ``reverse=True`` sums from the right instead (decreasing from 1): the post's master
    input gate. Either way the values lie in [0, 1].
    """
    p = torch.softmax(x, dim)
    if reverse:
        return p.flip(dim).cumsum(dim).flip(dim)
    return p.cumsum(dim)


class ONLSTMOutput(NamedTuple):
    output: Tensor  # (batch, seq, hidden): h_t
    state: tuple[Tensor, Tensor]  # (h_T, c_T), each (batch, hidden)
    distance: Tensor  # (batch, seq): 1 - mean(f~_t), the syntactic distance
    input_distance: Tensor  # (batch, seq): mean(i~_t), the master input gate's level


class ONLSTM(nn.Module):
    """One ON-LSTM layer (batch first).

    Args:
        input_size, hidden_size: sizes of ``x_t`` and ``h_t``.
        chunk_size: neurons per master-gate level; must divide ``hidden_size``
            (``hidden_size // chunk_size`` levels).
        dropconnect: DropConnect rate on the recurrent weights ``U`` (one mask per
            forward call, i.e. per sequence batch, as in AWD-LSTM; inverted scaling, so
            nothing changes at evaluation).
        master_input: ``"post"`` (``i~ = rev_cumax``, default) or ``"paper"``
            (``i~ = 1 - cumax``).

    The gate rows of ``weight_ih`` / ``weight_hh`` / ``bias`` are ``[f~ (levels), i~
    (levels), i, f, c^, o (hidden each)]``: the standard gates in ``torch.nn.LSTM``'s order.
    ``forward(inputs (batch, seq, input_size), state=None)`` returns an
    :class:`ONLSTMOutput`.
    """

    def __init__(self, input_size: int, hidden_size: int, chunk_size: int, *,
                 dropconnect: float = 0.0, master_input: str = "post"):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if hidden_size % chunk_size:
            raise ValueError(f"chunk_size must divide hidden_size, got chunk_size={chunk_size} "
                             f"and hidden_size={hidden_size}")
        if not 0.0 <= dropconnect < 1.0:
            raise ValueError(f"dropconnect must be in [0, 1), got {dropconnect!r}")
        if master_input not in ("post", "paper"):
            raise ValueError(f"master_input must be 'post' or 'paper', got {master_input!r}")
        self.input_size, self.hidden_size, self.chunk_size = input_size, hidden_size, chunk_size
        self.n_chunks = hidden_size // chunk_size
        self.dropconnect, self.master_input = dropconnect, master_input
        rows = 2 * self.n_chunks + 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = self.hidden_size**-0.5  # torch.nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        zeros = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def master_gates(self, pre_forget: Tensor, pre_input: Tensor) -> tuple[Tensor, Tensor]:
        """``(f~, i~)``, each (batch, levels), from their pre-activations."""
        if self.master_input == "post":
            return cumax(pre_forget), cumax(pre_input, reverse=True)
        return cumax(pre_forget), 1.0 - cumax(pre_input)

    def step(self, projected: Tensor, state: tuple[Tensor, Tensor],
             weight_hh: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One step: ``projected`` = ``W x_t + b`` (batch, rows) -> ``(h, c, f~, i~)``."""
        h, c = state
        levels, n = self.n_chunks, self.hidden_size
        pre = torch.addmm(projected, h, weight_hh.T)  # (batch, rows)
        master_f, master_i = self.master_gates(pre[:, :levels], pre[:, levels: 2 * levels])
        i, f, candidate, o = pre[:, 2 * levels:].view(-1, 4, levels, self.chunk_size).unbind(1)
        overlap = (master_f * master_i)[..., None]  # (batch, levels, 1)
        forget = torch.sigmoid(f) * overlap + (master_f[..., None] - overlap)
        write = torch.sigmoid(i) * overlap + (master_i[..., None] - overlap)
        c = forget * c.view(-1, levels, self.chunk_size) + write * torch.tanh(candidate)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h.reshape(-1, n), c.reshape(-1, n), master_f, master_i

    def forward(self, inputs: Tensor, state: tuple[Tensor, Tensor] | None = None) -> ONLSTMOutput:
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size:
            raise ValueError(f"inputs must have shape (batch, seq, {self.input_size}), "
                             f"got {tuple(inputs.shape)}")
        if state is None:
            state = self.initial_state(inputs.shape[0])
        weight_hh = F.dropout(self.weight_hh, self.dropconnect, self.training)  # DropConnect
        outputs, master_fs, master_is = [], [], []
        for projected in F.linear(inputs, self.weight_ih, self.bias).unbind(1):
            h, c, master_f, master_i = self.step(projected, state, weight_hh)
            state = (h, c)
            outputs.append(h)
            master_fs.append(master_f)
            master_is.append(master_i)
        return ONLSTMOutput(torch.stack(outputs, 1), state,
                            1.0 - torch.stack(master_fs, 1).mean(-1),
                            torch.stack(master_is, 1).mean(-1))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, chunk_size={self.chunk_size}, "
                f"dropconnect={self.dropconnect}, master_input={self.master_input!r}")


def distance_to_tree(distances: Sequence[float] | Tensor, leaves: Sequence[Any] | None = None) -> Any:
    """A binary tree from syntactic distances, split greedily top-down.

    At the largest distance ``k`` (the first one on ties) the span becomes
    ``[tree(x_<k), [x_k, tree(x_>k)]]`` (an empty side is dropped), recursively, as in the
    post and the paper's code. ``leaves`` (default ``0 .. n-1``) label the positions; a
    subtree is a nested list, a single leaf is the leaf itself.
    """
    distances = [float(d) for d in distances]
    leaves = list(range(len(distances))) if leaves is None else list(leaves)
    if not distances:
        raise ValueError("distances must not be empty")
    if not all(math.isfinite(d) for d in distances):
        raise ValueError(f"distances must be finite, got {distances}")
    if len(leaves) != len(distances):
        raise ValueError(f"leaves must match distances in length, got {len(leaves)} leaves "
                         f"and {len(distances)} distances")

    def build(lo: int, hi: int) -> Any:  # the tree of positions lo .. hi - 1
        if hi - lo == 1:
            return leaves[lo]
        k = max(range(lo, hi), key=lambda t: (distances[t], -t))  # first maximum
        right = leaves[k] if k + 1 == hi else [leaves[k], build(k + 1, hi)]
        return right if k == lo else [build(lo, k), right]

    return build(0, len(distances))
