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
loss_fn)`` fills ``.grad`` and returns the detached clean loss, so they plug into
:func:`kexue.train.loop.fit` or a hand-written loop::

    fgm = FGM(model, epsilon=0.5)           # model.get_input_embeddings() is perturbed
    loss = fgm(model, batch, loss_fn)       # instead of loss_fn(model, batch).backward()
    optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from kexue.train.step import LossFn, check_scalar_loss

__all__ = [
    "FGM",
    "GradientPenaltyStep",
    "PerturbationSite",
    "gradient_penalty",
    "no_sync",
    "normalize_perturbation",
]

WHERE = ("weight", "output", "input")
NORMS = ("global", "per_example", None)


def no_sync(model: nn.Module) -> AbstractContextManager:
    """``model.no_sync()`` for a ``DistributedDataParallel`` model, else a no-op.

    The extra passes of a step (FGM's clean pass, VAT's power iteration) run without
    gradient synchronisation; gradients they accumulate are all-reduced once, by the
    final backward of the step.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return nullcontext()


def _check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class PerturbationSite:
    """The place where a perturbation is added: an embedding matrix, a module's output,
    or a module's (first positional) input.

    Args:
        target: an ``nn.Module``. For ``where="weight"`` / ``"output"`` a model with
            ``get_input_embeddings()`` (any Hugging Face model) is resolved to its input
            embedding module; otherwise the module itself is used.
        where: ``"weight"`` perturbs ``module.weight`` (the embedding matrix; the
            perturbation is swapped in for the forward pass, never written into the
            parameter), ``"output"`` the module's output tensor (via a forward hook),
            ``"input"`` its first positional input (via a forward pre-hook).

    Two context managers do the work: inside :meth:`capture` a forward pass records the
    tensors at the site (so that gradients with respect to them can be taken); inside
    :meth:`perturb` a forward pass sees them shifted by the given deltas. A module called
    several times per forward pass has one tensor (and one delta) per call.
    """

    def __init__(self, target: nn.Module, where: str = "weight") -> None:
        if where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}, got {where!r}")
        if not isinstance(target, nn.Module):
            raise TypeError(f"expected an nn.Module (or a model with get_input_embeddings()), "
                             f"got {type(target).__name__}")
        module = target
        get_embeddings = getattr(target, "get_input_embeddings", None)
        if where != "input" and callable(get_embeddings):
            module = get_embeddings()
            if not isinstance(module, nn.Module):
                raise ValueError("get_input_embeddings() must return an nn.Module, got "
                                 f"{type(module).__name__}")
        if where == "weight":
            weight = module._parameters.get("weight")
            if not isinstance(weight, nn.Parameter):
                raise ValueError(
                    f"embedding: where='weight' needs a module with a `weight` nn.Parameter, got "
                    f"{type(module).__name__} whose weight is {type(weight).__name__}")
            if not weight.requires_grad:
                raise ValueError("embedding: the weight has requires_grad=False, so it has no "
                                 "gradient to follow; unfreeze it or use where='output'")
        self.module = module
        self.where = where

    @contextmanager
    def capture(self) -> Iterator[list[Tensor]]:
        """Record the site tensors of the forward passes run inside the block."""
        tensors: list[Tensor] = []
        if self.where == "weight":
            tensors.append(self.module.weight)
            yield tensors
            return

        def make_differentiable(x: Any) -> Tensor:
            if not isinstance(x, Tensor) or not x.is_floating_point():
                raise ValueError(f"the perturbed {self.where} of {type(self.module).__name__} "
                                 f"must be a floating tensor, got {_describe(x)}")
            if torch.is_grad_enabled() and not x.requires_grad:
                x = x.detach().requires_grad_()  # e.g. frozen embeddings or a raw input
            tensors.append(x)
            return x

        if self.where == "output":
            handle = self.module.register_forward_hook(
                lambda module, args, output: make_differentiable(output))
        else:
            handle = self.module.register_forward_pre_hook(
                lambda module, args: (make_differentiable(_first(args)), *args[1:]))
        try:
            yield tensors
        finally:
            handle.remove()
        if not tensors:
            raise ValueError(f"{type(self.module).__name__} was not called in the forward pass; "
                             "is it the embedding of the model that loss_fn runs?")

    @contextmanager
    def perturb(self, deltas: Sequence[Tensor]) -> Iterator[None]:
        """Run the block with the site shifted by ``deltas`` (one per captured tensor).

        The module is restored on exit, also when the block raises. Deltas that require
        grad stay in the graph, so gradients with respect to them can be taken.
        """
        if self.where == "weight":
            weight = self.module._parameters["weight"]
            _check_delta(deltas, 0, weight)
            self.module._parameters["weight"] = weight + deltas[0]
            try:
                yield
            finally:
                self.module._parameters["weight"] = weight
            return

        calls = 0

        def shift(x: Tensor) -> Tensor:
            nonlocal calls
            if calls >= len(deltas):
                raise ValueError(f"{type(self.module).__name__} was called more often "
                                 f"({calls + 1}) than deltas were given ({len(deltas)})")
            delta = _check_delta(deltas, calls, x)
            calls += 1
            return x + delta

        if self.where == "output":
            handle = self.module.register_forward_hook(lambda module, args, output: shift(output))
        else:
            handle = self.module.register_forward_pre_hook(
                lambda module, args: (shift(_first(args)), *args[1:]))
        try:
            yield
        finally:
            handle.remove()
        if calls != len(deltas):
            raise ValueError(f"{type(self.module).__name__} was called {calls} time(s) but "
                             f"{len(deltas)} delta(s) were given")


def _first(args: tuple) -> Any:
    if not args:
        raise ValueError("where='input' needs the input as the first positional argument of "
                         "the module, got no positional arguments")
    return args[0]


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def _check_delta(deltas: Sequence[Tensor], i: int, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"the perturbed tensor must be a Tensor, got {type(x).__name__}")
    if i >= len(deltas):
        raise ValueError(f"expected at least {i + 1} delta(s), got {len(deltas)}")
    if deltas[i].shape != x.shape:
        raise ValueError(f"delta {i} has shape {tuple(deltas[i].shape)} but the perturbed "
                         f"tensor has shape {tuple(x.shape)}")
    return deltas[i]


def normalize_perturbation(
    grads: Sequence[Tensor], norm: str | None = "global", eps: float = 1e-12
) -> list[Tensor]:
    """Unit-normalise a list of gradients: ``g / max(||g||, eps)`` (a zero gradient stays 0).

    ``norm="global"`` divides by one L2 norm over all tensors (the author's choice),
    ``"per_example"`` by the norm of each slice along dim 0 of each tensor (Miyato et
    al.), ``None`` returns the gradients unchanged.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm is None:
        return list(grads)
    if norm == "global":
        total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        return [g / total.clamp_min(eps) for g in grads]
    out = []
    for g in grads:
        if g.dim() == 0:
            raise ValueError("norm='per_example' needs tensors with a batch dimension, got a "
                             "0-dim tensor")
        n = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))  # (batch, 1, ...)
        out.append(g / n.clamp_min(eps))
    return out


