"""Losses for class imbalance: focal, hard truncation, smooth F1 (soft Dice), weighted CE.

Sources:
  * 从loss的硬截断、软化到focal loss (2017-12-25, https://kexue.fm/archives/4733)
  * 再谈类别不平衡问题：调节权重与魔改Loss的对比联系 (2020-08-31, https://kexue.fm/archives/7708)

Every loss here takes *logits* and accepts the two target forms of torch itself:

  * binary -- ``target`` has the shape of ``input`` and holds 0/1 (any dtype), one
    sigmoid per element, as in ``F.binary_cross_entropy_with_logits``;
  * multi-class -- ``input`` is ``(N, C, *)`` and ``target`` is ``(N, *)`` integer class
    indices, one softmax over dim 1, as in ``F.cross_entropy``.

Write p_t for the probability the model gives to the true class (p for y = 1, 1 - p for
y = 0 in the binary case). Cross-entropy is CE = -log p_t; each loss below re-weights it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue.losses._reduction import check_reduction, reduce

__all__ = [
    "class_weighted_cross_entropy",
    "f1_weighted_cross_entropy",
    "focal_loss",
    "hard_truncation_loss",
    "smooth_f1_loss",
]



# ----------------------------------------------------------------------------- helpers
def _classification_form(input: Tensor, target: Tensor) -> str:
    """Validate (input, target) and say which form they are in: "binary" or "multiclass"."""
    if not torch.is_floating_point(input):
        raise ValueError(f"input must hold floating-point logits, got dtype {input.dtype}")
    if input.numel() == 0:
        raise ValueError(f"input is empty (shape {tuple(input.shape)}); expected a non-empty batch")
    if target.shape == input.shape:
        if target.dtype != torch.bool:
            bad = target.bool() != target  # anything but 0 and 1
            if bool(bad.any()):
                raise ValueError(
                    "binary target (same shape as input) must hold only 0 and 1; "
                    f"found {int(bad.sum())} other value(s), e.g. {target[bad].flatten()[0].item()}"
                )
        return "binary"
    class_shape = input.shape[:1] + input.shape[2:]
    if input.dim() >= 2 and target.shape == class_shape:
        if torch.is_floating_point(target) or target.dtype == torch.bool:
            raise ValueError(
                f"multi-class target must hold integer class indices, got dtype {target.dtype}"
            )
        num_classes = input.shape[1]
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"class indices must lie in [0, {num_classes - 1}] (input has {num_classes} "
                f"classes on dim 1), got values in [{lo}, {hi}]"
            )
        return "multiclass"
    raise ValueError(
        f"target shape {tuple(target.shape)} fits neither form: expected {tuple(input.shape)} "
        f"(binary 0/1 labels) or {tuple(class_shape)} (class indices for input (N, C, *))"
    )


def _cross_entropy(input: Tensor, target: Tensor, form: str) -> Tensor:
    """Element-wise CE = -log p_t, shape of ``target``."""
    if form == "binary":
        return F.binary_cross_entropy_with_logits(input, target.to(input.dtype), reduction="none")
    return F.cross_entropy(input, target, reduction="none")


def _modulating_factor(ce: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma from CE = -log p_t, finite in value and gradient for any logits.

    1 - p_t = -expm1(-CE) is accurate when p_t is near 1. When it underflows to 0 the
    clamp at the smallest normal number keeps ``pow`` away from 0^(gamma - 1) = inf; the
    clamp's zero gradient there is the true limit, since d/dz (1 - p_t)^gamma -> 0.
    """
    one_minus_pt = (-torch.expm1(-ce)).clamp_min(torch.finfo(ce.dtype).tiny)
    return one_minus_pt.pow(gamma)


