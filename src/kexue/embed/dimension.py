"""How many dimensions does a word vector need? n > 8.33 log N.

Source: Su Jianlin, "最小熵原理（六）：词向量的维度应该怎么选择？" (The minimum entropy principle
(6): how to choose the dimension of word vectors?), 2020-08-20, https://kexue.fm/archives/7695.

With a Skip-gram-like model ``p(w_i, w_j) = exp(<u_i, v_j>) / Z`` over a vocabulary of N words
and vectors spread uniformly over the sphere of radius sqrt(n) (coordinates ~ +-1), the
entropy is ``H ~ 2 log N + h_n`` with

    h_n = log E[e^{n cos t}] - E[e^{n cos t} n cos t] / E[e^{n cos t}],
    t ~ p_n(t) = Gamma(n/2) / (Gamma((n-1)/2) sqrt(pi)) sin^{n-2} t   on [0, pi]

(t = angle between two random vectors). A discrete entropy cannot be negative, so once
``2 log N + h_n < 0`` the N words can no longer fill the space: n is then large enough.
The post's table: h_32 = -7.77471, h_64 = -15.4734, h_96 = -23.1726, h_128 = -30.8718,
h_256 = -61.6692, h_512 = -123.264, i.e. h_n ~ -0.24 n, hence n > (2 / 0.24) log N = 8.33 log N.

Exact constant (Laplace's method): the tilted density ``sin^{n-2} t e^{n cos t}`` peaks where
``cot t = sin t``, i.e. ``cos t* = 1/phi`` (phi the golden ratio), and ``h_n / n -> log sin t* =
-(1/2) log phi = -0.240606``, giving ``n > (4 / log phi) log N = 8.3123 log N``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

__all__ = ["LAPLACE_CONSTANT", "POST_COEFFICIENT", "h_n", "min_embedding_dim"]

LAPLACE_CONSTANT = 0.5 * math.log((1 + math.sqrt(5)) / 2)  # 0.240606..., lim -h_n / n
POST_COEFFICIENT = 8.33  # the post's rounded 2 / 0.24


def h_n(n: int, num_points: int = 100_000) -> float:
    """The post's ``h_n`` by numerical integration over the angle, in log space.

    Midpoint rule on ``[0, pi]`` (the integrand and its first n-3 derivatives vanish at the
    ends, so the rule converges very fast); ``e^{n cos t}`` reaches e^512 for n = 512, so the
    expectations are formed with ``logsumexp`` and a softmax-weighted mean, never ``exp``.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"expected an integer dimension n >= 2, got {n}")
    if num_points < 100:
        raise ValueError(f"expected num_points >= 100, got {num_points}")
    t = (np.arange(num_points) + 0.5) * (math.pi / num_points)  # midpoints, (num_points,)
    log_prior = (n - 2) * np.log(np.sin(t))  # log sin^{n-2} t, unnormalised density p_n
    x = n * np.cos(t)  # <u, v> = n cos t
    log_tilted = log_prior + x  # log of sin^{n-2} t e^{n cos t}
    # log E[e^x]: the normalising constant of p_n cancels in the ratio of the two sums.
    log_mean_exp = logsumexp(log_tilted) - logsumexp(log_prior)
    weights = np.exp(log_tilted - logsumexp(log_tilted))  # e^x p_n / E[e^x], sums to 1
    return float(log_mean_exp - weights @ x)


def min_embedding_dim(vocab_size: int, coefficient: float = POST_COEFFICIENT) -> int:
    """Smallest integer dimension ``n > coefficient * log(vocab_size)`` (natural log).

    ``coefficient`` is the post's 8.33 by default; ``4 / math.log(golden ratio)`` = 8.3123
    (i.e. ``2 / LAPLACE_CONSTANT``) is the exact large-n value. An order-of-magnitude rule:
    N = 100,000 gives 96, N = 5,000,000 gives 129 (the post says about 128).
    """
    if int(vocab_size) != vocab_size or vocab_size < 2:
        raise ValueError(f"expected an integer vocab_size >= 2, got {vocab_size}")
    if coefficient <= 0:
        raise ValueError(f"expected coefficient > 0, got {coefficient}")
    return math.floor(coefficient * math.log(vocab_size)) + 1
