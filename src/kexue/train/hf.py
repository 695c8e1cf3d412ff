"""Hugging Face ``Trainer`` integration: FGM, gradient penalty, VAT and flooding with no
subclass to write.

One line turns a technique on for a ``Trainer`` you already have (any subclass too)::

    from kexue.train import FGM
    from kexue.train.hf import use_step

    trainer = Trainer(model=model, args=args, train_dataset=train)
    use_step(trainer, FGM(model, epsilon=0.5))        # or VAT(model), GradientPenaltyStep(model)
    use_step(trainer, flooding=0.1)                   # flooding alone (kexue.fm/archives/7643)
    trainer.train()

or build it as ``StepTrainer(model=..., args=..., step=FGM(model, 0.5), flooding=None)``;
:class:`StepTrainerMixin` adds the same to another ``Trainer`` subclass.

What the training step then does, per micro-batch: the batch goes through
``Trainer.compute_loss(model, batch, return_outputs=True)`` (so a custom ``compute_loss``,
``compute_loss_func`` and label smoothing apply; :func:`kexue.losses.flooding` is applied to
its mean loss when asked), the step runs (the loss function above, and
``(loss, outputs)`` so that VAT reuses the clean logits), and every backward of the step goes
through ``accelerator.backward(loss / gradient_accumulation_steps)`` outside autocast: fp16
loss scaling, gradient accumulation and DDP are those of the ``Trainer``. Each micro-batch's
loss is its own mean (``num_items_in_batch`` is not passed on), the form in which the extra
losses of VAT and the gradient penalty are defined; with equal micro-batches the update is
that of the whole accumulated batch. Needs ``transformers`` and ``accelerate`` (the ``hf``
extra).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import Tensor, nn
from transformers import Trainer

from kexue.losses import flooding as flood
from kexue.train.step import Step, plain_step

__all__ = ["StepTrainer", "StepTrainerMixin", "use_step"]


def _check(step: Step | None, flooding: float | None) -> None:
    if step is not None and not callable(step):
        raise TypeError(f"step must be a step (FGM(...), VAT(...), ...) or None, got "
                        f"{type(step).__name__}")
    if flooding is not None and (isinstance(flooding, bool) or not isinstance(
            flooding, (int, float)) or not flooding >= 0):
        raise ValueError(f"flooding (the flood level b) must be a number >= 0 or None, got "
                         f"{flooding!r}")


def _accumulation_steps(trainer: Trainer) -> int:
    return int(getattr(trainer, "current_gradient_accumulation_steps", None)
               or trainer.args.gradient_accumulation_steps)


def kexue_training_step(trainer: Trainer, model: nn.Module, inputs: dict[str, Any],
                        num_items_in_batch: Any = None) -> Tensor:
    """``Trainer.training_step`` with the trainer's ``kexue_step`` and ``kexue_flooding``."""
    step = trainer.kexue_step or plain_step
    level = trainer.kexue_flooding
    model.train()
    if hasattr(trainer.optimizer, "train") and callable(trainer.optimizer.train):
        trainer.optimizer.train()
    inputs = trainer._prepare_inputs(inputs)
    scale = 1.0 / _accumulation_steps(trainer)
    device_type = trainer.args.device.type

    def loss_fn(m: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Any]:
        # a copy: compute_loss pops "labels" when it computes the loss itself
        loss, outputs = trainer.compute_loss(m, dict(batch), return_outputs=True)
        if loss.dim() > 0:  # DataParallel over several GPUs
            loss = loss.mean()
        return (flood(loss, level) if level is not None else loss), outputs

    def backward(loss: Tensor) -> None:
        with torch.autocast(device_type, enabled=False):
            trainer.accelerator.backward(loss * scale)

    with trainer.compute_loss_context_manager():
        loss = step(model, inputs, loss_fn, backward=backward)
    return loss.detach() * scale


class StepTrainerMixin:
    """Adds ``step=`` and ``flooding=`` to a ``transformers.Trainer`` subclass::

        class MyTrainer(StepTrainerMixin, SentenceTransformerTrainer): ...
        trainer = MyTrainer(model=model, args=args, step=FGM(model, 0.5))

    Args:
        step: a kexue step (:class:`~kexue.train.FGM`, :class:`~kexue.train.VAT`,
            :class:`~kexue.train.GradientPenaltyStep`, ...) or None for the plain step.
        flooding: flood level ``b`` of :func:`kexue.losses.flooding` on each micro-batch's
            mean loss, or None.
    """

    def __init__(self, *args: Any, step: Step | None = None, flooding: float | None = None,
                 **kwargs: Any) -> None:
        _check(step, flooding)
        super().__init__(*args, **kwargs)
        self.kexue_step, self.kexue_flooding = step, flooding

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> Tensor:
        if self.kexue_step is None and self.kexue_flooding is None:
            return super().training_step(model, inputs, num_items_in_batch)
        return kexue_training_step(self, model, inputs, num_items_in_batch)


class StepTrainer(StepTrainerMixin, Trainer):
    """``transformers.Trainer`` with ``step=`` and ``flooding=`` (see :class:`StepTrainerMixin`)."""


def use_step(trainer: Trainer, step: Step | None = None, *,
             flooding: float | None = None) -> Trainer:
    """Turn a kexue step and/or flooding on for an existing ``trainer`` (no subclass needed).

    Replaces the instance's ``training_step`` (the class is left alone) and returns the
    trainer. ``use_step(trainer)`` with neither argument restores the original step.
    """
    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    _check(step, flooding)
    trainer.kexue_step, trainer.kexue_flooding = step, flooding
    if step is None and flooding is None:
        trainer.__dict__.pop("training_step", None)
    else:
        trainer.training_step = types.MethodType(kexue_training_step, trainer)
    return trainer
