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

Both need only ``S = sum_ij K_ij L_ij``, the row sums and the diagonals (see
:func:`_estimate`). Re-pairing ``y`` by a permutation ``pi`` changes ``S`` into
``sum_ij K_ij L_pi(i)pi(j)`` and permutes ``L``'s row sums and diagonal, so the permutation
test scores a whole batch of permutations at once. When a kernel matrix has a low numerical
rank (smooth kernels on low-dimensional data), a pivoted Cholesky factor ``K ~ F F^T``, exact
to rounding level, replaces it: then ``S = ||F^T G||_F^2`` costs ``O(n r^2)`` instead of
``O(n^2)`` (for every permutation, ``||F^T G[pi]||^2``: a batch of small matrix products).
When only one kernel has a factor, a batch of permutations is one matrix product of the
other kernel with the permuted factors (``sum_c G[pi]_c^T K G[pi]_c``); when neither has
one, the ``(n, n)`` matrices are formed and a permutation is a gather ``L[pi][:, pi]``.

The Gaussian kernel is ``exp(-||a - b||^2 / (2 sigma^2))`` with ``sigma`` the median of the
pairwise distances by default (as in hyppo; if that median is 0, sigma = 1). The post writes
``exp(-||a - b||^2 / sigma^2)``, i.e. its sigma is ``sqrt(2)`` times this one. With
``normalized=True``, ``hsic`` returns ``HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y))`` (centred
kernel alignment for the biased estimator), a number in ``[-1, 1]``: hyppo's ``Hsic`` statistic
is this for ``"unbiased"``, and its square root for ``"biased"`` (hyppo applies the median
bandwidth of ``x`` to both kernels: pass ``bandwidth=("median", sigma_x)`` to match it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["HSICTest", "hsic", "hsic_test"]

KERNELS = ("gaussian", "linear")
ESTIMATORS = ("biased", "unbiased")
# permutations scored per batch on the dense path: a batch's (permutations, n, n) gather
# holds about 2**22 entries (32 MB in float64), which keeps it in the fast part of memory
BATCH_ENTRIES = 2**22
# residual trace / trace at which a pivoted Cholesky factor is exact to rounding level
RANK_TOLERANCE = {torch.float64: 1e-12}
LOW_RANK_FROM = 256  # below this many samples the (n, n) matrices are cheap enough


class HSICTest(NamedTuple):
    """Result of :func:`hsic_test`."""

    statistic: Tensor  # () the estimator on the observed pairing
    pvalue: float  # (1 + #{null >= statistic}) / (1 + permutations)
    null: Tensor  # (permutations,) the estimator on permuted pairings


@dataclass
class Gram:
    """One variable's kernel matrix ``K`` ``(n, n)``, or a factor ``F`` ``(n, r)`` with
    ``K ~ F F^T``; with its row sums ``K 1`` and diagonal, ``(n,)`` each."""

    matrix: Tensor | None
    factor: Tensor | None
    rows: Tensor
    diag: Tensor

    def dense(self) -> Tensor:
        return self.matrix if self.matrix is not None else self.factor @ self.factor.T


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


def _middle(v: Tensor, ranks: tuple[int, int]) -> Tensor:
    """Mean of the order statistics of ``v`` at 0-based ``ranks`` ``(r, r)`` or ``(r, r + 1)``:
    one selection, then the next value up (a masked minimum, cheaper than a second one)."""
    low = v.kthvalue(ranks[0] + 1).values
    if ranks[1] == ranks[0] or int((v <= low).sum()) > ranks[1]:
        return low
    return (low + torch.where(v > low, v, torch.inf).min()) / 2


def _median(v: Tensor) -> Tensor:
    """Exact median of a 1-D tensor (the mean of the two middle values for an even count,
    as ``numpy.median``).

    Selection over millions of distances is slow, so a sorted sample of 2**16 values
    brackets the middle ranks, one pass counts the values below the bracket and keeps those
    inside it (a few percent), and only those are searched; if the bracket misses (it
    almost never does), the search runs on ``v``.
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
    return _middle(v, ranks)


def _middle_gaps(s: Tensor) -> Tensor:
    """Median of the gaps ``s_j - s_i`` (``i < j``) of sorted values ``s`` ``(n,)``.

    The ``n (n-1) / 2`` gaps are never all formed: a sorted sample of 2**14 random gaps
    brackets the middle ranks (+-5 standard deviations), ``searchsorted`` counts the gaps
    below the bracket and finds, for each ``i``, the ``j`` whose gaps fall inside it (a few
    percent of all), and those alone are searched. If the bracket misses, it is widened to
    every gap.
    """
    n = len(s)
    pairs = n * (n - 1) // 2
    ranks = ((pairs - 1) // 2, pairs // 2)  # 0-based ranks of the middle gap(s)
    first = torch.arange(1, n + 1)  # gaps of i start at j = i + 1
    generator = torch.Generator().manual_seed(0)
    size = 2**14
    i, j = torch.randint(n, (2, size), generator=generator)
    sample = (s[i] - s[j]).abs()[i != j].sort().values
    margin = 5 * (0.25 * len(sample)) ** 0.5 + 1
    low = int(len(sample) * ranks[0] / pairs - margin)
    high = int(len(sample) * ranks[1] / pairs + margin)
    lo = sample[low] if low >= 0 else s.new_tensor(-1.0)
    hi = sample[high] if high < len(sample) else s[-1] - s[0]
    starts = torch.maximum(torch.searchsorted(s, s + lo, right=True), first)  # first gap > lo
    ends = torch.maximum(torch.searchsorted(s, s + hi, right=True), starts)  # past gaps <= hi
    below = int((starts - first).sum())
    if not (below <= ranks[0] and ranks[1] < int((ends - first).sum())):
        starts, ends, below = first.clamp_max(n), torch.full_like(first, n), 0  # every gap
    counts = ends - starts
    rows = torch.repeat_interleave(torch.arange(n), counts)  # i of each candidate gap
    offsets = torch.arange(len(rows)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return _middle(s[starts[rows] + offsets] - s[rows], (ranks[0] - below, ranks[1] - below))


def _median_distance(a: Tensor) -> Tensor:
    """Median of the ``n (n-1) / 2`` pairwise distances of the samples ``a`` ``(n, d)``:
    from the sorted values for 1-d samples (``O(n log n)`` plus a few percent of the
    gaps), else from ``torch.pdist``."""
    a = a.detach()
    if a.shape[1] > 1:
        return _median(torch.pdist(a))
    return _middle_gaps(a.reshape(-1).sort().values)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||^2`` ``(n, m)`` of samples ``a`` ``(n, d)`` and ``b`` ``(m, d)``."""
    if a.shape[1] == 1:
        d = a - b.T
        return d.square() if d.requires_grad else d.square_()
    return torch.addmm((a.square().sum(1)[:, None] + b.square().sum(1)[None, :]), a, b.T,
                       alpha=-2).clamp_min(0)


def _sigma(a: Tensor, bandwidth: object, name: str) -> Tensor:
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth for {name} must be 'median' or a positive number, "
                             f"got {bandwidth!r}")
        sigma = _median_distance(a)
        return torch.where(sigma > 0, sigma, torch.ones_like(sigma))  # hyppo's fallback
    if isinstance(bandwidth, (int, float, Tensor)) and not isinstance(bandwidth, bool) \
            and torch.as_tensor(bandwidth).numel() == 1 and float(bandwidth) > 0:
        return torch.as_tensor(bandwidth, dtype=a.dtype)
    raise ValueError(f"bandwidth for {name} must be 'median' or a positive number, "
                     f"got {bandwidth!r}")


