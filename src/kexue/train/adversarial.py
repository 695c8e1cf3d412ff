"""Adversarial training on embeddings (FGM) and its twin, the input-gradient penalty.

Source: 对抗训练浅谈：意义、方法和思考（附Keras实现） (2020-03-01,
https://kexue.fm/archives/7234).

FGM (fast gradient method) perturbs the input ``x`` (for text: the embeddings) along
the gradient of the loss and trains on the perturbed loss::

    g = dL/dx,   delta = epsilon * g / ||g||,   minimise L(x + delta)

To first order ``L(x + delta) = L(x) + epsilon * ||g||``, so FGM is a gradient penalty
``epsilon * ||dL/dx||``; without the normalisation (``delta = epsilon * g``) it is
``L + 0.5 * epsilon * ||dL/dx||^2``, which :func:`gradient_penalty` computes directly
with a double backward.

Two details in which the author's Keras code differs from the common PyTorch "FGM"
recipe, both offered here:

- *what is optimised*: the author optimises ``L(x + delta)`` only
  (``variant="author"``); the common recipe adds the adversarial gradient to the
  clean one, i.e. optimises ``L(x) + L(x + delta)`` (``variant="common"``).
- *where the perturbation lives*: the author perturbs the whole embedding matrix,
  normalised by the global norm of its (dense) gradient (``where="weight"``); the
  common alternative perturbs the embedding outputs, one vector per token
  occurrence, normalised globally or per example (``where="output"``).
  ``where="input"`` perturbs the float input of a module (e.g. an MLP on features).
  The perturbed matrix is swapped in for the forward pass and never written into the
  parameter, so it is restored even when the step raises; unlike the author's in-place
  version, an output layer tied to the embedding (an MLM head) is not perturbed.

Under ``DistributedDataParallel`` the extra passes run in ``model.no_sync()`` and the
final backward all-reduces every gradient once.

All wrappers here are *steps* (:mod:`kexue.train.step`): ``step(model, batch,
loss_fn, backward=...)`` fills ``.grad`` (every parameter backward goes through
``backward``, so loss scaling and gradient accumulation apply) and returns the detached
clean loss, so they plug into :func:`kexue.train.loop.fit`, a Hugging Face ``Trainer``
(:func:`kexue.train.hf.use_step`) or a hand-written loop::

    fgm = FGM(model, epsilon=0.5)           # model.get_input_embeddings() is perturbed
    loss = fgm(model, batch, loss_fn)       # instead of loss_fn(model, batch).backward()
    optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from kexue.train._perturbation import (
    NORMS,
    PerturbationSite,
    backward_capturing,
    check_positive,
    describe,
    no_sync,
    normalize_perturbation,
    site_grads,
)
from kexue.train.step import Backward, LossFn, default_backward, split_loss

__all__ = ["FGM", "GradientPenaltyStep", "gradient_penalty"]

class FGM:
    """Fast-gradient-method adversarial training on embeddings, as a step.

    ``delta = epsilon * g / ||g||`` with ``g = dL/dx`` at the site; the step
    then backpropagates ``L(x + delta)`` (``variant="author"``) or ``L(x) + L(x +
    delta)`` (``variant="common"``). It returns the clean loss ``L(x)``, detached.
    The embedding is restored when the step ends, also when it raises.

    Args:
        embedding: the embedding module, or a model whose ``get_input_embeddings()``
            returns it; with ``where="input"`` the module whose input is perturbed.
        epsilon: the perturbation norm (the author uses 0.5 on BERT token embeddings).
        variant: ``"author"`` (optimise ``L(x + delta)`` only) or ``"common"``.
        where: ``"weight"`` (the embedding matrix, the author's choice), ``"output"``
            or ``"input"`` (see :class:`PerturbationSite`).
        norm: ``"global"`` (one norm over the whole gradient, the author's choice),
            ``"per_example"`` (one per slice along dim 0; not for ``where="weight"``), or
            ``None`` (``delta = epsilon * g``: the ``0.5 * epsilon * ||g||^2`` penalty).

    To first order in epsilon the parameter gradient of the author's variant is
    ``grad_theta (L + epsilon * ||dL/dx||)`` (normalised) or ``grad_theta (L + 0.5 *
    epsilon * ||dL/dx||^2)`` (``norm=None``).
    """

    def __init__(self, embedding: nn.Module, epsilon: float = 0.5, *, variant: str = "author",
                 where: str = "weight", norm: str | None = "global") -> None:
        self.epsilon = check_positive("epsilon", epsilon)
        if variant not in ("author", "common"):
            raise ValueError(f"variant must be 'author' or 'common', got {variant!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if norm == "per_example" and where == "weight":
            raise ValueError("norm='per_example' needs a batch dimension; the embedding matrix "
                             "(where='weight') has none: use where='output'")
        self.site = PerturbationSite(embedding, where)
        self.variant, self.norm = variant, norm

    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn, *,
                 backward: Backward | None = None) -> Tensor:
        backward = backward or default_backward
        with no_sync(model):
            with self.site.capture() as xs:
                loss, _ = split_loss(loss_fn(model, batch))
            if self.variant == "author":
                grads = site_grads(loss, xs)  # gradient at the site only; no parameter grads
            elif self.norm is None:  # delta = epsilon * g needs g unscaled by `backward`
                grads = site_grads(loss, xs, retain_graph=True)
                backward(loss)
            else:  # clean parameter grads + the site gradient (scaled alike, then normalised)
                grads = backward_capturing(loss, xs, backward)
        deltas = [self.epsilon * d for d in normalize_perturbation(grads, self.norm)]
        with self.site.perturb(deltas):
            adversarial_loss, _ = split_loss(loss_fn(model, batch))
            backward(adversarial_loss)
        return loss.detach()

    def __repr__(self) -> str:
        return (f"FGM(epsilon={self.epsilon}, variant={self.variant!r}, "
                f"where={self.site.where!r}, norm={self.norm!r})")


def gradient_penalty(loss: Tensor, inputs: Tensor | Sequence[Tensor],
                     epsilon: float = 1.0) -> Tensor:
    """``loss + 0.5 * epsilon * sum ||d loss / d input||^2``, differentiable (double backward).

    The penalty FGM approximates (kexue.fm/archives/7234); the author's example uses
    ``epsilon = 1`` with the gradient taken per token occurrence of the embedding output.

    The loss must come from a twice-differentiable graph: compute attention under
    ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)`` (the fused kernels have no
    second derivative), as :class:`GradientPenaltyStep` does.

    Args:
        loss: a scalar loss whose graph reaches ``inputs``.
        inputs: the tensor(s) to penalise the gradient at (embedding outputs, a float
            input with ``requires_grad=True``, ...).
        epsilon: the penalty weight (> 0).
    """
    if not isinstance(loss, Tensor) or loss.dim() != 0 or not loss.is_floating_point():
        raise ValueError(f"loss must be a scalar floating tensor, got {describe(loss)}")
    epsilon = check_positive("epsilon", epsilon)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise ValueError("inputs must hold at least one tensor, got none")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"inputs[{i}] must be a tensor with requires_grad=True, got "
                             f"{describe(x)}" + ("" if not isinstance(x, Tensor)
                                                  else " without requires_grad"))
    grads = site_grads(loss, inputs, create_graph=True)
    penalty = sum(g.pow(2).sum() for g in grads)
    return loss + 0.5 * epsilon * penalty


class GradientPenaltyStep:
    """A step that backpropagates :func:`gradient_penalty` at an embedding or input.

    ``loss + 0.5 * epsilon * ||dL/dx||^2`` with ``x`` the embedding output (one gradient
    row per token occurrence, as in the author's code; ``where="output"``), the
    embedding matrix (``where="weight"``) or a module's float input (``where="input"``).
    Returns the clean loss, detached.

    The forward pass runs under ``sdpa_kernel(SDPBackend.MATH)``: the fused CPU/GPU
    attention kernels of ``scaled_dot_product_attention`` have no second derivative,
    the math one has. (Call :func:`gradient_penalty` on a loss computed the same way.)
    """

    def __init__(self, embedding: nn.Module, epsilon: float = 1.0, *,
                 where: str = "output") -> None:
        self.epsilon = check_positive("epsilon", epsilon)
        self.site = PerturbationSite(embedding, where)

    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn, *,
                 backward: Backward | None = None) -> Tensor:
        with self.site.capture() as xs, sdpa_kernel(SDPBackend.MATH):
            loss, _ = split_loss(loss_fn(model, batch))
        (backward or default_backward)(gradient_penalty(loss, xs, self.epsilon))
        return loss.detach()

    def __repr__(self) -> str:
        return f"GradientPenaltyStep(epsilon={self.epsilon}, where={self.site.where!r})"
