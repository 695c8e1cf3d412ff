r"""Logit adjustment for long-tailed classification: the loss form and the post-hoc form.

Source: 通过互信息思想来缓解类别不平衡问题 (2020-07-19, https://kexue.fm/archives/7615),
after Menon et al., "Long-tail learning via logit adjustment" (ICLR 2021).

Instead of p(y|x), let the logits fit the pointwise mutual information
:math:`\log p(y|x)/p(y) \sim f_y(x)`. With class priors :math:`\pi` (label frequencies of
the training set) and a temperature :math:`\tau` ("tau = 1 is generally near-optimal"):

* loss form: train with :math:`-\log \mathrm{softmax}(f + \tau\log\pi)_y
  = \log\big[1 + \sum_{i\ne y} (\pi_i/\pi_y)^\tau e^{f_i - f_y}\big]`, then predict
  :math:`\arg\max_y f_y` for the best balanced (per-class) accuracy, or
  :math:`\arg\max_y f_y + \tau\log\pi_y` for the best overall accuracy;
* post-hoc form: train with plain CE, then predict :math:`\arg\max_y f_y - \tau\log\pi_y`.

Mind the sign (+ in the loss, - post hoc) and never apply both. The post's "simplest
implementation", a last-layer bias initialised to :math:`\tau\log\pi` and trained with plain
CE, is the same model reparameterised (as long as that bias gets no weight decay).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.losses._reduction import check_reduction

__all__ = ["LogitAdjustedLoss", "class_priors", "posthoc_logit_adjust"]


def class_priors(
    labels: Tensor | Iterable[int],
    num_classes: int,
    smoothing: float = 0.0,
) -> Tensor:
    r"""Class frequencies :math:`\pi_k = (n_k + s) / (N + C s)` from training labels.

    Estimate them on the whole training set, not a batch. A class with no example would
    have :math:`\pi_k = 0` and :math:`\log\pi_k = -\infty`: that raises unless
    ``smoothing`` s > 0 (add-s / Laplace smoothing) is given.

    Args:
        labels: integer class labels, a tensor of any shape or any iterable of ints, e.g.
            ``(y for _, y in dataset)``.
        num_classes: C.
        smoothing: pseudo-count s >= 0 added to every class.

    Returns:
        ``(C,)`` float32 tensor summing to 1.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor([int(y) for y in labels], dtype=torch.long)
    if torch.is_floating_point(labels) or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.flatten()
    if labels.numel() == 0 and smoothing == 0:
        raise ValueError("labels are empty; give at least one label or smoothing > 0")
    if labels.numel() > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes - 1}] for num_classes={num_classes}, "
                f"got values in [{lo}, {hi}]"
            )
    counts = torch.bincount(labels.cpu(), minlength=num_classes).to(torch.float64)  # (C,)
    if smoothing == 0 and bool((counts == 0).any()):
        empty = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"classes {empty} have no example among {labels.numel()} labels, so their prior "
            "is 0 and log-prior -inf; pass smoothing > 0 (e.g. 1.0)"
        )
    counts = counts + smoothing
    return (counts / counts.sum()).to(torch.float32)


def _check_priors(priors: Tensor, tol: float = 1e-3) -> Tensor:
    priors = torch.as_tensor(priors)
    if priors.dim() != 1 or priors.numel() == 0:
        raise ValueError(
            f"class_priors must be a non-empty 1-D tensor, got shape {tuple(priors.shape)}"
        )
    if not torch.is_floating_point(priors):
        priors = priors.to(torch.float32)
    if not bool(torch.isfinite(priors).all()):
        raise ValueError(f"class_priors must be finite, got {priors.tolist()}")
    if bool((priors <= 0).any()):
        bad = (priors <= 0).nonzero().flatten().tolist()
        raise ValueError(
            f"class_priors must be > 0 (log 0 = -inf); classes {bad} have "
            f"{priors[bad].tolist()}. Use class_priors(labels, num_classes, smoothing=...)"
        )
    total = float(priors.sum())
    if abs(total - 1.0) > tol:
        raise ValueError(f"class_priors must sum to 1 (tolerance {tol}), got sum {total:.6g}")
    return priors


def _class_view(vector: Tensor, input: Tensor, dim: int) -> Tensor:
    """Reshape a (C,) vector to broadcast along ``dim`` of ``input``."""
    shape = [1] * input.dim()
    shape[dim] = -1
    return vector.to(device=input.device, dtype=input.dtype).view(shape)


class LogitAdjustedLoss(nn.Module):
    r"""Logit-adjusted cross-entropy :math:`-\log\mathrm{softmax}(f + \tau\log\pi)_y`.

    From 通过互信息思想来缓解类别不平衡问题 (2020-07-19, kexue.fm/archives/7615); see the
    module docstring for how to predict afterwards. ``tau = 0`` is plain cross-entropy.

    Args:
        class_priors: ``(C,)`` class frequencies of the training set, > 0, summing to 1
            (within 1e-3); see :func:`class_priors`.
        tau: temperature :math:`\tau` >= 0.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``, as in ``F.cross_entropy``.

    Shape: ``input`` ``(N, C, *)`` logits, ``target`` ``(N, *)`` class indices, as in
    ``F.cross_entropy`` (classes on dim 1).
    """

    log_priors: Tensor

    def __init__(self, class_priors: Tensor, tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        self.tau = float(tau)
        self.reduction = reduction
        self.register_buffer("log_priors", _check_priors(class_priors).log())

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        num_classes = self.log_priors.numel()
        if input.dim() < 2 or input.shape[1] != num_classes:
            raise ValueError(
                f"input must be (N, {num_classes}, *) logits for {num_classes} class priors, "
                f"got shape {tuple(input.shape)}"
            )
        if target.shape != input.shape[:1] + input.shape[2:]:
            raise ValueError(
                f"target must be class indices of shape {tuple(input.shape[:1] + input.shape[2:])}, "
                f"got {tuple(target.shape)}"
            )
        if target.numel() > 0:
            lo, hi = int(target.min()), int(target.max())
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"class indices must lie in [0, {num_classes - 1}], got values in [{lo}, {hi}]"
                )
        adjusted = input + self.tau * _class_view(self.log_priors, input, dim=1)  # (N, C, *)
        return F.cross_entropy(adjusted, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.log_priors.numel()}, tau={self.tau}, reduction={self.reduction!r}"
        )


def posthoc_logit_adjust(
    logits: Tensor,
    class_priors: Tensor,
    tau: float = 1.0,
    dim: int = -1,
) -> Tensor:
    r"""Post-hoc logit adjustment :math:`f - \tau\log\pi` of a model trained with plain CE.

    From 通过互信息思想来缓解类别不平衡问题 (2020-07-19, kexue.fm/archives/7615) and Menon et
    al. (ICLR 2021): ``argmax`` of the result targets balanced (per-class) accuracy.
    Do not apply it to a model trained with :class:`LogitAdjustedLoss`.

    Args:
        logits: scores with the classes on ``dim``.
        class_priors: ``(C,)`` training-set class frequencies, > 0, summing to 1 (within 1e-3).
        tau: temperature >= 0 (default 1, the paper's default).
        dim: the class dimension of ``logits``.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    priors = _check_priors(class_priors)
    if logits.dim() == 0 or logits.shape[dim] != priors.numel():
        raise ValueError(
            f"logits must have {priors.numel()} classes on dim {dim}, got shape "
            f"{tuple(logits.shape)}"
        )
    return logits - tau * _class_view(priors.log(), logits, dim)
