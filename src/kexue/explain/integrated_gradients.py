"""Integrated gradients: attribution that splits F(x) - F(x') exactly among the inputs.

Source: 积分梯度：一种新颖的神经网络可视化方法 (2020-06-28, https://kexue.fm/archives/7533),
after Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks" (2017).

Along the straight path ``gamma(a) = x' + a (x - x')`` from a baseline ``x'`` to the input
``x``, the chain rule gives the identity ``F(x) - F(x') = sum_i IG_i`` with::

    IG_i = (x_i - x'_i) * integral_0^1 dF/dx_i (x' + a (x - x')) da

which is why the post prefers IG to the plain gradient or to ``grad * (x - x')`` (a first-order
Taylor split that is only approximate). The integral is a quadrature
``sum_k w_k grad F(x' + a_k (x - x'))`` with captum's rules, so the results agree with
``captum.attr.IntegratedGradients`` at the same ``steps`` and ``method``:

- ``"gausslegendre"`` (the default, as in captum): Gauss-Legendre nodes and weights mapped
  to ``[0, 1]``, exact for polynomial integrands of degree ``< 2n``;
- ``"riemann_trapezoid"``: ``a_k = k / (n - 1)``, weights ``1/n`` with the two ends halved
  (captum's weights; they sum to ``1 - 1/n``, so the completeness gap shrinks only like
  ``1/n``);
- ``"riemann_left" / "riemann_right" / "riemann_middle"``: ``n`` equal weights ``1/n``
  (``riemann_right`` with ``steps=1`` is gradient x input, ``grad F(x) * (x - x')``);
- ``"author"``: the post's bert4keras demo, ``a_k = k / (n - 1)`` and weight ``a_k / n``, i.e.
  ``mean_k grad F(a_k x) * (a_k x)`` for a zero baseline (gradient x *scaled* input). It is
  not a quadrature of IG (its weights sum to 1/2), so completeness does not hold: its
  ``delta`` stays large however many steps are taken.

Every interpolation point of every example goes through ``f`` in batched forward/backward
passes of ``batch_size`` points, and ``F(x)`` and ``F(x')`` come from the same passes (the end
points are added to the path when the rule lacks them), so the completeness
``delta = sum(attributions) - (F(x) - F(x'))`` costs nothing extra. While the passes run,
the parameters of ``f`` (when it is an ``nn.Module``) stop requiring grad, so autograd keeps
only what the input gradient needs.

:func:`layer_integrated_gradients` attributes at the output of a layer inside the model,
for text models at the token embeddings (the post's choice, with a zero baseline there);
``reduction`` gives one score per token: the sum over the hidden axis (signed; the
per-token shares of ``F(x) - F(x')``) or its L2 norm (the post's heat maps). Its default
``batch_size="auto"`` sizes the passes to about :data:`AUTO_TOKENS` positions: on a CPU
a transformer's time per token grows by a third to a half once a pass holds more than
a few thousand tokens (measured on MiniLM, 2 threads: 320 us/token at 1,760 tokens per pass,
416 at 7,040, 489 at 14,080), so a batch of sentences x 50 steps in one pass is slower than
the same work in passes of ~2,000 tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["AUTO_TOKENS", "METHODS", "Attribution", "integrated_gradients",
           "layer_integrated_gradients", "quadrature"]

METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
           "gausslegendre", "author")
REDUCTIONS = ("none", "sum", "norm")
AUTO_TOKENS = 2048  # positions per pass of layer_integrated_gradients(batch_size="auto")


class Attribution(NamedTuple):
    """Attributions and the completeness gap of each example."""

    attributions: Tensor  # shape of the inputs (or layer output), reduced per ``reduction``
    delta: Tensor  # (batch,) sum(attributions) - (F(x) - F(x'))


def quadrature(method: str, steps: int) -> tuple[Tensor, Tensor]:
    """Points ``a_k`` in ``[0, 1]`` and weights ``w_k`` of ``method`` with ``steps`` points,
    both float64 ``(steps,)``, so that ``integral_0^1 g(a) da ~ sum_k w_k g(a_k)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if steps < 2 and method in ("riemann_trapezoid", "author"):
        raise ValueError(f"steps must be >= 2 for method={method!r}, got {steps}")
    n = steps
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (1 + nodes)), torch.from_numpy(0.5 * weights)
    # captum builds the Riemann points with a float32 linspace; so do we, to agree with it
    alphas = {
        "riemann_trapezoid": torch.linspace(0, 1, n),
        "author": torch.linspace(0, 1, n),
        "riemann_left": torch.linspace(0, 1 - 1 / n, n),
        "riemann_right": torch.linspace(1 / n, 1, n),
        "riemann_middle": torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n),
    }[method].double()
    weights = torch.full((n,), 1 / n, dtype=torch.float64)
    if method == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
    elif method == "author":
        weights = alphas / n
    return alphas, weights


