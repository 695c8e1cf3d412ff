"""Where a perturbation is added, and the helpers FGM, VAT and the noise steps share.

:class:`PerturbationSite` swaps a perturbed embedding matrix in, or shifts a module's output
or input, for one forward pass; :func:`normalize_perturbation` scales gradients to unit norm
(globally or per example); :func:`no_sync` runs the extra passes of a step without DDP's
gradient all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

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


def check_positive(name: str, value: float) -> float:
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
                                 f"must be a floating tensor, got {describe(x)}")
            if torch.is_grad_enabled() and not x.requires_grad:
                x = x.detach().requires_grad_()  # e.g. frozen embeddings or a raw input
            tensors.append(x)
            return x

        if self.where == "output":
            handle = self.module.register_forward_hook(
                lambda module, args, output: make_differentiable(output))
        else:
            handle = self.module.register_forward_pre_hook(
                lambda module, args: (make_differentiable(first_argument(args)), *args[1:]))
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
            check_delta(deltas, 0, weight)
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
            delta = check_delta(deltas, calls, x)
            calls += 1
            return x + delta

        if self.where == "output":
            handle = self.module.register_forward_hook(lambda module, args, output: shift(output))
        else:
            handle = self.module.register_forward_pre_hook(
                lambda module, args: (shift(first_argument(args)), *args[1:]))
        try:
            yield
        finally:
            handle.remove()
        if calls != len(deltas):
            raise ValueError(f"{type(self.module).__name__} was called {calls} time(s) but "
                             f"{len(deltas)} delta(s) were given")


def first_argument(args: tuple) -> Any:
    if not args:
        raise ValueError("where='input' needs the input as the first positional argument of "
                         "the module, got no positional arguments")
    return args[0]


def describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def check_delta(deltas: Sequence[Tensor], i: int, x: Tensor) -> Tensor:
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


def site_grads(loss: Tensor, xs: Sequence[Tensor], *, create_graph: bool = False,
               retain_graph: bool | None = None) -> list[Tensor]:
    """d loss / d xs, with a clear error when the loss does not depend on the site."""
    grads = torch.autograd.grad(loss, list(xs), create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return [require_grad(g, i) for i, g in enumerate(grads)]


def require_grad(g: Tensor | None, i: int) -> Tensor:
    if g is None:
        raise ValueError(f"the loss does not depend on the perturbed tensor {i}: no gradient "
                         "flows to it (is it the right embedding / input?)")
    return g


def backward_capturing(loss: Tensor, xs: Sequence[Tensor],
                       backward: Callable[[Tensor], Any] = Tensor.backward) -> list[Tensor]:
    """``backward(loss)`` that also returns the gradient reaching xs in the same pass.

    The gradient is that of what ``backward`` differentiates: a loss scaled by a
    ``GradScaler`` or divided for gradient accumulation gives it scaled alike.
    """
    grads: list[Tensor | None] = [None] * len(xs)

    def keeper(i: int):
        def hook(g: Tensor) -> None:
            grads[i] = g if grads[i] is None else grads[i] + g
        return hook

    handles = [x.register_hook(keeper(i)) for i, x in enumerate(xs)]
    try:
        backward(loss)
    finally:
        for h in handles:
            h.remove()
    return [require_grad(g, i) for i, g in enumerate(grads)]
