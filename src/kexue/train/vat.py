"""Random noise, gradient penalties and virtual adversarial training (VAT).

Source: 泛化性乱弹：从随机噪声、梯度惩罚到虚拟对抗训练 (2020-06-01,
https://kexue.fm/archives/7466).

For a loss ``l(F, f)`` with ``l(f, f) = 0`` and zero first derivative at ``F = f``,
Gaussian noise ``e ~ N(0, sigma^2 I)`` on the input gives the label-free penalty::

    E_e l(f(x + e), f(x))  ~=  0.5 * sigma^2 * sum_i lambda_i(x) * ||grad_x f_i(x)||^2

with ``lambda_i = d^2 l / dF_i^2`` at ``F = f`` (2 for the squared error, ``1 / p_i``
for KL on probabilities). :class:`NoiseConsistency` trains on the left side,
:func:`rademacher_gradient_penalty` estimates the right side with one backward pass,
``sum_i ||grad f_i||^2 = E_eta ||grad_x sum_i eta_i f_i||^2`` (``eta_i = +-1``).

VAT (Miyato et al., arXiv 1704.03976) replaces the random direction by the worst one:
``l(f(x + r), f_ng(x))`` has zero gradient at ``r = 0``, so it is ``~ 0.5 r^T H r`` and the
worst unit ``r`` is the top eigenvector of the Hessian ``H``, found by power iteration
with finite differences ``H u ~ grad_r l(f(x + xi u), f_ng(x)) / xi``::

    u ~ N(0, I); repeat n_power_iterations times: u <- grad_r l(f(x + xi u/||u||), f_ng(x))
    train on  l(f(x + epsilon u/||u||), f_ng(x))

(``n_power_iterations=0`` is Gaussian noise of norm epsilon). The author's defaults
(bert4keras VAT example): epsilon=1, xi=10, one iteration, the perturbation on the whole
token-embedding matrix with one global norm (``where="weight", norm="global"``);
standard VAT normalises per example (``where="output", norm="per_example"``).

Design as a step. VAT and noise consistency need no labels, so their step accepts
either an ordinary batch (the supervised loss and the consistency loss are computed on
the same batch) or a dict ``{"labelled": ..., "unlabelled": ...}`` (the supervised
``loss_fn`` runs on the labelled part, the consistency loss on the unlabelled part;
without ``"labelled"`` only the consistency loss is trained). The step backpropagates
``supervised + alpha * consistency`` once and returns the supervised loss (or the
consistency loss when there is no labelled part), detached. The model's prediction on a
batch comes from ``predict_fn(model, batch)`` (default: ``model(batch)`` or
``model(**batch)`` for a mapping, taking ``.logits`` of a Hugging Face output).
On an ordinary batch, a ``loss_fn`` that returns ``(loss, outputs)`` (step protocol v2,
:mod:`kexue.train.step`) gives the clean prediction for free: it is taken from ``outputs``
(the tensor itself, ``.logits`` or ``[0]``, so return it in the form ``predict_fn`` gives)
instead of from one more forward pass. The extra forward passes also update running statistics of batch-norm layers, and
dropout draws new masks in each of them (as in the author's code).
For a hand-written loop, :meth:`VAT.loss` returns the differentiable consistency loss::

    loss = F.cross_entropy(model(x_lab), y) + vat.loss(model, x_unlab)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.train._perturbation import (
    PerturbationSite,
    check_positive,
    describe,
    no_sync,
    normalize_perturbation,
    site_grads,
)
from kexue.train.step import Backward, LossFn, default_backward, split_loss

__all__ = [
    "VAT",
    "NoiseConsistency",
    "default_predict",
    "kl_with_logits",
    "prediction_of",
    "rademacher_gradient_penalty",
    "split_batch",
    "squared_error",
]

PredictFn = Callable[[nn.Module, Any], Tensor]
Divergence = Callable[[Tensor, Tensor], Tensor]


def kl_with_logits(target_logits: Tensor, logits: Tensor, reduction: str = "batchmean") -> Tensor:
    """``KL(softmax(target_logits) || softmax(logits))`` over the last dim.

    ``reduction``: ``"batchmean"`` (sum over classes, mean over the other dims),
    ``"sum"`` or ``"none"`` (shape ``logits.shape[:-1]``).
    """
    if target_logits.shape != logits.shape:
        raise ValueError(f"target_logits and logits must have the same shape, got "
                         f"{tuple(target_logits.shape)} and {tuple(logits.shape)}")
    target_logp = F.log_softmax(target_logits, dim=-1)
    kl = (target_logp.exp() * (target_logp - F.log_softmax(logits, dim=-1))).sum(-1)
    if reduction == "batchmean":
        return kl.mean()
    if reduction == "sum":
        return kl.sum()
    if reduction == "none":
        return kl
    raise ValueError(f"reduction must be 'batchmean', 'sum' or 'none', got {reduction!r}")


def squared_error(target: Tensor, output: Tensor) -> Tensor:
    """``||output - target||^2`` summed over all but dim 0, averaged over dim 0."""
    if target.shape != output.shape:
        raise ValueError(f"target and output must have the same shape, got "
                         f"{tuple(target.shape)} and {tuple(output.shape)}")
    return (output - target).pow(2).flatten(1).sum(1).mean()


DIVERGENCES: dict[str, Divergence] = {"kl": kl_with_logits, "mse": squared_error}


def _resolve_divergence(divergence: str | Divergence) -> Divergence:
    if callable(divergence):
        return divergence
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {tuple(DIVERGENCES)} or a callable "
                         f"(target, output) -> scalar, got {divergence!r}")
    return DIVERGENCES[divergence]


def default_predict(model: nn.Module, batch: Any) -> Tensor:
    """``model(**batch)`` for a mapping, else ``model(batch)``; ``.logits`` or ``[0]`` of
    a structured output."""
    return prediction_of(model(**batch) if isinstance(batch, Mapping) else model(batch))


def prediction_of(out: Any) -> Tensor:
    """The prediction in a model's output: the tensor itself, ``.logits``, or ``[0]``."""
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"the prediction must be a tensor, got {type(out).__name__}; "
                         "pass predict_fn=")
    return out


