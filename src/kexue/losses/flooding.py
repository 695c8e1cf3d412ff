"""Flooding ``|L - b| + b`` and the author's alternating descent/ascent variant.

Source: 我们真的需要把训练集的损失降低到零吗？ (2020-07-31, https://kexue.fm/archives/7643),
after Ishida et al., "Do We Need Zero Training Loss After Achieving Zero Training
Error?", ICML 2020 (arXiv 2002.08709).

Flooding keeps the training loss near a "flood level" ``b``: above ``b`` it descends,
below it ascends. The author's analysis: one SGD descent step followed by one ascent
step, both with learning rate ``eps``, moves the parameters by
``-(eps^2 / 2) * grad ||grad L||^2`` to second order, i.e. once the loss sits at ``b``
flooding is gradient descent on the parameter-gradient penalty ``||grad_theta L||^2``.

His variant drops ``b`` and always alternates a descent step of size ``eps1`` with an
ascent step of size ``eps2 < eps1``; the pair is, to second order, one descent step of
size ``eps1 - eps2`` on ``L + eps1 * eps2 / (2 * (eps1 - eps2)) * ||grad L||^2``.
:class:`AlternatingFlooding` wraps any optimiser to do that (the analysis is for SGD).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["AlternatingFlooding", "flooding"]


def flooding(loss: Tensor, b: float) -> Tensor:
    """``|loss - b| + b``: equal to ``loss`` above the flood level ``b``, mirrored below it.

    Apply it to the mini-batch mean loss (a scalar), not per example: per-example
    flooding changes the method. ``b = 0`` leaves a non-negative loss unchanged.
    """
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss must be a scalar floating tensor (the batch mean), got {shape}")
    if isinstance(b, Tensor):
        b = b.item()
    if not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
        raise ValueError(f"b (the flood level) must be a finite number >= 0, got {b!r}")
    return (loss - b).abs() + b


class AlternatingFlooding(torch.optim.Optimizer):
    """Alternate descent and ascent steps of an optimiser: the author's flooding variant.

    Odd calls of :meth:`step` are ordinary steps of ``optimizer`` (learning rate
    ``eps1`` = the group's ``lr``); even calls step along ``+grad`` with learning rate
    ``eps2 = ascent_ratio * eps1``. With SGD a pair is, to second order, a descent step
    of size ``eps1 - eps2`` on ``L + eps1 * eps2 / (2 (eps1 - eps2)) * ||grad L||^2``;
    ``ascent_ratio = 1`` gives pure descent on ``(eps^2 / 2) * ||grad L||^2``, flooding's
    behaviour at the flood level. The author found it "slightly better in some cases,
    never really worse, overall worse than adding the gradient penalty directly".

    The wrapper shares ``param_groups`` and ``state`` with ``optimizer``, so learning
    rate schedulers and :func:`kexue.train.loop.fit` can drive it like any optimiser.

    Args:
        optimizer: the optimiser doing the descent steps (SGD for the analysis above).
        ascent_ratio: ``eps2 / eps1`` in ``(0, 1]``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, ascent_ratio: float) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        if (not isinstance(ascent_ratio, (int, float)) or not math.isfinite(ascent_ratio)
                or not 0 < ascent_ratio <= 1):
            raise ValueError(f"ascent_ratio (eps2 / eps1) must be in (0, 1], got {ascent_ratio!r}")
        self.optimizer = optimizer
        self.ascent_ratio = float(ascent_ratio)
        self.ascending = False  # the next step descends
        # The group dicts are shared (Optimizer.__init__ keeps the dicts it is given).
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.state = optimizer.state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One descent step, or one ascent step, alternately (``closure`` is evaluated
        first, with gradients enabled, and its value returned)."""
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        if not self.ascending:
            self.optimizer.step()
        else:
            grads = [p.grad for group in self.param_groups for p in group["params"]
                     if p.grad is not None]
            lrs = [group["lr"] for group in self.param_groups]
            for g in grads:  # step along +grad ...
                g.neg_()
            for group in self.param_groups:  # ... with eps2 = ascent_ratio * eps1
                group["lr"] = group["lr"] * self.ascent_ratio
            try:
                self.optimizer.step()
            finally:
                for g in grads:
                    g.neg_()
                for group, lr in zip(self.param_groups, lrs):
                    group["lr"] = lr
        self.ascending = not self.ascending
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "ascending": self.ascending}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        self.ascending = bool(state_dict["ascending"])

    def __repr__(self) -> str:
        return f"AlternatingFlooding(ascent_ratio={self.ascent_ratio}, {self.optimizer!r})"