def _with_end_points(alphas: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, int, int]:
    """Append ``a = 0`` and ``a = 1`` (weight 0) unless present; return their indices."""
    ends = []
    for end in (0.0, 1.0):
        hit = (alphas == end).nonzero()
        if len(hit):
            ends.append(int(hit[0]))
        else:
            alphas = torch.cat([alphas, alphas.new_tensor([end])])
            weights = torch.cat([weights, weights.new_zeros(1)])
            ends.append(len(alphas) - 1)
    return alphas, weights, ends[0], ends[1]


def _select(out: Tensor, target: int | Tensor | None, rows: int) -> Tensor:
    """One scalar per row of ``f``'s output ``(rows,)`` or ``(rows, classes)``."""
    if target is None:
        if out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
            return out.reshape(rows)
        raise ValueError(f"f returns shape {tuple(out.shape)}: pass target= to pick one output "
                         "per example, or make f return (batch,)")
    if out.dim() != 2:
        raise ValueError(f"with target=, f must return (batch, outputs), got {tuple(out.shape)}")
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def _check_target(target: int | Sequence[int] | Tensor | None, batch: int) -> Tensor | None:
    if target is None:
        return None
    target = torch.as_tensor(target, dtype=torch.long)
    if target.dim() == 0:
        return target.expand(batch)
    if target.shape != (batch,):
        raise ValueError(f"target must be an int or have one entry per example ({batch},), "
                         f"got shape {tuple(target.shape)}")
    return target


def _check_baseline(baseline: Tensor | float | None, x: Tensor, what: str) -> Tensor:
    """``baseline`` broadcast to ``x`` (batch, ...): None -> zeros; a number; ``x.shape[1:]``."""
    if baseline is None:
        return torch.zeros_like(x)
    if not isinstance(baseline, Tensor):
        if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            return torch.full_like(x, float(baseline))
        raise ValueError(f"baseline must be None, a number or a tensor, got {type(baseline)}")
    if baseline.shape not in (x.shape, x.shape[1:]):
        raise ValueError(f"baseline must have the shape of the {what} {tuple(x.shape)} or of "
                         f"one example {tuple(x.shape[1:])}, got {tuple(baseline.shape)}")
    return baseline.to(x).expand_as(x)


def _check_batch_size(batch_size: int | str | None, auto: bool = False) -> None:
    if batch_size is None or (auto and batch_size == "auto"):
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        allowed = "a positive int, 'auto' or None" if auto else "a positive int or None"
        raise ValueError(f"batch_size must be {allowed}, got {batch_size!r}")


