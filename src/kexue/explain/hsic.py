"""HSIC, the Hilbert-Schmidt independence criterion, and its permutation test.

Source: HSIC简介：一个有意思的判断相关性的思路 (2019-08-26, https://kexue.fm/archives/6910),
after Gretton et al., "Measuring Statistical Dependence with Hilbert-Schmidt Norms" (2005).

``x`` and ``y`` are independent iff ``Cov[f(x), g(y)] = 0`` for all functions ``f, g``; summing
the squared covariances over the eigenfunctions of kernels ``K_X``, ``K_Y`` gives::

    HSIC = E[K_X(x1, x2) K_Y(y1, y2)] + E[K_X(x1, x2)] E[K_Y(y1, y2)]
           - 2 E_{x1, y1}[E_{x2}[K_X(x1, x2)] E_{y2}[K_Y(y1, y2)]]

which is 0 iff x and y are independent (for characteristic kernels such as the Gaussian).
From ``n`` pairs, with kernel matrices ``K``, ``L`` ``(n, n)`` and ``H = I - 11^T / n``:

- ``"biased"``: ``tr(K H L H) / n^2`` (the post's ``tr(K J L J) / (n-1)^2`` rescaled);
- ``"unbiased"`` (Song et al., 2012; needs ``n >= 4``), with ``K~``, ``L~`` the kernel
  matrices with zeroed diagonals::

      [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2 / (n-2) 1^T K~ L~ 1] / (n (n-3))

  whose mean over independent samples is exactly 0.

Both are ``c * sum(A * L)`` with ``A`` the centred ``K`` (``H K H``, or the U-centred ``K~``
for the unbiased estimator) and ``c = 1/n^2`` or ``1/(n(n-3))``, so the permutation test
centres once and scores every permutation ``pi`` as ``c * sum_ij A_ij L_pi(i)pi(j)``: a batch
of permutations is one gather and one matrix-vector product.

The Gaussian kernel is ``exp(-||a - b||^2 / (2 sigma^2))`` with ``sigma`` the median of the
pairwise distances by default (as in hyppo; if that median is 0, sigma = 1). The post writes
``exp(-||a - b||^2 / sigma^2)``, i.e. its sigma is ``sqrt(2)`` times this one. With
``normalized=True``, ``hsic`` returns ``HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y))`` (centred
kernel alignment for the biased estimator), a number in ``[-1, 1]``: hyppo's ``Hsic`` statistic
is this for ``"unbiased"``, and its square root for ``"biased"``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["HSICTest", "hsic", "hsic_test"]

KERNELS = ("gaussian", "linear")
ESTIMATORS = ("biased", "unbiased")
# permutations scored per batch: keeps a batch's (permutations, n, n) gather near 2**26 entries
BATCH_ENTRIES = 2**26
# residual trace / trace at which a pivoted Cholesky factor is exact to rounding level
RANK_TOLERANCE = {torch.float64: 1e-12}


class HSICTest(NamedTuple):
    """Result of :func:`hsic_test`."""

    statistic: Tensor  # () the estimator on the observed pairing
    pvalue: float  # (1 + #{null >= statistic}) / (1 + permutations)
    null: Tensor  # (permutations,) the estimator on permuted pairings


def _as_samples(a: Tensor, name: str) -> Tensor:
    """``(n,)`` or ``(n, d)`` floating -> ``(n, d)``."""
    a = torch.as_tensor(a)
    if not a.is_floating_point():
        a = a.to(torch.get_default_dtype())
    if a.dim() == 1:
        a = a.unsqueeze(1)
    if a.dim() != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be (n,) or (n, features) with n > 0, got {tuple(a.shape)}")
    return a


def _pair(value: object, name: str) -> tuple[object, object]:
    """One setting for both variables, or an ``(x_setting, y_setting)`` tuple."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be one value or an (x, y) pair, got {value!r}")
        return value
    return value, value


def _squared_distances(a: Tensor) -> Tensor:
    """``||a_i - a_j||^2`` ``(n, n)`` of samples ``a`` ``(n, d)`` (in one new buffer)."""
    if a.shape[1] == 1:
        d = a - a.T
        return d.square() if d.requires_grad else d.square_()
    sq = a.square().sum(1)
    return torch.addmm(sq[:, None] + sq[None, :], a, a.T, alpha=-2).clamp_min(0)