# ----------------------------------------------------------------------------- losses
def focal_loss(
    input: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Focal loss :math:`-\alpha_t (1 - p_t)^\gamma \log p_t` on logits.

    From 从loss的硬截断、软化到focal loss (2017-12-25, kexue.fm/archives/4733), after Lin et
    al. 2017: binary :math:`-(1-\hat y)^\gamma\log\hat y` for y = 1 and
    :math:`-\hat y^\gamma\log(1-\hat y)` for y = 0; multi-class :math:`-(1-\hat y_t)^\gamma
    \log\hat y_t` with :math:`\hat y = \mathrm{softmax}`. ``gamma = 0`` (and no ``alpha``) is
    exactly cross-entropy. The post's "softened truncation" :math:`-\sigma(-Kx)\log\sigma(x)`
    equals the binary focal loss at K = gamma = 1.

    Args:
        input: logits, ``(*)`` for binary targets or ``(N, C, *)`` for class indices.
        target: 0/1 labels of the shape of ``input``, or class indices ``(N, *)``.
        gamma: focusing parameter, >= 0 (RetinaNet's best: 2).
        alpha: binary: weight of positives in [0, 1] (negatives get 1 - alpha; RetinaNet 0.25,
            the post suggests 0.5, i.e. no re-weighting, without a tuning budget);
            multi-class: a ``(C,)`` tensor of per-class weights. ``None``: no weighting.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over elements (``"mean"`` is the plain
            mean, also with ``alpha``).
    """
    check_reduction(reduction)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    form = _classification_form(input, target)
    ce = _cross_entropy(input, target, form)  # (*) = -log p_t
    loss = ce if gamma == 0 else _modulating_factor(ce, gamma) * ce
    if alpha is not None:
        loss = _class_weight(target, form, alpha, input) * loss
    return reduce(loss, reduction)


def _class_weight(target: Tensor, form: str, alpha: float | Tensor, input: Tensor) -> Tensor:
    """alpha_t per element: alpha / 1 - alpha (binary) or alpha[target] (multi-class)."""
    if form == "binary":
        if isinstance(alpha, Tensor) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"binary alpha must be a float in [0, 1], got {alpha!r}")
        y = target.to(input.dtype)
        return alpha * y + (1.0 - alpha) * (1.0 - y)
    num_classes = input.shape[1]
    if not isinstance(alpha, Tensor) or alpha.shape != (num_classes,):
        shape = tuple(alpha.shape) if isinstance(alpha, Tensor) else type(alpha).__name__
        raise ValueError(
            f"multi-class alpha must be a tensor of shape ({num_classes},), got {shape}"
        )
    return alpha.to(device=input.device, dtype=input.dtype)[target]


def hard_truncation_loss(
    input: Tensor,
    target: Tensor,
    m: float = 0.5,
    reduction: str = "mean",
) -> Tensor:
    r"""Hard-truncated cross-entropy :math:`\lambda\cdot(-\log p_t)`, :math:`\lambda = [p_t \le m]`.

    From 从loss的硬截断、软化到focal loss (2017-12-25, kexue.fm/archives/4733), first proposed
    in 文本情感分类（四）：更好的损失函数 (kexue.fm/archives/4293): samples the model already
    gets right with confidence above the threshold m get no loss and no gradient, so training
    concentrates on the hard ones. In the binary case this reads: drop a positive when
    :math:`\hat y > m`, drop a negative when :math:`\hat y < 1 - m`; the post's default is
    m = 0.5 (4293 used m = 0.6). Since :math:`p_t \le 1`, **m = 1 never truncates and
    equals plain cross-entropy**. Values of m below 0.5 (binary) or 1/C would also drop
    samples that are still misclassified.

    The mask has no gradient (the post's point: nothing tells the model to *keep* solved
    samples solved, so training needs more steps); ``focal_loss`` is the smooth version.

    Args:
        input: logits, ``(*)`` for binary targets or ``(N, C, *)`` for class indices.
        target: 0/1 labels of the shape of ``input``, or class indices ``(N, *)``.
        m: confidence threshold in (0, 1].
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``; ``"mean"`` divides by the number of
            all elements, truncated ones included.
    """
    check_reduction(reduction)
    if not 0.0 < m <= 1.0:
        raise ValueError(f"threshold m must lie in (0, 1], got {m}")
    form = _classification_form(input, target)
    ce = _cross_entropy(input, target, form)  # (*) = -log p_t
    keep = ce >= -math.log(m)  # p_t <= m
    return reduce(ce * keep, reduction)


def smooth_f1_loss(
    input: Tensor,
    target: Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> Tensor:
    r"""Soft Dice / smooth-F1 loss :math:`1 - 2\sum y p / \sum (y + p)` over the batch.

    From 再谈类别不平衡问题 (2020-08-31, kexue.fm/archives/7708): the smoothed F1 of the
    positive class is :math:`F1_s = 2E[y p]/E[y + p]` with p the predicted probability; soft
    Dice is the same quantity, so this is the Dice loss :math:`1 - F1_s`. Multi-class: one
    :math:`F1_s` per class (one-vs-rest, p = softmax over dim 1), returned per class.

    This is a *batch* statistic, not a per-sample loss: it is not a sum over samples, so
    its value depends on the batch. The denominator is clamped at ``eps``; a class with no
    positives in the batch has F1 = 0 (loss 1) and zero gradient.

    Args:
        input: logits, ``(*)`` for binary targets or ``(N, C, *)`` for class indices.
        target: 0/1 labels of the shape of ``input``, or class indices ``(N, *)``.
        eps: lower bound for :math:`\sum (y + p)`.
        reduction: over classes: ``"none"`` gives ``(C,)`` (a 0-d tensor for binary
            targets), ``"mean"`` the macro average, ``"sum"`` the sum.
    """
    check_reduction(reduction)
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    form = _classification_form(input, target)
    if form == "binary":
        p, y = torch.sigmoid(input), target.to(input.dtype)
        tp, total = (y * p).sum(), (y + p).sum()  # ()
    else:
        p = torch.softmax(input, dim=1)  # (N, C, *)
        y = F.one_hot(target, input.shape[1]).movedim(-1, 1).to(input.dtype)  # (N, C, *)
        dims = [d for d in range(input.dim()) if d != 1]
        tp, total = (y * p).sum(dims), (y + p).sum(dims)  # (C,)
    f1 = 2 * tp / total.clamp_min(eps)
    return reduce(1 - f1, reduction)


def class_weighted_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor,
    reduction: str = "mean",
) -> Tensor:
    r"""Class-weighted cross-entropy :math:`-w_{y}\log p_t`.

    The basic remedy for imbalance discussed in 再谈类别不平衡问题 (2020-08-31,
    kexue.fm/archives/7708): weights act *outside* the log (logit adjustment,
    ``LogitAdjustedLoss``, acts inside it). A common choice is ``weight = 1 / class_priors``
    (inverse frequency), rescaled to any constant.

    Args:
        input: logits, ``(*)`` for binary targets or ``(N, C, *)`` for class indices.
        target: 0/1 labels of the shape of ``input``, or class indices ``(N, *)``.
        weight: ``(C,)`` per-class weights; for binary targets ``(2,)`` = (negative, positive).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``. ``"mean"`` is the plain mean of
            :math:`w_y \cdot CE` over elements; note ``F.cross_entropy(weight=...)`` divides
            by :math:`\sum w_y` instead.
    """
    check_reduction(reduction)
    form = _classification_form(input, target)
    num_classes = 2 if form == "binary" else input.shape[1]
    if not isinstance(weight, Tensor) or weight.shape != (num_classes,):
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a tensor of shape ({num_classes},), got {shape}")
    if bool((weight < 0).any()):
        raise ValueError(f"weight must be >= 0, got {weight.tolist()}")
    weight = weight.to(device=input.device, dtype=input.dtype)
    if form == "binary":
        w = weight[target.long()]  # (*)
        loss = F.binary_cross_entropy_with_logits(
            input, target.to(input.dtype), weight=w, reduction="none"
        )
    else:
        loss = F.cross_entropy(input, target, weight=weight, reduction="none")
    return reduce(loss, reduction)


def f1_weighted_cross_entropy(
    input: Tensor,
    target: Tensor,
    f1: float | Tensor | None = None,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> Tensor:
    r"""Binary CE weighted by the smoothed F1: the gradient of :math:`-F1_s` under "p -> log p".

    From 再谈类别不平衡问题 (2020-08-31, kexue.fm/archives/7708): differentiating
    :math:`-F1_s` gives per-sample gradients :math:`-(y - F1_s/2)\nabla p`; replacing
    :math:`\nabla p` by :math:`\nabla\log p` (and :math:`-\nabla p` by
    :math:`\nabla\log(1-p)`), the "axiom" that turns smoothed accuracy into CE, gives

    .. math:: -E\big[y(1 - F1_s/2)\log p + (1 - y)(F1_s/2)\log(1 - p)\big]

    with :math:`F1_s` treated as a constant (no gradient).

    Args:
        input: binary logits ``(*)``.
        target: 0/1 labels of the same shape.
        f1: the smoothed F1 to weight with, in [0, 1] -- e.g. an EMA over batches, which the
            research note recommends since a batch may hold no positives. ``None``: the
            detached batch estimate :math:`2\sum yp / \sum(y + p)`.
        eps: lower bound for the denominator of the batch estimate.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over elements.
    """
    check_reduction(reduction)
    form = _classification_form(input, target)
    if form != "binary":
        raise ValueError(
            "f1_weighted_cross_entropy is defined for binary targets (same shape as input), "
            f"got input {tuple(input.shape)} and class indices {tuple(target.shape)}"
        )
    y = target.to(input.dtype)
    if f1 is None:
        f1 = 1 - smooth_f1_loss(input.detach(), target, eps=eps)
    else:
        f1 = torch.as_tensor(f1, dtype=input.dtype, device=input.device).detach()
        if f1.numel() != 1 or not 0.0 <= float(f1) <= 1.0:
            raise ValueError(f"f1 must be a scalar in [0, 1], got {f1.tolist()}")
    w = y * (1 - f1 / 2) + (1 - y) * (f1 / 2)  # (*)
    loss = F.binary_cross_entropy_with_logits(input, y, weight=w, reduction="none")
    return reduce(loss, reduction)