@contextmanager
def _frozen(f: Any) -> Iterator[None]:
    """While inside, the parameters of ``f`` (if it is a module) do not require grad.

    Attribution needs the gradient at the path points only; with the weights frozen the
    forward pass does not keep the activations their gradients would need.
    """
    params = [p for p in f.parameters() if p.requires_grad] if isinstance(f, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _path_integral(
    forward: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    batch: int,
    steps: int,
    method: str,
    target: Tensor | None,
    batch_size: int | None,
    progress: bool,
) -> tuple[Tensor, Tensor, int, int]:
    """Run the path of ``batch`` examples through ``forward`` in passes of ``batch_size`` points.

    ``forward(example, a)`` gets, for each point of the pass, its example index ``(r,)``
    and path position ``a`` ``(r,)``; it returns ``f``'s output ``(r,)`` or ``(r, outputs)``
    and the points ``(r, *shape)`` (requiring grad) it put on the path. Points are
    step-major (every example at ``a_0``, then at ``a_1``, ...), as in captum.

    Returns ``sum_k w_k grad F(point_k)`` per example ``(batch, *shape)``, ``F`` at every
    point ``(points, batch)`` and the indices of the points ``a = 0`` and ``a = 1``.
    """
    alphas, weights, start, end = _with_end_points(*quadrature(method, steps))
    n_rows = len(alphas) * batch
    chunk = n_rows if batch_size is None else batch_size
    total: Tensor | None = None
    values: Tensor | None = None
    for lo in tqdm(range(0, n_rows, chunk), disable=not progress, desc="integrated gradients"):
        rows = torch.arange(lo, min(lo + chunk, n_rows))
        example, step = rows % batch, rows // batch
        with torch.enable_grad():
            out, points = forward(example, alphas[step])
            out = _select(out, None if target is None else target[example], len(rows))
            (grad,) = torch.autograd.grad(out.sum(), points)
        if total is None:
            total = grad.new_zeros((batch, *grad.shape[1:]))
            values = out.new_empty(n_rows)
        values[rows] = out.detach()
        w = weights[step].to(grad.dtype).view(-1, *[1] * (grad.dim() - 1))
        total.index_add_(0, example, grad * w)
    return total, values.view(len(alphas), batch), start, end


def _interpolate(baseline: Tensor, x: Tensor, a: Tensor) -> Tensor:
    """Points ``baseline + a (x - baseline)`` for rows ``(r, *shape)`` and positions ``(r,)``."""
    a = a.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    return (baseline + a * (x - baseline)).requires_grad_(True)


def _attribution(total: Tensor, x: Tensor, baseline: Tensor, values: Tensor, start: int,
                 end: int) -> Attribution:
    attributions = total * (x - baseline)
    delta = attributions.reshape(len(x), -1).sum(1) - (values[end] - values[start])
    return Attribution(attributions, delta)


def integrated_gradients(
    f: Callable[[Tensor], Tensor],
    inputs: Tensor,
    baseline: Tensor | float | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    progress: bool = False,
) -> Attribution:
    """Integrated gradients of ``f`` at ``inputs`` relative to ``baseline``.

    Args:
        f: maps a batch ``(rows, *features)`` to ``(rows,)``, or to ``(rows, outputs)``
            with ``target`` picking one output per example. Put the model in ``eval()``.
        inputs: ``(batch, *features)`` floating tensor.
        baseline: the reference ``x'``: None (zeros), a number, or a tensor of shape
            ``inputs.shape`` or ``inputs.shape[1:]``.
        steps: number of quadrature points (>= 2 for the trapezoid and author rules).
        method: a quadrature rule of :data:`METHODS` (see the module docstring).
        batch_size: interpolation points per forward/backward pass; None = all
            ``steps * batch`` in one pass (most memory).
        target: output index per example (an int, or ``(batch,)``) when ``f`` returns
            several outputs.
        progress: show a progress bar over the passes.

    Returns:
        :class:`Attribution`: ``attributions`` of ``inputs``' shape and ``delta`` ``(batch,)``
        ``= sum(attributions) - (F(inputs) - F(baseline))``, which goes to 0 (float
        rounding aside) as ``steps`` grows for every rule except ``"author"``.
    """
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point() or inputs.dim() < 1:
        got = (tuple(inputs.shape), inputs.dtype) if isinstance(inputs, Tensor) else type(inputs)
        raise ValueError(f"inputs must be a floating (batch, ...) tensor, got {got}")
    _check_batch_size(batch_size)
    quadrature(method, steps)  # validates method and steps
    base = _check_baseline(baseline, inputs, "inputs")
    tgt = _check_target(target, inputs.shape[0])
    x, base = inputs.detach(), base.detach()

    def forward(example: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        points = _interpolate(base[example], x[example], a)  # (r, *features)
        return f(points), points

    with _frozen(f):
        total, values, start, end = _path_integral(forward, len(x), steps, method, tgt,
                                                   batch_size, progress)
    return _attribution(total, x, base, values, start, end)


class _OnPath:
    """Forward hook that moves a layer's output onto the path: ``h' + a (h - h')``.

    It keeps the layer's true output ``h`` of every example it sees (in ``self.h``) and the
    points it returned (``self.points``, requiring grad) for the backward pass.
    """

    def __init__(self, baseline: Tensor | float | None, batch: int) -> None:
        self.baseline_arg, self.batch = baseline, batch
        self.h: Tensor | None = None
        self.baseline: Tensor | None = None
        self.example = self.a = self.points = None

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Tensor:
        if self.points is not None:
            raise ValueError("layer must run once per forward of f; it ran twice")
        if not isinstance(output, Tensor) or not output.is_floating_point() or output.dim() < 1:
            got = (tuple(output.shape), output.dtype) if isinstance(output, Tensor) else type(output)
            raise ValueError(f"the layer's output must be a floating (batch, ...) tensor, got {got}")
        if output.shape[0] != len(self.example):
            raise ValueError(f"the layer's output must have one row per example of f's batch "
                             f"({len(self.example)}), got shape {tuple(output.shape)}")
        output = output.detach()
        if self.h is None:
            self.h = output.new_zeros((self.batch, *output.shape[1:]))
            self.baseline = _check_baseline(self.baseline_arg, self.h, "layer output").detach()
        self.h[self.example] = output
        self.points = _interpolate(self.baseline[self.example], output, self.a)
        return self.points


def layer_integrated_gradients(
    f: Callable[..., Tensor],
    layer: nn.Module,
    inputs: Tensor | tuple[Any, ...],
    baseline: Tensor | float | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | str | None = "auto",
    *,
    target: int | Sequence[int] | Tensor | None = None,
    reduction: str = "none",
    progress: bool = False,
) -> Attribution:
    """Integrated gradients at the output of ``layer`` inside ``f``, e.g. token embeddings.

    The path runs through the layer's output ``h``: ``h' + a (h - h')``. For a text model,
    ``layer`` is the token-embedding table (``model.embeddings.word`` of
    :class:`kexue.models.Bert`; position and segment embeddings stay as they are), and the
    post's baseline is the zero vector. To use a reference *input* instead (captum's
    ``LayerIntegratedGradients(f, layer).attribute(ids, baselines=pad_ids)``), pass the
    layer's output for it, e.g. ``baseline=model.embeddings.word(pad_ids)``.

    Args:
        f: ``f(*inputs)`` -> ``(batch,)`` or ``(batch, outputs)`` (with ``target``). The
            layer must run exactly once per call of ``f``.
        layer: the module whose output is attributed, ``(batch, ...)``.
        inputs: a tensor or a tuple of ``f``'s arguments; tensors whose first dimension is
            the batch (ids, attention masks, ...) are repeated for each interpolation point.
        baseline: the layer output at the reference: None (zeros), a number, or a tensor of
            the layer output's shape, with or without the batch dimension.
        batch_size: interpolation points per pass; ``"auto"`` (default): about
            :data:`AUTO_TOKENS` positions per pass, i.e. ``AUTO_TOKENS // seq`` points with
            ``seq`` the second dimension of the first batched input (the token count of
            ``input_ids``); None: all points in one pass.
        steps, method, target, progress: as in :func:`integrated_gradients`.
        reduction: ``"none"`` (the layer output's shape, e.g. ``(batch, seq, hidden)``),
            ``"sum"`` (sum over the last axis: per token, signed; sums to ``F(x) - F(x')``)
            or ``"norm"`` (L2 norm over the last axis, the post's token scores).

    Returns:
        :class:`Attribution`; ``delta`` is computed from the unreduced attributions.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module, got {type(layer).__name__}")
    _check_batch_size(batch_size, auto=True)
    quadrature(method, steps)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    batched = [a for a in args if isinstance(a, Tensor) and a.dim() > 0]
    if not batched:
        raise ValueError("inputs must contain at least one (batch, ...) tensor")
    batch = batched[0].shape[0]
    if batch_size == "auto":
        seq = batched[0].shape[1] if batched[0].dim() > 1 else 1
        batch_size = max(1, AUTO_TOKENS // max(seq, 1))
    tgt = _check_target(target, batch)
    on_path = _OnPath(baseline, batch)

    def forward(example: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        repeated = tuple(arg[example] if isinstance(arg, Tensor) and arg.dim() > 0
                         and arg.shape[0] == batch else arg for arg in args)
        on_path.example, on_path.a, on_path.points = example, a, None
        handle = layer.register_forward_hook(on_path)
        try:
            out = f(*repeated)
        finally:
            handle.remove()
        if on_path.points is None:
            raise ValueError("layer did not run in the forward of f; pass a module that f calls")
        return out, on_path.points

    with _frozen(f):
        total, values, start, end = _path_integral(forward, batch, steps, method, tgt,
                                                   batch_size, progress)
    result = _attribution(total, on_path.h, on_path.baseline, values, start, end)
    attributions = result.attributions
    if reduction == "sum":
        attributions = attributions.sum(-1)
    elif reduction == "norm":
        attributions = attributions.norm(dim=-1)
    return Attribution(attributions, result.delta)