def _median(v: Tensor) -> Tensor:
    """Exact median of a 1-D tensor (the mean of the two middle values for an even count,
    as ``numpy.median``).

    Selection over millions of distances is the slow part of the median bandwidth, so a
    sorted sample of 2**16 values brackets the middle ranks, one pass counts the values
    below the bracket and keeps those inside it (a few percent), and only those are
    searched; if the bracket misses (it almost never does), the search runs on ``v``.
    """
    m = v.numel()
    ranks = ((m - 1) // 2, m // 2)  # 0-based ranks of the middle value(s)
    if m > 2**20:
        generator = torch.Generator().manual_seed(0)
        sample = v[torch.randint(m, (2**16,), generator=generator)].sort().values
        lo = sample[max(0, 2**15 - 2**11)]  # +-2**11 sample ranks: > 10 standard deviations
        hi = sample[min(2**16 - 1, 2**15 + 2**11)]
        below = int((v < lo).sum())
        inside = v[(v >= lo) & (v <= hi)]
        if below <= ranks[0] and ranks[1] < below + inside.numel():
            v, ranks = inside, (ranks[0] - below, ranks[1] - below)
    middle = [v.kthvalue(r + 1).values for r in sorted(set(ranks))]
    return sum(middle) / len(middle)


def _kernel(a: Tensor, kernel: object, bandwidth: object, name: str) -> Tensor:
    """Kernel matrix ``(n, n)`` of the samples ``a`` ``(n, d)``."""
    if kernel == "linear":
        return a @ a.T
    if kernel != "gaussian":
        raise ValueError(f"kernel for {name} must be one of {KERNELS}, got {kernel!r}")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth for {name} must be 'median' or a positive number, "
                             f"got {bandwidth!r}")
        sigma = _median(torch.pdist(a.detach()))  # the n (n-1) / 2 pairwise distances
        d2 = _squared_distances(a)
        sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))  # hyppo's fallback
    elif isinstance(bandwidth, (int, float, Tensor)) and not isinstance(bandwidth, bool) \
            and torch.as_tensor(bandwidth).numel() == 1 and float(bandwidth) > 0:
        d2 = _squared_distances(a)
        sigma = torch.as_tensor(bandwidth, dtype=a.dtype)
    else:
        raise ValueError(f"bandwidth for {name} must be 'median' or a positive number, "
                         f"got {bandwidth!r}")
    if d2.requires_grad:
        return (d2 * (-0.5 / sigma**2)).exp()
    return d2.mul_(-0.5 / sigma**2).exp_()  # in place: n^2 entries, no second buffer


def _pivoted_cholesky(k: Tensor, max_rank: int) -> Tensor | None:
    """``F`` ``(n, r)`` with ``K ~ F F^T`` to rounding level, or None if ``r > max_rank``.

    Greedy pivoted (incomplete) Cholesky of the positive semi-definite ``K``: stops when
    the residual trace is below ``RANK_TOLERANCE`` of the trace, where ``sum(R * M)`` for
    the residual ``R`` and any ``M`` with entries <= 1 is below ``n * tr(R)``.
    """
    n = k.shape[0]
    residual = k.diagonal().clone()
    stop = RANK_TOLERANCE.get(k.dtype, 1e-6) * residual.sum().clamp_min(1e-300)
    f = k.new_zeros(n, min(max_rank, n))
    for j in range(f.shape[1] + 1):
        if residual.clamp_min(0).sum() <= stop:
            return f[:, :j]
        if j == f.shape[1]:
            return None
        i = int(residual.argmax())
        f[:, j] = (k[:, i] - f[:, :j] @ f[i, :j]) / residual[i].sqrt()
        residual -= f[:, j].square()
    return None


