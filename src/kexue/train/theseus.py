"""BERT-of-Theseus: compress a fine-tuned model by replacing its modules at random.

Post: BERT-of-Theseus：基于模块替换的模型压缩方法 (2020-07-17,
https://kexue.fm/archives/7575); paper: Xu et al., "BERT-of-Theseus: Compressing BERT by
Progressive Module Replacing" (2020).

The predecessor's ``L_p`` layers are split into ``L_s`` modules of ``r = L_p / L_s``
consecutive layers, one per successor layer. While training, each module draws
``eps_l ~ Bernoulli(p)`` (one draw per module per forward: the whole batch takes the same
path, as in both official codes) and the hidden state goes through the successor layer
(``eps_l = 1``) or through the predecessor's module (``eps_l = 0``)::

    x^(l+1) = eps_l * F_s^(l+1)(x^(l)) + (1 - eps_l) * F_p^(l+1)(x^(l))

(only the chosen branch is computed). The predecessor is frozen (``requires_grad=False``)
but not detached, so gradients flow *through* its modules into the successor layers below.
Only the task loss is used. Afterwards the successor is taken out and fine-tuned alone
(:attr:`Theseus.successor`); in ``eval()`` mode the model already routes through the
successor only, which is the model one deploys.

The post draws ``p = 0.5`` throughout; the paper's curriculum raises it linearly,
``p_t = min(1, start + slope * t)`` (:class:`LinearReplacement`, README defaults
``start = 0.3``, ``slope = 6e-4`` per optimiser step).

Usage, on :class:`kexue.models.Bert` (``model.encoder.layers``) or transformers'
``BertModel`` (``model.encoder.layer``)::

    theseus = Theseus(model.encoder.layers, successor_layers, replace_prob=0.5)
    model.encoder.layers = theseus                 # the host model now mixes the two
    fit(model, loss_fn, data, config, step=theseus.step)   # step advances the schedule
    model.encoder.layers = theseus.successor       # the compressed model; fine-tune it alone
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kexue.train.step import Backward, LossFn, default_backward, split_loss


@dataclass(frozen=True)
class LinearReplacement:
    """The paper's curriculum ``p_t = min(1, start + slope * t)`` at optimiser step ``t``."""

    start: float = 0.3
    slope: float = 6e-4

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"start must lie in [0, 1], got {self.start}")
        if self.slope < 0:
            raise ValueError(f"slope must be >= 0, got {self.slope}")

    def __call__(self, step: int) -> float:
        return min(1.0, self.start + self.slope * step)


def _hidden(output: Any) -> Any:
    """The hidden states of a layer's output: the output itself, or its first element
    (kexue's blocks return ``(x, cache)``, older transformers layers a tuple)."""
    return output[0] if isinstance(output, tuple) else output


class ReplaceableModule(nn.Module):
    """One predecessor module (``r`` consecutive layers) and the successor layer that may
    replace it. Called like one of the host's layers: ``(x, *args, **kwargs)``, each
    predecessor layer getting the same extra arguments."""

    def __init__(self, predecessor: Sequence[nn.Module], successor: nn.Module,
                 owner: Theseus) -> None:
        super().__init__()
        self.predecessor = nn.ModuleList(predecessor)
        self.successor = successor
        self._owner = [owner]  # a list, so the owner is not registered as a child

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self._owner[0].use_successor(self.training):
            return self.successor(x, *args, **kwargs)
        output = x
        for layer in self.predecessor:
            output = layer(x, *args, **kwargs)
            x = _hidden(output)
        return output


class Theseus(nn.ModuleList):
    """Module replacing between a frozen predecessor and a successor (see the module doc).

    A :class:`~torch.nn.ModuleList` of ``L_s`` :class:`ReplaceableModule` s: put it where
    the host model keeps its list of layers and the host's own loop runs it unchanged.

    Args:
        predecessor_layers: the fine-tuned model's layers, ``L_p`` of them; frozen here.
        successor_layers: the layers to train, ``L_s`` of them, ``L_p % L_s == 0``; each is
            called with the arguments the host gives its layers.
        replace_prob: ``p``, the probability that a module takes the successor layer while
            training: a number in [0, 1] (constant) or a schedule ``step -> p`` such as
            :class:`LinearReplacement`, read at the optimiser step :meth:`step` counts.
    """

    def __init__(self, predecessor_layers: Sequence[nn.Module],
                 successor_layers: Sequence[nn.Module],
                 replace_prob: float | Callable[[int], float] = 0.5) -> None:
        predecessor, successor = list(predecessor_layers), list(successor_layers)
        if not successor or len(predecessor) % len(successor):
            raise ValueError(f"the successor's layer count must divide the predecessor's: "
                             f"expected a divisor of {len(predecessor)}, got {len(successor)}")
        if not callable(replace_prob):
            _check_prob(replace_prob)
        r = len(predecessor) // len(successor)
        super().__init__()
        for layer in predecessor:
            layer.requires_grad_(False)
        self.extend(ReplaceableModule(predecessor[i * r:(i + 1) * r], s, self)
                    for i, s in enumerate(successor))
        self.replace_prob = replace_prob
        self.steps = 0  # optimiser steps taken through :meth:`step`

    def __getitem__(self, idx: int | slice) -> nn.Module:
        """A module, or a plain :class:`~torch.nn.ModuleList` for a slice (what host code
        that slices its layer list, e.g. to freeze the lower ones, expects)."""
        if isinstance(idx, slice):
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    @property
    def successor(self) -> nn.ModuleList:
        """The successor's layers, in order (the compressed model's layer list)."""
        return nn.ModuleList(m.successor for m in self)

    @property
    def predecessor(self) -> nn.ModuleList:
        """The predecessor's layers, in order."""
        return nn.ModuleList(layer for m in self for layer in m.predecessor)

    def current_prob(self) -> float:
        """``p`` at the current step."""
        p = self.replace_prob(self.steps) if callable(self.replace_prob) else self.replace_prob
        return _check_prob(p)

    def use_successor(self, training: bool) -> bool:
        """Draw ``eps ~ Bernoulli(p)`` while training; always the successor in eval mode."""
        if not training:
            return True
        return bool(torch.rand(()) < self.current_prob())

    def step(self, model: nn.Module, batch: Any, loss_fn: LossFn, *,
             backward: Backward | None = None) -> Tensor:
        """A training step (:mod:`kexue.train.step` protocol): forward + backward, then
        advance the schedule. Pass as ``fit(..., step=theseus.step)``.

        When every module took the frozen predecessor (probability ``(1 - p)^L_s``) and
        nothing else in the model trains, the loss has no gradient: the step then fills no
        ``.grad`` and only reports the loss."""
        loss, _ = split_loss(loss_fn(model, batch))
        if loss.requires_grad:
            (backward or default_backward)(loss)
        self.steps += 1
        return loss.detach()


def _check_prob(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"replace_prob must lie in [0, 1], got {p}")
    return float(p)


__all__ = ["LinearReplacement", "ReplaceableModule", "Theseus"]
