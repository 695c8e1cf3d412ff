"""Multilabel categorical cross-entropy: "softmax + CE" generalised to n-choose-k.

Source: 将"Softmax+交叉熵"推广到多标签分类问题 (2020-04-25, https://kexue.fm/archives/7359),
later written up as "ZLPR: A Novel Loss for Multi-label Classification"; the sparse label
form follows the author's follow-up 稀疏版多标签分类交叉熵损失函数 (kexue.fm/archives/8888,
not in the local post set).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kexue.losses._reduction import check_reduction, reduce

__all__ = ["multilabel_categorical_crossentropy", "sparse_multilabel_categorical_crossentropy"]


def _check_scores(input: Tensor) -> None:
    if not torch.is_floating_point(input):
        raise ValueError(f"input must hold floating-point scores, got dtype {input.dtype}")
    if input.dim() == 0 or input.numel() == 0:
        raise ValueError(
            f"input must be a non-empty (..., C) tensor of class scores, got shape "
            f"{tuple(input.shape)}"
        )


def _log1p_sum_exp(a: Tensor) -> Tensor:
    """log(1 + sum_i e^{a_i}) over the last dim, i.e. logsumexp of [a, 0] without the concat."""
    m = a.detach().amax(dim=-1, keepdim=True).clamp_min(0)  # (..., 1); the result is m-free
    return (m + torch.log(torch.exp(-m) + torch.exp(a - m).sum(dim=-1, keepdim=True))).squeeze(-1)


def _multilabel_ce(input: Tensor, positive: Tensor) -> Tensor:
    """The loss from scores (..., C) and a boolean mask of positives (..., C); shape (...)."""
    neg = input.masked_fill(positive, float("-inf"))  # (..., C) s_i on negatives
    pos = (-input).masked_fill(~positive, float("-inf"))  # (..., C) -s_j on positives
    return _log1p_sum_exp(neg) + _log1p_sum_exp(pos)  # threshold class s_0 = 0 is the "1 +"


def multilabel_categorical_crossentropy(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
) -> Tensor:
    r"""Multilabel categorical cross-entropy on raw scores (dense 0/1 labels).

    From 将"Softmax+交叉熵"推广到多标签分类问题 (2020-04-25, kexue.fm/archives/7359):

    .. math:: \log\Big(1 + \sum_{i\in\Omega_{neg}} e^{s_i}\Big)
              + \log\Big(1 + \sum_{j\in\Omega_{pos}} e^{-s_j}\Big)

    i.e. every positive score should exceed every negative one and the threshold 0
    (an extra class with score :math:`s_0 = 0`). With one positive this is the usual
    softmax cross-entropy over the classes plus the threshold class. Predict the classes
    with :math:`s > 0`. Do not put a sigmoid or softmax on ``input``: scores must range
    over all reals. Computed with ``logsumexp`` (stable for any scores); no class
    weights or threshold tuning are needed, the point of the post.

    Args:
        input: scores ``(..., C)``, classes on the last dim.
        target: 0/1 labels of the same shape (any dtype).
        reduction: ``"none"`` gives ``(...)``; ``"mean"`` | ``"sum"`` over it.
    """
    check_reduction(reduction)
    _check_scores(input)
    if target.shape != input.shape:
        raise ValueError(
            f"dense target must have the shape of input {tuple(input.shape)}, got "
            f"{tuple(target.shape)} (use sparse_multilabel_categorical_crossentropy for "
            "lists of positive class indices)"
        )
    positive = target.bool()  # (..., C)
    if target.dtype != torch.bool:
        bad = positive != target  # anything but 0 and 1
        if bool(bad.any()):
            raise ValueError(
                f"target must hold only 0 and 1, found {int(bad.sum())} other value(s), e.g. "
                f"{target[bad].flatten()[0].item()}"
            )
    return reduce(_multilabel_ce(input, positive), reduction)


def sparse_multilabel_categorical_crossentropy(
    input: Tensor,
    target: Tensor,
    ignore_index: int = -1,
    reduction: str = "mean",
) -> Tensor:
    r"""Multilabel categorical cross-entropy with labels given as positive class indices.

    Same loss as :func:`multilabel_categorical_crossentropy` (kexue.fm/archives/7359); the
    labels come in the sparse form of the follow-up post (kexue.fm/archives/8888), which
    keeps label tensors small when C is huge (e.g. span extraction with C = seq_len^2
    candidate spans). Writing the negative term as :math:`\log(e^{A} - e^{B})` (A over all
    classes, B over the positives) avoids any dense tensor but cancels catastrophically
    when the negatives are negligible (A = B in floating point); here the positives are
    scattered into a boolean mask instead (one byte per score, a quarter of a float32
    ``input``), so the result equals the dense form exactly and stays finite for any
    scores.

    Args:
        input: scores ``(..., C)``, classes on the last dim.
        target: integer indices ``(..., K)`` of the positive classes, right-padded with
            ``ignore_index``; a repeated index counts once.
        ignore_index: padding value, must lie outside [0, C).
        reduction: ``"none"`` gives ``(...)``; ``"mean"`` | ``"sum"`` over it.
    """
    check_reduction(reduction)
    _check_scores(input)
    num_classes = input.shape[-1]
    if torch.is_floating_point(target) or target.dtype == torch.bool:
        raise ValueError(f"sparse target must hold integer class indices, got {target.dtype}")
    if target.dim() != input.dim() or target.shape[:-1] != input.shape[:-1]:
        raise ValueError(
            f"sparse target must have shape {tuple(input.shape[:-1])} + (K,) for input "
            f"{tuple(input.shape)}, got {tuple(target.shape)}"
        )
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index must lie outside [0, {num_classes - 1}], got {ignore_index}"
        )
    valid = target != ignore_index  # (..., K)
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"class indices must lie in [0, {num_classes - 1}] or equal ignore_index="
            f"{ignore_index}, found {target[bad].flatten()[0].item()}"
        )
    # padding goes to an extra column C that is dropped afterwards
    positive = input.new_zeros(input.shape[:-1] + (num_classes + 1,), dtype=torch.bool)
    positive.scatter_(-1, target.masked_fill(~valid, num_classes), True)
    return reduce(_multilabel_ce(input, positive[..., :num_classes]), reduction)
