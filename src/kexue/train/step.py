"""The step protocol: how one training step computes gradients.

A *loss function* maps ``(model, batch)`` to a scalar loss tensor, or to a pair
``(loss, outputs)`` whose ``outputs`` are what the forward pass produced (logits, a Hugging
Face ``ModelOutput``; the form of ``Trainer.compute_loss(..., return_outputs=True)``). A
*step* takes ``(model, batch, loss_fn)``, fills ``.grad`` of the parameters and returns
the loss it reports, detached. The training loop then clips, steps the optimiser and zeroes
the gradients. Techniques that change how gradients are computed (FGM, VAT, gradient
penalties, ...) are steps, so they plug into :func:`kexue.train.loop.fit`, a hand-written
loop or a Hugging Face ``Trainer`` (:mod:`kexue.train.hf`) without either being edited::

    loss = step(model, batch, loss_fn)   # instead of loss_fn(...).backward()
    optimizer.step(); optimizer.zero_grad()

Version 2 of the protocol adds two things, both optional, so a v1 call still works:

- ``backward=``: the function every gradient-filling backward of the step goes through,
  ``backward(loss)``; default ``loss.backward()``. Pass ``accelerator.backward``, or
  ``lambda loss: scaler.scale(loss / accumulation_steps).backward()``, and loss scaling
  and gradient accumulation apply to all the step's backwards (gradients the step takes
  only with respect to the inputs, for a perturbation direction, do not fill ``.grad``
  and are taken directly).
- the clean forward's outputs: when ``loss_fn`` returns ``(loss, outputs)``, steps that
  need the clean prediction (VAT, noise consistency) take it from ``outputs`` instead of
  running the model once more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], "Tensor | tuple[Tensor, Any]"]
Backward = Callable[[Tensor], Any]


class Step(Protocol):
    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn, *,
                 backward: Backward | None = None) -> Tensor: ...


def default_backward(loss: Tensor) -> None:
    """``loss.backward()``: the backward of a step that was given none."""
    loss.backward()


def check_scalar_loss(loss: Tensor) -> Tensor:
    """Raise ``ValueError`` unless ``loss`` is a 0-dim floating tensor."""
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar floating tensor, got {shape}")
    return loss


def split_loss(value: Tensor | tuple[Tensor, Any]) -> tuple[Tensor, Any]:
    """``(loss, outputs)`` of what a loss function returned; ``outputs`` is None for a bare
    loss. Raises ``ValueError`` unless the loss is a scalar floating tensor."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"loss_fn must return a loss or a pair (loss, outputs), got a "
                             f"tuple of {len(value)}")
        return check_scalar_loss(value[0]), value[1]
    return check_scalar_loss(value), None


def plain_step(model: nn.Module, batch: Any, loss_fn: LossFn, *,
               backward: Backward | None = None) -> Tensor:
    """The ordinary step: one forward, one backward."""
    loss, _ = split_loss(loss_fn(model, batch))
    (backward or default_backward)(loss)
    return loss.detach()


__all__ = ["Backward", "LossFn", "Step", "check_scalar_loss", "default_backward", "plain_step",
           "split_loss"]
