"""The step protocol: how one training step computes gradients.

A *loss function* maps ``(model, batch)`` to a scalar loss tensor. A *step* takes
``(model, batch, loss_fn)``, fills ``.grad`` of the parameters (it calls
``backward`` itself, as many times as it needs) and returns the loss it reports,
detached. The training loop then clips, steps the optimiser and zeroes the
gradients. Techniques that change how gradients are computed (FGM, VAT, gradient
penalties, ...) are steps, so they plug into :func:`kexue.train.loop.fit` or into a
hand-written loop without either being edited::

    loss = step(model, batch, loss_fn)   # instead of loss_fn(...).backward()
    optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], Tensor]


class Step(Protocol):
    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn) -> Tensor: ...


def check_scalar_loss(loss: Tensor) -> Tensor:
    """Raise ``ValueError`` unless ``loss`` is a 0-dim floating tensor."""
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar floating tensor, got {shape}")
    return loss


def plain_step(model: nn.Module, batch: Any, loss_fn: LossFn) -> Tensor:
    """The ordinary step: one forward, one backward."""
    loss = check_scalar_loss(loss_fn(model, batch))
    loss.backward()
    return loss.detach()


__all__ = ["LossFn", "Step", "check_scalar_loss", "plain_step"]
