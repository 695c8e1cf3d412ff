"""``reduction=`` as in torch.nn losses, shared by the losses of this package."""

from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """``loss.mean()``, ``loss.sum()`` or ``loss`` itself (``"none"``)."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