def _pair_sums(k: Tensor, l: Tensor, orders: Tensor, batch_size: int | None) -> Tensor:
    """``sum_ij K_ij L_pi(i)pi(j)`` for each row ``pi`` of ``orders`` ``(P, n)``."""
    n = k.shape[0]
    max_rank = max(1, min(64, n // 8))
    f = _pivoted_cholesky(k, max_rank)
    g = _pivoted_cholesky(l, max_rank) if f is not None else None
    if f is not None and g is not None:  # a batch of small traces: ||F^T G[pi]||_F^2
        return torch.cat([torch.matmul(f.T, g[p]).square().sum((1, 2))
                          for p in orders.split(batch_size or 1024)])
    k_flat = k.reshape(-1)
    chunk = batch_size or max(1, BATCH_ENTRIES // (n * n))
    return torch.cat([l[p[:, :, None], p[:, None, :]].reshape(len(p), -1) @ k_flat
                      for p in orders.split(chunk)])


def _estimate(pair_sum: Tensor, k: Tensor, l: Tensor, orders: Tensor | None,
              estimator: str) -> Tensor:
    """The estimator for pairings ``(x_i, y_pi(i))`` from ``pair_sum = sum_ij K_ij L_pi(i)pi(j)``.

    Biased: ``[S - 2/n (K1)^T (L1)_pi + 1^T K 1 1^T L 1 / n^2] / n^2``; unbiased (zeroed
    diagonals ``~``): ``[S - sum_i K_ii L_pi(i)pi(i) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2))
    - 2/(n-2) (K~1)^T (L~1)_pi] / (n(n-3))``. ``orders`` None is the observed pairing.
    """
    n = k.shape[0]
    k_rows, l_rows = k.sum(1), l.sum(1)  # (n,)
    if estimator == "biased":
        l_rows = l_rows if orders is None else l_rows[orders]  # (P, n)
        return (pair_sum - 2 / n * (l_rows @ k_rows) + k_rows.sum() * l_rows.sum(-1) / n**2) / n**2
    k_diag, l_diag = k.diagonal(), l.diagonal()
    k_rows, l_rows = k_rows - k_diag, l_rows - l_diag
    if orders is not None:
        l_diag, l_rows = l_diag[orders], l_rows[orders]  # (P, n)
    total = (pair_sum - l_diag @ k_diag + k_rows.sum() * l_rows.sum(-1) / ((n - 1) * (n - 2))
             - 2 / (n - 2) * (l_rows @ k_rows))
    return total / (n * (n - 3))


def _kernels(x: Tensor, y: Tensor, kernel: object, bandwidth: object,
             estimator: str) -> tuple[Tensor, Tensor]:
    """Validated kernel matrices ``(n, n)`` of ``x`` and ``y``."""
    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and "
                         f"{y.shape[0]}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    least = 4 if estimator == "unbiased" else 2
    if n < least:
        raise ValueError(f"the {estimator} estimator needs n >= {least} samples, got {n}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    (kx, ky), (bx, by) = _pair(kernel, "kernel"), _pair(bandwidth, "bandwidth")
    return _kernel(x.to(dtype), kx, bx, "x"), _kernel(y.to(dtype), ky, by, "y")


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return a.reshape(-1) @ b.reshape(-1)


def hsic(
    x: Tensor,
    y: Tensor,
    kernel: str | tuple[str, str] = "gaussian",
    bandwidth: str | float | tuple[str | float, str | float] = "median",
    estimator: str = "biased",
    *,
    normalized: bool = False,
) -> Tensor:
    """HSIC between paired samples ``x`` ``(n,)`` / ``(n, p)`` and ``y`` ``(n,)`` / ``(n, q)``.

    Args:
        kernel: ``"gaussian"`` or ``"linear"`` (``a . b``; on one-hot labels, the delta
            kernel), or an ``(x_kernel, y_kernel)`` pair.
        bandwidth: sigma of the Gaussian kernel: ``"median"`` (median pairwise distance) or
            a positive number, or an ``(x, y)`` pair; ignored by the linear kernel.
        estimator: ``"biased"`` (``tr(KHLH)/n^2``) or ``"unbiased"`` (Song et al., n >= 4).
        normalized: divide by ``sqrt(HSIC(x, x) HSIC(y, y))``.

    Returns:
        A 0-dim tensor in the inputs' (promoted) dtype, differentiable with respect to ``x``
        and ``y`` for a fixed bandwidth.
    """
    k, l = _kernels(x, y, kernel, bandwidth, estimator)
    value = _estimate(_dot(k, l), k, l, None, estimator)
    if not normalized:
        return value
    xx = _estimate(_dot(k, k), k, k, None, estimator)
    yy = _estimate(_dot(l, l), l, l, None, estimator)
    for name, v in (("x", xx), ("y", yy)):
        if not v > 0:
            raise ValueError(f"normalized=True needs HSIC({name}, {name}) > 0, got {v.item():.3g} "
                             f"({name} is constant, or too few samples for the estimator)")
    return value / (xx * yy).sqrt()


def hsic_test(
    x: Tensor,
    y: Tensor,
    permutations: int = 1000,
    kernel: str | tuple[str, str] = "gaussian",
    bandwidth: str | float | tuple[str | float, str | float] = "median",
    estimator: str = "biased",
    *,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> HSICTest:
    """Permutation test of independence with the HSIC statistic.

    The null distribution is the estimator on ``permutations`` random re-pairings
    ``(x_i, y_pi(i))``; the p-value is ``(1 + #{null >= statistic}) / (1 + permutations)``
    (as in hyppo). Kernels and bandwidths are computed once, on the observed samples
    (permuting ``y`` changes neither). When both kernel matrices have a low numerical rank
    (smooth kernels on low-dimensional data: a pivoted Cholesky ``K ~ F F^T`` to rounding
    level with at most ``min(64, n/8)`` columns), ``sum_ij K_ij L_pi(i)pi(j)`` is
    ``||F^T G[pi]||^2``, a batch of small matrix products; otherwise each permutation
    gathers ``L[pi][:, pi]`` (``n^2`` entries).

    Args:
        permutations: number of random permutations (>= 1).
        kernel, bandwidth, estimator: as in :func:`hsic`.
        generator: random generator for the permutations (reproducible tests).
        batch_size: permutations scored per batch; None keeps a batch near 2**26 gathered
            entries.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be a positive int, got {permutations!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    k, l = _kernels(x, y, kernel, bandwidth, estimator)
    n = k.shape[0]
    orders = torch.rand(permutations, n, generator=generator).argsort(dim=1)  # (perms, n)
    orders = torch.cat([torch.arange(n)[None], orders])  # row 0: the observed pairing
    with torch.no_grad():
        scores = _estimate(_pair_sums(k, l, orders, batch_size), k, l, orders,
                           estimator)
    statistic, null = scores[0], scores[1:]
    pvalue = (1 + int((null >= statistic).sum())) / (1 + permutations)
    return HSICTest(statistic, pvalue, null)