def _site_grads(loss: Tensor, xs: Sequence[Tensor], *, create_graph: bool = False) -> list[Tensor]:
    """d loss / d xs, with a clear error when the loss does not depend on the site."""
    grads = torch.autograd.grad(loss, list(xs), create_graph=create_graph, allow_unused=True)
    return [_require_grad(g, i) for i, g in enumerate(grads)]


def _require_grad(g: Tensor | None, i: int) -> Tensor:
    if g is None:
        raise ValueError(f"the loss does not depend on the perturbed tensor {i}: no gradient "
                         "flows to it (is it the right embedding / input?)")
    return g


def _backward_capturing(loss: Tensor, xs: Sequence[Tensor]) -> list[Tensor]:
    """``loss.backward()`` that also returns d loss / d xs from the same pass."""
    grads: list[Tensor | None] = [None] * len(xs)

    def keeper(i: int):
        def hook(g: Tensor) -> None:
            grads[i] = g if grads[i] is None else grads[i] + g
        return hook

    handles = [x.register_hook(keeper(i)) for i, x in enumerate(xs)]
    try:
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    return [_require_grad(g, i) for i, g in enumerate(grads)]


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
        self.epsilon = _check_positive("epsilon", epsilon)
        if variant not in ("author", "common"):
            raise ValueError(f"variant must be 'author' or 'common', got {variant!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if norm == "per_example" and where == "weight":
            raise ValueError("norm='per_example' needs a batch dimension; the embedding matrix "
                             "(where='weight') has none: use where='output'")
        self.site = PerturbationSite(embedding, where)
        self.variant, self.norm = variant, norm

    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn) -> Tensor:
        with no_sync(model):
            with self.site.capture() as xs:
                loss = check_scalar_loss(loss_fn(model, batch))
            if self.variant == "author":
                grads = _site_grads(loss, xs)  # gradient at the site only; no parameter grads
            else:
                grads = _backward_capturing(loss, xs)  # clean parameter grads + site gradient
        deltas = [self.epsilon * d for d in normalize_perturbation(grads, self.norm)]
        with self.site.perturb(deltas):
            adversarial_loss = check_scalar_loss(loss_fn(model, batch))
            adversarial_loss.backward()
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
        raise ValueError(f"loss must be a scalar floating tensor, got {_describe(loss)}")
    epsilon = _check_positive("epsilon", epsilon)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise ValueError("inputs must hold at least one tensor, got none")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"inputs[{i}] must be a tensor with requires_grad=True, got "
                             f"{_describe(x)}" + ("" if not isinstance(x, Tensor)
                                                  else " without requires_grad"))
    grads = _site_grads(loss, inputs, create_graph=True)
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
        self.epsilon = _check_positive("epsilon", epsilon)
        self.site = PerturbationSite(embedding, where)

    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn) -> Tensor:
        with self.site.capture() as xs, sdpa_kernel(SDPBackend.MATH):
            loss = check_scalar_loss(loss_fn(model, batch))
        gradient_penalty(loss, xs, self.epsilon).backward()
        return loss.detach()

    def __repr__(self) -> str:
        return f"GradientPenaltyStep(epsilon={self.epsilon}, where={self.site.where!r})"
