"""BERT-whitening: map sentence vectors to zero mean and identity covariance, optionally
keeping only the leading components.

Source: Su Jianlin, "你可能不需要BERT-flow：一个线性变换媲美BERT-flow" (You may not need
BERT-flow: a linear transformation rivals BERT-flow), 2021-01-11,
https://kexue.fm/archives/8069; paper: Su, Cao, Liu, Ou, "Whitening Sentence Representations
for Better Semantics and Faster Retrieval", arXiv:2103.15316.

For row vectors ``x_i`` (i = 1..N) with mean ``mu`` and covariance ``Sigma = U diag(s) U^T``
(SVD, ``s`` descending):

    x~ = (x - mu) U diag(1 / sqrt(s))[:, :k]

then callers L2-normalise and score by cosine. Keeping ``k < d`` columns is PCA whitening
("whitening-k"). Fitting uses float64 throughout; the streaming statistics of the post,

    mu_{n+1}    = n/(n+1) mu_n + x_{n+1}/(n+1)
    Sigma_{n+1} = n/(n+1) (Sigma_n + mu_n^T mu_n) + x_{n+1}^T x_{n+1}/(n+1) - mu_{n+1}^T mu_{n+1}

are accumulated here chunk by chunk in the equivalent, better-conditioned form of Chan et
al.'s pairwise update (a running sum of centred cross-products), so a corpus larger than
memory can be fitted with :meth:`Whitening.partial_fit`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["Whitening"]


def _as_float64(x: np.ndarray | Tensor, name: str = "x") -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected {name} of shape (n_samples, dim), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"expected at least one row in {name}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({int((~np.isfinite(x)).sum())} entries)")
    return x


class Whitening:
    """Fit ``mu`` and ``W = U diag(1/sqrt(s))[:, :k]``, then ``transform(x) = (x - mu) W``.

    Args:
        n_components: keep the first ``k`` whitened components (None = all ``d``).
        eps: relative floor of the spectrum: singular values below ``eps * s_max`` are raised
            to it before the inverse square root, so a singular covariance (N < d, constant
            dimensions) gives large but finite scales instead of inf/NaN, while a
            well-conditioned spectrum is used exactly. ``rank_`` counts the values above it.
        ddof: delta degrees of freedom of the covariance: 1 = ``np.cov`` (the author's code),
            0 = the post's 1/N. It only rescales all outputs by one constant, which the
            cosine ignores.

    Attributes (after fitting): ``mean_`` (d,), ``covariance_`` (d, d), ``singular_values_``
    (d,) descending, ``components_`` = U (d, d), ``kernel_`` = W (d, k), ``n_samples_seen_``,
    ``rank_`` (number of singular values > eps * s_max). Arrays are float64 numpy.
    ``components_``, ``singular_values_`` and ``rank_`` exist once the kernel is solved.
    """

    def __init__(self, n_components: int | None = None, eps: float = 1e-10, ddof: int = 1) -> None:
        if n_components is not None and n_components < 1:
            raise ValueError(f"expected n_components >= 1 or None, got {n_components}")
        if not 0 < eps < 1:
            raise ValueError(f"expected 0 < eps < 1 (a fraction of the largest singular value), got {eps}")
        if ddof not in (0, 1):
            raise ValueError(f"expected ddof 0 or 1, got {ddof}")
        self.n_components = n_components
        self.eps = eps
        self.ddof = ddof
        self._reset()

    def _reset(self) -> None:
        self.n_samples_seen_ = 0
        self._mean: np.ndarray | None = None  # (d,)
        self._scatter: np.ndarray | None = None  # (d, d): sum_i (x_i - mu)^T (x_i - mu)
        self._kernel: np.ndarray | None = None  # (d, k), solved lazily

    # ------------------------------------------------------------------ statistics

    def partial_fit(self, x: np.ndarray | Tensor) -> Whitening:
        """Add a chunk (n, d) to the running mean and covariance.

        Memory is O(d^2) whatever the number of chunks; the SVD is deferred to the first
        :meth:`transform` (or ``kernel_`` access) after the last chunk.
        """
        self._accumulate(x)
        self._kernel = None
        if self.n_components is not None and self.n_components > self._mean.shape[0]:
            raise ValueError(
                f"n_components={self.n_components} is larger than the dimension {self._mean.shape[0]}"
            )
        return self

    def _accumulate(self, x: np.ndarray | Tensor) -> None:
        x = _as_float64(x)
        n, d = x.shape
        if self._mean is not None and d != self._mean.shape[0]:
            raise ValueError(f"expected chunks of dimension {self._mean.shape[0]}, got {d}")
        mean = x.mean(axis=0)  # (d,)
        centred = x - mean
        scatter = centred.T @ centred  # (d, d)
        if self._mean is None:
            self._mean, self._scatter, self.n_samples_seen_ = mean, scatter, n
            return
        # Chan, Golub & LeVeque: merge (n_a, mu_a, M_a) with (n_b, mu_b, M_b).
        n_a = self.n_samples_seen_
        total = n_a + n
        delta = mean - self._mean
        self._scatter = self._scatter + scatter + np.outer(delta, delta) * (n_a * n / total)
        self._mean = self._mean + delta * (n / total)
        self.n_samples_seen_ = total

    @property
    def mean_(self) -> np.ndarray:
        self._check_fitted()
        return self._mean

    @property
    def covariance_(self) -> np.ndarray:
        self._check_fitted()
        return self._scatter / (self.n_samples_seen_ - self.ddof)

    # ------------------------------------------------------------------ fit / transform

    def fit(self, x: np.ndarray | Tensor) -> Whitening:
        """Fit on all rows of ``x``: (n_samples, dim)."""
        self._reset()
        self.partial_fit(x)
        self._solve()
        return self

    @property
    def kernel_(self) -> np.ndarray:
        """W = U diag(1/sqrt(max(s, eps s_max)))[:, :k]: (d, k)."""
        self._check_fitted()
        if self._kernel is None:
            self._solve()
        return self._kernel

    def _solve(self) -> None:
        n, d = self.n_samples_seen_, self._mean.shape[0]
        if n - self.ddof < 1:
            raise ValueError(f"expected more than {self.ddof} sample(s) for a covariance, got {n}")
        k = d if self.n_components is None else self.n_components
        if k > d:
            raise ValueError(f"n_components={k} is larger than the dimension {d}")
        if self.n_components is not None and k > n:
            raise ValueError(
                f"n_components={k} is larger than the number of samples {n}: at most {n} "
                "directions carry variance"
            )
        u, s, _ = np.linalg.svd(self.covariance_, hermitian=True)  # float64, s descending
        s = np.clip(s, 0.0, None)  # round-off can make tiny eigenvalues negative
        self.components_ = u
        self.singular_values_ = s
        floor = self.eps * s[0]
        if floor == 0:
            raise ValueError(f"all {n} samples are identical: the covariance is zero, nothing to whiten")
        self.rank_ = int((s > floor).sum())
        self._kernel = u[:, :k] / np.sqrt(np.maximum(s[:k], floor))  # (d, k) = U diag(1/sqrt(s))[:, :k]

    def transform(self, x: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """``(x - mu) W``: (n, d) -> (n, k). A tensor in gives a tensor out (its dtype and
        device, computed in float64); an array gives a float64 array."""
        kernel = self.kernel_  # solves (and validates) if needed
        d = self._mean.shape[0]
        if isinstance(x, Tensor):
            if x.dim() != 2 or x.shape[1] != d:
                raise ValueError(f"expected x of shape (n, {d}), got {tuple(x.shape)}")
            mean = torch.as_tensor(self._mean, device=x.device)
            kernel = torch.as_tensor(kernel, device=x.device)
            out = (x.to(torch.float64) - mean) @ kernel
            return out.to(x.dtype) if x.is_floating_point() else out
        x = _as_float64(x)
        if x.shape[1] != d:
            raise ValueError(f"expected x of shape (n, {d}), got {x.shape}")
        return (x - self._mean) @ kernel

    def fit_transform(self, x: np.ndarray | Tensor) -> np.ndarray | Tensor:
        return self.fit(x).transform(x)

    def to_linear(self, dtype: torch.dtype = torch.float32) -> torch.nn.Linear:
        """The transform as a layer, ``x W - mu W``: ``nn.Linear(d, k)`` with weight ``W^T``
        (k, d) and bias ``-mu W`` (k,) -- what :class:`~kexue.embed.SentenceEncoder` applies
        after pooling (``projection=``), and a sentence-transformers ``Dense`` module."""
        kernel = self.kernel_  # (d, k)
        layer = torch.nn.Linear(*kernel.shape, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(kernel.T.copy()))
            layer.bias.copy_(torch.from_numpy(-self._mean @ kernel))
        return layer.requires_grad_(False)

    def _check_fitted(self) -> None:
        if self._mean is None:
            raise ValueError("this Whitening is not fitted yet: call fit or partial_fit first")

    def __repr__(self) -> str:
        return f"Whitening(n_components={self.n_components}, eps={self.eps}, ddof={self.ddof})"