def _gaussian(a: Tensor, b: Tensor, sigma: Tensor) -> Tensor:
    d2 = _squared_distances(a, b)
    if d2.requires_grad:
        return (d2 * (-0.5 / sigma**2)).exp()
    return d2.mul_(-0.5 / sigma**2).exp_()  # in place: one (n, m) buffer


def _pivoted_cholesky(columns: Callable[[int], Tensor], diag: Tensor,
                      max_rank: int) -> Tensor | None:
    """``F`` ``(n, r)`` with ``K ~ F F^T`` to rounding level, or None if ``r > max_rank``.

    Greedy pivoted (incomplete) Cholesky of the positive semi-definite ``K`` given its
    diagonal and a way to compute a column; stops when the residual trace is below
    ``RANK_TOLERANCE`` of the trace (``|sum(R * M)| <= n tr(R)`` for the residual ``R``
    and any ``M`` with entries in ``[-1, 1]``).
    """
    n = len(diag)
    residual = diag.clone()
    stop = RANK_TOLERANCE.get(diag.dtype, 1e-6) * residual.sum().clamp_min(1e-300)
    f = diag.new_zeros(n, min(max_rank, n))
    for j in range(f.shape[1] + 1):
        if residual.clamp_min(0).sum() <= stop:
            return f[:, :j]
        if j == f.shape[1]:
            return None
        i = int(residual.argmax())
        f[:, j] = (columns(i) - f[:, :j] @ f[i, :j]) / residual[i].sqrt()
        residual -= f[:, j].square()
    return None