def split_batch(batch: Any) -> tuple[Any | None, Any]:
    """``(labelled, unlabelled)`` parts of a batch for a consistency step.

    A mapping with an ``"unlabelled"`` key is split (``"labelled"`` may be absent);
    any other batch is used for both.
    """
    if isinstance(batch, Mapping) and "unlabelled" in batch:
        return batch.get("labelled"), batch["unlabelled"]
    if isinstance(batch, Mapping) and "labelled" in batch:
        raise ValueError("a batch with a 'labelled' part needs an 'unlabelled' part too, got "
                         f"keys {sorted(batch)}")
    return batch, batch


class _ConsistencyStep:
    """Shared step logic: supervised loss + alpha * consistency loss, one backward."""

    def __init__(self, target: nn.Module, where: str, divergence: str | Divergence,
                 alpha: float, predict_fn: PredictFn | None) -> None:
        self.site = PerturbationSite(target, where)
        self.divergence = _resolve_divergence(divergence)
        self.alpha = check_positive("alpha", alpha)
        self.predict_fn = predict_fn if predict_fn is not None else default_predict

    def _clean(self, model: nn.Module, batch: Any) -> tuple[Tensor, list[Tensor]]:
        """The detached clean prediction and the (detached) site tensors, for shapes."""
        with torch.no_grad(), no_sync(model), self.site.capture() as xs:
            clean = self.predict_fn(model, batch)
        return clean.detach(), [x.detach() for x in xs]

    def _consistency(self, model: nn.Module, batch: Any, clean: Tensor,
                     deltas: list[Tensor]) -> Tensor:
        with self.site.perturb(deltas):
            out = self.predict_fn(model, batch)
        value = self.divergence(clean, out)
        if not isinstance(value, Tensor) or value.dim() != 0:
            raise ValueError(f"the divergence must return a scalar, got {describe(value)}")
        return value

    def _loss_at(self, model: nn.Module, batch: Any, clean: Tensor,
                 xs: list[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The consistency loss on ``batch``, differentiable in the parameters."""
        clean, xs = self._clean(model, batch)
        return self._loss_at(model, batch, clean, xs)

    def __call__(self, model: nn.Module, batch: Any, loss_fn: LossFn, *,
                 backward: Backward | None = None) -> Tensor:
        backward = backward or default_backward
        labelled, unlabelled = split_batch(batch)
        if labelled is None:
            consistency = self.loss(model, unlabelled)
            backward(self.alpha * consistency)
            return consistency.detach()
        if labelled is not unlabelled:
            supervised, _ = split_loss(loss_fn(model, labelled))
            consistency = self.loss(model, unlabelled)
        else:  # one batch: the supervised forward is the clean prediction, when loss_fn gives it
            with self.site.capture() as xs:
                supervised, outputs = split_loss(loss_fn(model, batch))
            if outputs is None:
                clean, xs = self._clean(model, batch)
            else:
                clean, xs = prediction_of(outputs).detach(), [x.detach() for x in xs]
            consistency = self._loss_at(model, batch, clean, xs)
        backward(supervised + self.alpha * consistency)
        return supervised.detach()


class VAT(_ConsistencyStep):
    """Virtual adversarial training: ``l(f(x + r_adv), f_ng(x))`` as a loss and a step.

    Args:
        target: the embedding module, a model with ``get_input_embeddings()``, or (with
            ``where="input"``) the module whose float input is perturbed.
        epsilon: norm of the final perturbation (author: 1).
        xi: finite-difference step of the power iteration (author: 10, with the global
            norm over the embedding matrix; use a much smaller xi per example).
        n_power_iterations: power-iteration steps r (author: 1; 0 = random direction).
        where: ``"weight"`` (author), ``"output"`` or ``"input"``; see
            :class:`~kexue.train.adversarial.PerturbationSite`.
        norm: ``"global"`` (author) or ``"per_example"`` (Miyato et al.).
        divergence: ``"kl"`` (``KL(softmax(clean) || softmax(perturbed))`` on logits),
            ``"mse"``, or a callable ``(clean, perturbed) -> scalar``.
        alpha: weight of the VAT loss in the step.
        predict_fn: ``predict_fn(model, batch) -> logits``.

    The clean prediction is computed without gradient (for ``x`` and for the
    parameters, as in the author's code); Miyato's VAT also treats it as a constant.
    """

    def __init__(self, target: nn.Module, *, epsilon: float = 1.0, xi: float = 10.0,
                 n_power_iterations: int = 1, where: str = "weight", norm: str = "global",
                 divergence: str | Divergence = "kl", alpha: float = 1.0,
                 predict_fn: PredictFn | None = None) -> None:
        self.epsilon = check_positive("epsilon", epsilon)
        self.xi = check_positive("xi", xi)
        if not isinstance(n_power_iterations, int) or n_power_iterations < 0:
            raise ValueError(f"n_power_iterations must be an int >= 0, got {n_power_iterations!r}")
        if norm not in ("global", "per_example"):
            raise ValueError(f"norm must be 'global' or 'per_example', got {norm!r}")
        if norm == "per_example" and where == "weight":
            raise ValueError("norm='per_example' needs a batch dimension; the embedding matrix "
                             "(where='weight') has none: use where='output'")
        super().__init__(target, where, divergence, alpha, predict_fn)
        self.n_power_iterations, self.norm = n_power_iterations, norm

    def _direction(self, model: nn.Module, batch: Any, clean: Tensor,
                   xs: list[Tensor]) -> list[Tensor]:
        u = [torch.randn_like(x) for x in xs]
        for _ in range(self.n_power_iterations):
            probes = [(self.xi * d).requires_grad_() for d in normalize_perturbation(u, self.norm)]
            with no_sync(model):
                u = site_grads(self._consistency(model, batch, clean, probes), probes)  # ~ H u
        return normalize_perturbation(u, self.norm)

    def perturbation(self, model: nn.Module, batch: Any) -> list[Tensor]:
        """The adversarial perturbation ``epsilon * u`` (one tensor per site tensor)."""
        clean, xs = self._clean(model, batch)
        return [self.epsilon * d for d in self._direction(model, batch, clean, xs)]

    def _loss_at(self, model: nn.Module, batch: Any, clean: Tensor,
                 xs: list[Tensor]) -> Tensor:
        """The VAT loss ``l(f(x + epsilon u), f_ng(x))``, differentiable in the parameters."""
        deltas = [self.epsilon * d for d in self._direction(model, batch, clean, xs)]
        return self._consistency(model, batch, clean, deltas)

    def __repr__(self) -> str:
        return (f"VAT(epsilon={self.epsilon}, xi={self.xi}, n_power_iterations="
                f"{self.n_power_iterations}, where={self.site.where!r}, norm={self.norm!r})")


class NoiseConsistency(_ConsistencyStep):
    """Gaussian-noise consistency ``l(f(x + e), f_ng(x))``, ``e ~ N(0, sigma^2 I)``.

    In expectation ``~ 0.5 * sigma^2 * sum_i lambda_i ||grad_x f_i||^2`` for small sigma.
    Arguments as in :class:`VAT`; ``sigma`` is the noise standard deviation per
    component.
    """

    def __init__(self, target: nn.Module, sigma: float, *, where: str = "output",
                 divergence: str | Divergence = "kl", alpha: float = 1.0,
                 predict_fn: PredictFn | None = None) -> None:
        self.sigma = check_positive("sigma", sigma)
        super().__init__(target, where, divergence, alpha, predict_fn)

    def _loss_at(self, model: nn.Module, batch: Any, clean: Tensor,
                 xs: list[Tensor]) -> Tensor:
        """The noise-consistency loss, differentiable in the parameters."""
        deltas = [self.sigma * torch.randn_like(x) for x in xs]
        return self._consistency(model, batch, clean, deltas)

    def __repr__(self) -> str:
        return f"NoiseConsistency(sigma={self.sigma}, where={self.site.where!r})"


def rademacher_gradient_penalty(outputs: Tensor, inputs: Tensor, *, weights: Tensor | None = None,
                                n_samples: int = 1, reduction: str = "mean",
                                create_graph: bool = True) -> Tensor:
    """Unbiased estimate of ``sum_i weights_i * ||grad_x f_i(x)||^2`` per example.

    ``E_eta ||grad_x sum_i eta_i sqrt(w_i) f_i||^2`` with Rademacher ``eta_i = +-1``: one
    backward pass per sample instead of one per output.

    Args:
        outputs: ``f(x)``, shape ``(batch, ...)``; examples must not interact (no
            batch norm in training mode), since gradients are taken of their sum.
        inputs: ``x``, shape ``(batch, ...)``, in the graph of ``outputs``.
        weights: ``lambda_i``, broadcastable to ``outputs`` (detached), e.g. ``2`` for
            the squared error or ``1 / p_i`` for KL; default 1.
        n_samples: number of Rademacher draws averaged.
        reduction: ``"mean"`` / ``"sum"`` over the batch, or ``"none"`` (shape ``(batch,)``).
        create_graph: keep the graph so the estimate can be trained on.
    """
    if not isinstance(outputs, Tensor) or outputs.dim() == 0:
        raise ValueError(f"outputs must be a (batch, ...) tensor, got {describe(outputs)}")
    if not isinstance(inputs, Tensor) or not inputs.requires_grad:
        raise ValueError(f"inputs must be a tensor with requires_grad=True, got {describe(inputs)}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    scale = None
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=outputs.dtype, device=outputs.device).detach()
        if (weights < 0).any():
            raise ValueError("weights must be >= 0, got a negative entry")
        scale = weights.sqrt().expand_as(outputs)
    estimate = outputs.new_zeros(outputs.shape[0])
    for _ in range(n_samples):
        eta = torch.randint(0, 2, outputs.shape, device=outputs.device).to(outputs.dtype) * 2 - 1
        if scale is not None:
            eta = eta * scale
        (g,) = torch.autograd.grad(outputs, inputs, grad_outputs=eta, create_graph=create_graph,
                                   retain_graph=True, allow_unused=True)
        if g is None:
            raise ValueError("outputs do not depend on inputs: no gradient flows between them")
        estimate = estimate + g.flatten(1).pow(2).sum(1)  # (batch,)
    estimate = estimate / n_samples
    if reduction == "mean":
        return estimate.mean()
    if reduction == "sum":
        return estimate.sum()
    return estimate

