"""T23: the h_n table and the n > 8.33 log N rule (kexue.fm/archives/7695)."""

from __future__ import annotations

import math

import pytest
from scipy.integrate import quad
from scipy.special import gammaln

from kexue.embed import LAPLACE_CONSTANT, h_n, min_embedding_dim

# The post's table, as printed.
POST_TABLE = {
    32: "-7.77471",
    64: "-15.4734",
    96: "-23.1726",
    128: "-30.8718",
    256: "-61.6692",
    512: "-123.264",
}


@pytest.mark.parametrize("n", sorted(POST_TABLE))
def test_reproduces_post_table_to_printed_digits(n: int) -> None:
    printed = POST_TABLE[n]
    significant = len(printed.replace("-", "").replace(".", ""))
    assert f"{h_n(n):.{significant}g}" == printed


def test_matches_adaptive_quadrature_with_normalised_density() -> None:
    """Independent route for a small n: scipy quad on the normalised p_n, no log tricks."""
    n = 12
    log_c = gammaln(n / 2) - gammaln((n - 1) / 2) - 0.5 * math.log(math.pi)

    def p(t: float) -> float:
        return math.exp(log_c) * math.sin(t) ** (n - 2)

    assert quad(p, 0, math.pi)[0] == pytest.approx(1.0, abs=1e-12)
    e0 = quad(lambda t: p(t) * math.exp(n * math.cos(t)), 0, math.pi, epsabs=0, epsrel=1e-13)[0]
    e1 = quad(lambda t: p(t) * math.exp(n * math.cos(t)) * n * math.cos(t), 0, math.pi,
              epsabs=0, epsrel=1e-13)[0]
    assert h_n(n) == pytest.approx(math.log(e0) - e1 / e0, rel=1e-10)


def test_slope_tends_to_laplace_constant() -> None:
    assert LAPLACE_CONSTANT == pytest.approx(0.5 * math.log((1 + 5**0.5) / 2))
    assert LAPLACE_CONSTANT == pytest.approx(0.240606, abs=1e-6)
    slopes = [-h_n(n) / n for n in (64, 512, 4096)]
    gaps = [s - LAPLACE_CONSTANT for s in slopes]
    assert all(g > 0 for g in gaps) and gaps[0] > gaps[1] > gaps[2]  # decreasing to the limit
    assert gaps[2] < 2e-4


def test_min_embedding_dim() -> None:
    # smallest integer n with n > 8.33 log N
    for vocab in (2, 1000, 100_000, 5_000_000):
        n = min_embedding_dim(vocab)
        assert n > 8.33 * math.log(vocab) >= n - 1
    assert min_embedding_dim(100_000) == 96  # the post's example
    assert min_embedding_dim(5_000_000) == 129  # the post rounds this to "about 128"
    assert min_embedding_dim(100_000, coefficient=2 / LAPLACE_CONSTANT) == 96


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="vocab_size >= 2, got 1"):
        min_embedding_dim(1)
    with pytest.raises(ValueError, match="coefficient > 0, got -1"):
        min_embedding_dim(10, coefficient=-1)
    with pytest.raises(ValueError, match="n >= 2, got 1"):
        h_n(1)
    with pytest.raises(ValueError, match="got 2.5"):
        h_n(2.5)