def _gram(a: Tensor, kernel: object, bandwidth: object, name: str, low_rank: bool) -> Gram:
    """The kernel of samples ``a`` ``(n, d)``: a low-rank factor when ``low_rank`` and one
    of at most ``min(64, n/8)`` columns reaches rounding level, else the matrix."""
    n = a.shape[0]
    max_rank = min(64, n // 8)
    low_rank = low_rank and n >= LOW_RANK_FROM
    if kernel == "linear":
        if low_rank and a.shape[1] <= max_rank:
            return Gram(None, a, a @ a.sum(0), a.square().sum(1))
        k = a @ a.T
        return Gram(k, None, k.sum(1), k.diagonal())
    if kernel != "gaussian":
        raise ValueError(f"kernel for {name} must be one of {KERNELS}, got {kernel!r}")
    sigma = _sigma(a, bandwidth, name)
    ones = a.new_ones(n)
    if low_rank:
        f = _pivoted_cholesky(lambda i: _gaussian(a, a[i:i + 1], sigma)[:, 0], ones, max_rank)
        if f is not None:
            return Gram(None, f, f @ f.sum(0), ones)
    k = _gaussian(a, a, sigma)
    return Gram(k, None, k.sum(1), ones)


def _grams(x: Tensor, y: Tensor, kernel: object, bandwidth: object, estimator: str,
           low_rank: bool) -> tuple[Gram, Gram]:
    """Validated kernels of ``x`` and ``y``."""
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
    return (_gram(x.to(dtype), kx, bx, "x", low_rank), _gram(y.to(dtype), ky, by, "y", low_rank))


def _pair_sum(k: Gram, l: Gram) -> Tensor:
    """``sum_ij K_ij L_ij``."""
    if k.factor is not None and l.factor is not None:
        return (k.factor.T @ l.factor).square().sum()
    return k.dense().reshape(-1) @ l.dense().reshape(-1)


def _permuted_pair_sums(k: Gram, l: Gram, orders: Tensor, batch_size: int | None) -> Tensor:
    """``sum_ij K_ij L_pi(i)pi(j)`` for each row ``pi`` of ``orders`` ``(P, n)``."""
    n = orders.shape[1]
    if k.factor is not None and l.factor is not None:  # batched traces ||F^T G[pi]||^2
        f, g = k.factor, l.factor
        chunk = batch_size or max(1, BATCH_ENTRIES // (n * max(1, g.shape[1])))
        return torch.cat([torch.matmul(f.T, g[p]).square().sum((1, 2))
                          for p in orders.split(chunk)])
    if k.factor is not None or l.factor is not None:
        return _half_factored_sums(k, l, orders, batch_size)
    k_flat, l_dense = k.dense().reshape(-1), l.dense()
    chunk = batch_size or max(1, BATCH_ENTRIES // (n * n))
    sums = []
    for p in orders.split(chunk):  # L[pi] (whole rows), then each row's columns by pi
        permuted = torch.gather(l_dense[p], 2, p[:, None, :].expand(len(p), n, n))
        sums.append(permuted.reshape(len(p), -1) @ k_flat)
    return torch.cat(sums)


def _half_factored_sums(k: Gram, l: Gram, orders: Tensor, batch_size: int | None) -> Tensor:
    """The permuted pair sums when one kernel is a factor and the other a matrix.

    With ``L = G G^T``: ``S_pi = sum_c V_c^T K V_c`` for ``V = G[pi]``, so a batch of
    permutations is one matrix product ``K [V_1 ... V_P]`` (no ``(n, n)`` gather). With
    ``K = F F^T`` the same holds for ``L`` and ``V = F[pi^-1]``.
    """
    if l.factor is not None:
        dense, factor, index = k.dense(), l.factor, orders
    else:
        dense, factor, index = l.dense(), k.factor, orders.argsort(dim=1)
    n, rank = factor.shape
    chunk = batch_size or max(1, BATCH_ENTRIES // (n * max(1, rank)))
    sums = []
    for p in index.split(chunk):
        v = factor[p].transpose(0, 1).reshape(n, len(p) * rank)  # (n, perms * rank)
        sums.append((v * (dense @ v)).reshape(n, len(p), rank).sum((0, 2)))
    return torch.cat(sums)


def _estimate(pair_sum: Tensor, k: Gram, l: Gram, estimator: str,
              orders: Tensor | None = None) -> Tensor:
    """The estimator for the pairings ``(x_i, y_pi(i))`` from
    ``S = sum_ij K_ij L_pi(i)pi(j)`` (``orders`` None: the observed pairing).

    Biased: ``[S - 2/n (K1)^T (L1)_pi + 1^T K 1 1^T L 1 / n^2] / n^2``; unbiased (zeroed
    diagonals ``~``): ``[S - sum_i K_ii L_pi(i)pi(i) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2))
    - 2/(n-2) (K~1)^T (L~1)_pi] / (n(n-3))``.
    """
    n = len(k.rows)
    k_rows, l_rows, k_diag, l_diag = k.rows, l.rows, k.diag, l.diag
    if orders is not None:
        l_rows, l_diag = l_rows[orders], l_diag[orders]  # (P, n)
    if estimator == "biased":
        return (pair_sum - 2 / n * (l_rows @ k_rows) + k_rows.sum() * l_rows.sum(-1) / n**2) / n**2
    k_rows, l_rows = k_rows - k_diag, l_rows - l_diag
    total = (pair_sum - l_diag @ k_diag + k_rows.sum() * l_rows.sum(-1) / ((n - 1) * (n - 2))
             - 2 / (n - 2) * (l_rows @ k_rows))
    return total / (n * (n - 3))


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
        A 0-dim tensor in the inputs' (promoted) dtype. It is differentiable with respect
        to ``x`` and ``y`` (for a fixed bandwidth); the low-rank shortcut is used only when
        no gradient is being recorded.
    """
    recording = torch.is_grad_enabled() and any(
        isinstance(a, Tensor) and a.requires_grad for a in (x, y))
    k, l = _grams(x, y, kernel, bandwidth, estimator, low_rank=not recording)
    value = _estimate(_pair_sum(k, l), k, l, estimator)
    if not normalized:
        return value
    xx = _estimate(_pair_sum(k, k), k, k, estimator)
    yy = _estimate(_pair_sum(l, l), l, l, estimator)
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
    (permuting ``y`` changes neither), and the permutations are scored in batches (see the
    module docstring).

    Args:
        permutations: number of random permutations (>= 1).
        kernel, bandwidth, estimator: as in :func:`hsic`.
        generator: random generator for the permutations (reproducible tests).
        batch_size: permutations scored per batch; None keeps a batch near 2**22 gathered
            entries. Float32 inputs halve the memory traffic of the dense path.
    """
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be a positive int, got {permutations!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    with torch.no_grad():
        k, l = _grams(x, y, kernel, bandwidth, estimator, low_rank=True)
        n = len(k.rows)
        orders = torch.rand(permutations, n, generator=generator).argsort(dim=1)  # (perms, n)
        orders = torch.cat([torch.arange(n)[None], orders])  # row 0: the observed pairing
        scores = _estimate(_permuted_pair_sums(k, l, orders, batch_size), k, l, estimator,
                           orders)
    statistic, null = scores[0], scores[1:]
    pvalue = (1 + int((null >= statistic).sum())) / (1 + permutations)
    return HSICTest(statistic, pvalue, null)
