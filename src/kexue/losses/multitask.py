r"""Multi-task loss weighting: turn n task losses into one scalar.

Source: 多任务学习漫谈（一）：以损失之名 (2022-01-18, https://kexue.fm/archives/8870).

Strategies (``MultiTaskLoss(strategy=...)``) for task losses :math:`L_1..L_n`; "[s-inv]"
marks the scale-invariant ones:

* ``fixed``:       :math:`\sum_i \alpha_i L_i` (default :math:`\alpha_i = 1`, the plain sum)
* ``initial``:     :math:`\sum_i L_i / L_i^{(init)}`  [s-inv]
* ``prior``:       :math:`\sum_i L_i / L_i^{(prior)}`  [s-inv, if the prior loss scales too]
* ``realtime``:    :math:`\sum_i L_i / \mathrm{sg}(L_i)`, sg = stop-gradient  [s-inv]
* ``log``:         :math:`\sum_i \log L_i`  [s-inv]
* ``gmean``:       :math:`\big(\tfrac1n\sum_i L_i^\gamma\big)^{1/\gamma}`, the geometric mean
  at :math:`\gamma = 0`  [s-inv only at :math:`\gamma = 0`; otherwise only jointly homogeneous]
* ``uncertainty``: :math:`\sum_i \tfrac12\big(e^{-s_i} L_i + s_i\big)`, learned
  :math:`s_i = \log\sigma_i^2`  [s-inv at the optimum of s]

"Scale-invariant": multiplying one :math:`L_i` by a constant leaves the direction of the
gradient unchanged, so a task whose loss is naturally 1000x larger cannot drown the others.

* ``initial``: :math:`L^{(init)}` is the loss before training; estimate it from a few
  batches or take the theoretical value, e.g. :math:`\log K` for K-class CE with zero
  logits (the "1 / log K" weighting) and :math:`E\|y\|^2` for L2 regression. If not
  given, the (detached) losses of the first call are recorded.
* ``prior``: :math:`L^{(prior)}` is the loss of a model that predicts the prior: the
  label entropy :math:`-\sum_k\pi_k\log\pi_k` for K-class CE (:math:`\log K` when
  balanced), the label variance for L2 regression.
* ``realtime``: its value is always n but its gradient is :math:`\sum_i\nabla L_i/L_i
  = \nabla\sum_i\log L_i`, the same direction as ``log`` and the geometric mean. The
  author: many informal ("民间") experiments show it is "a quite good baseline in most
  cases" -- **start with ``realtime``**.
* ``gmean``: :math:`\gamma = 1` is the mean, :math:`\gamma\to 0` the geometric mean,
  :math:`\gamma\to\pm\infty` the max / min (``float('inf')`` and ``-inf`` are accepted).
* ``uncertainty``: Kendall et al. (CVPR 2018), not in the post: learned
  :math:`s_i = \log\sigma_i^2` (put ``loss_fn.parameters()`` into the optimiser). Minimising
  over :math:`\sigma_i^2` exactly gives :math:`\sigma_i^2 = L_i` and
  :math:`\tfrac12\sum_i\log L_i` + const, i.e. ``log`` again.

``log`` and ``gmean`` need :math:`L_i > 0` and ``realtime`` :math:`L_i \ge 0` (a Gaussian
NLL can be negative, and :math:`L/\mathrm{sg}(L)` would then ascend it): they raise
otherwise. Normalisers are clamped at ``eps`` so a loss that reaches 0 cannot blow up the
weights. The post's translation-invariant scheme (normalise each task's *gradient*,
:math:`\sum_i\nabla L_i/\|\nabla L_i\|`) needs one backward pass per task and is a
training-step wrapper, not a loss, so it is not here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["MultiTaskLoss"]

STRATEGIES = ("fixed", "initial", "prior", "realtime", "log", "gmean", "uncertainty")


class MultiTaskLoss(nn.Module):
    r"""Combine task losses with one of the weighting strategies of kexue.fm/archives/8870.

    See the module docstring for the formulas. Example::

        mtl = MultiTaskLoss("realtime", num_tasks=2)
        loss = mtl({"cls": ce_loss, "reg": mse_loss})  # or mtl([ce_loss, mse_loss])
        loss.backward()

    Args:
        strategy: one of ``fixed``, ``initial``, ``prior``, ``realtime``, ``log``, ``gmean``,
            ``uncertainty``.
        num_tasks: n.
        weights: ``fixed`` only: the n weights :math:`\alpha_i` (default all 1).
        initial_losses: ``initial`` only: the n values :math:`L_i^{(init)}` > 0; ``None``
            records the losses of the first forward call.
        prior_losses: ``prior`` only (required): the n values :math:`L_i^{(prior)}` > 0.
        gamma: ``gmean`` only: the exponent :math:`\gamma` (0 = geometric mean).
        eps: lower bound for every normaliser.

    Forward takes a sequence or a mapping (values in iteration order) of n scalar losses
    and returns the combined scalar.
    """

    def __init__(
        self,
        strategy: str = "realtime",
        num_tasks: int = 2,
        weights: Sequence[float] | Tensor | None = None,
        initial_losses: Sequence[float] | Tensor | None = None,
        prior_losses: Sequence[float] | Tensor | None = None,
        gamma: float = 1.0,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        for name, value, owner in (
            ("weights", weights, "fixed"),
            ("initial_losses", initial_losses, "initial"),
            ("prior_losses", prior_losses, "prior"),
        ):
            if value is not None and strategy != owner:
                raise ValueError(f"{name} applies to strategy {owner!r} only, got {strategy!r}")
        if strategy == "prior" and prior_losses is None:
            raise ValueError("strategy 'prior' needs prior_losses (e.g. log K for K-class CE)")
        if math.isnan(gamma):
            raise ValueError("gamma must be a number, got nan")
        self.strategy = strategy
        self.num_tasks = num_tasks
        self.gamma = float(gamma)
        self.eps = eps

        default = torch.ones(num_tasks) if strategy == "fixed" else None
        self.register_buffer(
            "weights", self._per_task("weights", weights, allow_zero=True, default=default)
        )
        self.register_buffer("initial_losses", self._per_task("initial_losses", initial_losses))
        self.register_buffer("prior_losses", self._per_task("prior_losses", prior_losses))
        # s_i = log sigma_i^2, initialised to 0 (sigma = 1: the plain half-sum)
        self.log_vars = nn.Parameter(torch.zeros(num_tasks)) if strategy == "uncertainty" else None

    def _per_task(
        self,
        name: str,
        value: Sequence[float] | Tensor | None,
        allow_zero: bool = False,
        default: Tensor | None = None,
    ) -> Tensor | None:
        if value is None:
            return default
        value = torch.as_tensor(value, dtype=torch.float32).flatten()
        if value.numel() != self.num_tasks:
            raise ValueError(f"{name} must have {self.num_tasks} entries, got {value.numel()}")
        bad = value < 0 if allow_zero else value <= 0
        if bool(bad.any()) or not bool(torch.isfinite(value).all()):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value.tolist()}")
        return value

    def _stack(self, losses: Sequence[Tensor] | Mapping[str, Tensor]) -> Tensor:
        values = list(losses.values()) if isinstance(losses, Mapping) else list(losses)
        if len(values) != self.num_tasks:
            raise ValueError(f"expected {self.num_tasks} task losses, got {len(values)}")
        for i, v in enumerate(values):
            if not isinstance(v, Tensor) or v.numel() != 1:
                shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(f"task loss {i} must be a scalar tensor, got {shape}")
        return torch.stack([v.reshape(()) for v in values])  # (n,)

    def forward(self, losses: Sequence[Tensor] | Mapping[str, Tensor]) -> Tensor:
        L = self._stack(losses)  # (n,)
        s = self.strategy
        if s in ("log", "gmean") and bool((L.detach() <= 0).any()):
            raise ValueError(f"strategy {s!r} needs task losses > 0, got {L.detach().tolist()}")
        if s == "realtime" and bool((L.detach() < 0).any()):
            # L / sg(L) with L < 0 would flip that task's gradient into ascent
            raise ValueError(
                f"strategy 'realtime' needs task losses >= 0, got {L.detach().tolist()}"
            )
        if s == "fixed":
            return (self.weights.to(L) * L).sum()
        if s == "initial":
            if self.initial_losses is None:  # record L^(init) on the first call
                self.initial_losses = L.detach().float().clamp_min(self.eps)
            return (L / self.initial_losses.to(L).clamp_min(self.eps)).sum()
        if s == "prior":
            return (L / self.prior_losses.to(L).clamp_min(self.eps)).sum()
        if s == "realtime":
            return (L / L.detach().clamp_min(self.eps)).sum()
        if s == "log":
            return L.log().sum()
        if s == "gmean":
            g = self.gamma
            if g == 0:
                return L.log().mean().exp()
            if math.isinf(g):
                return L.max() if g > 0 else L.min()
            # ((1/n) sum L^g)^(1/g) = exp(logmeanexp(g log L) / g), stable for large |g|
            return ((torch.logsumexp(g * L.log(), dim=0) - math.log(self.num_tasks)) / g).exp()
        # uncertainty: sum_i 1/2 (exp(-s_i) L_i + s_i)
        log_vars = self.log_vars.to(L)
        return 0.5 * (torch.exp(-log_vars) * L + log_vars).sum()

    def extra_repr(self) -> str:
        extra = f", gamma={self.gamma}" if self.strategy == "gmean" else ""
        return f"strategy={self.strategy!r}, num_tasks={self.num_tasks}{extra}"
