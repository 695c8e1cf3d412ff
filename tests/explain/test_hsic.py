import importlib
import itertools
import math

import numpy as np
import pytest
import torch

from kexue.explain import hsic, hsic_test

hsic_impl = importlib.import_module("kexue.explain.hsic")  # the module (hsic is the function)


def gaussian(a: torch.Tensor, sigma: float) -> torch.Tensor:
    a = a.reshape(len(a), -1)
    return torch.exp(-torch.cdist(a, a) ** 2 / (2 * sigma**2))


def numpy_median_distance(a: np.ndarray) -> float:
    a = a.reshape(len(a), -1)
    d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
    return float(np.median(d[~np.eye(len(a), dtype=bool)]))


def test_biased_is_the_trace_formula():
    torch.manual_seed(0)
    x, y = torch.randn(12, 2, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    k, l = gaussian(x, 0.7), gaussian(y, 1.3)
    h = torch.eye(12, dtype=torch.float64) - 1 / 12
    expected = torch.trace(k @ h @ l @ h) / 12**2
    torch.testing.assert_close(hsic(x, y, bandwidth=(0.7, 1.3)), expected)


def test_unbiased_is_the_u_statistic_over_distinct_indices(one_thread):
    torch.manual_seed(1)
    n = 7
    x, y = torch.randn(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    y = y + x**2
    k, l = gaussian(x, 1.0), gaussian(y, 1.0)
    mean = lambda terms: sum(terms) / len(terms)
    two = list(itertools.permutations(range(n), 2))
    three = list(itertools.permutations(range(n), 3))
    four = list(itertools.permutations(range(n), 4))
    expected = (mean([k[i, j] * l[i, j] for i, j in two])
                + mean([k[i, j] * l[q, r] for i, j, q, r in four])
                - 2 * mean([k[i, j] * l[i, q] for i, j, q in three]))
    torch.testing.assert_close(hsic(x, y, bandwidth=1.0, estimator="unbiased"), expected)


@pytest.mark.parametrize("n, p, q", [(6, 1, 1), (50, 1, 1), (37, 3, 2), (120, 4, 1)])
def test_normalized_matches_hyppo(n, p, q):
    independence = pytest.importorskip("hyppo.independence")
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, p))
    y = np.sin(2 * x[:, :q]) + 0.5 * rng.normal(size=(n, q))
    # hyppo takes the median distance of x as the bandwidth of both kernels
    bandwidth = ("median", numpy_median_distance(x))
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    unbiased = hsic(X, Y, bandwidth=bandwidth, estimator="unbiased", normalized=True)
    biased = hsic(X, Y, bandwidth=bandwidth, estimator="biased", normalized=True)
    assert math.isclose(unbiased.item(), independence.Hsic().statistic(x, y), abs_tol=1e-12)
    assert math.isclose(biased.sqrt().item(), independence.Hsic(bias=True).statistic(x, y),
                        abs_tol=1e-12)


def test_median_bandwidth_is_numpys_median_distance():
    rng = np.random.default_rng(0)
    for n, d in ((5, 1), (8, 3), (9, 2)):
        a = rng.normal(size=(n, d))
        sigma = numpy_median_distance(a)
        got = hsic(torch.from_numpy(a), torch.from_numpy(a[:, :1]), bandwidth=("median", 1.0))
        want = hsic(torch.from_numpy(a), torch.from_numpy(a[:, :1]), bandwidth=(sigma, 1.0))
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("values", ["continuous", "ties"])
def test_median_of_a_large_vector_is_exact(values):
    generator = torch.Generator().manual_seed(0)
    m = 2**20 + 6  # above the size where a sample brackets the middle ranks
    if values == "continuous":
        v = torch.randn(m, generator=generator, dtype=torch.float64).exp()
    else:
        v = torch.randint(0, 7, (m,), generator=generator).double()
    assert hsic_impl._median(v).item() == float(np.median(v.numpy()))
    assert hsic_impl._median(v[:-1]).item() == float(np.median(v[:-1].numpy()))


def test_reproduces_the_posts_numbers():
    # post 6910: n = 1000, kernel exp(-d^2) (sigma = 1/sqrt(2)), tr(KJLJ) / (n-1)^2:
    # independent normals ~0.0002, y = x + 0.1 noise ~0.096
    generator = torch.Generator().manual_seed(0)
    n = 1000
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, generator=generator, dtype=torch.float64)
    posts = lambda a, b: hsic(a, b, bandwidth=0.5**0.5) * n**2 / (n - 1) ** 2
    assert 1e-4 < posts(x, noise).item() < 5e-4
    assert 0.09 < posts(x, x + 0.1 * noise).item() < 0.1


def test_unbiased_mean_is_zero_on_independent_draws_and_biased_is_not(one_thread):
    generator = torch.Generator().manual_seed(0)
    draws = {"biased": [], "unbiased": []}
    for _ in range(300):
        x = torch.randn(15, generator=generator, dtype=torch.float64)
        y = torch.randn(15, 2, generator=generator, dtype=torch.float64)
        for estimator, values in draws.items():
            values.append(hsic(x, y, bandwidth=1.0, estimator=estimator).item())
    for estimator, values in draws.items():
        v = torch.tensor(values)
        se = v.std() / len(v) ** 0.5
        if estimator == "unbiased":
            assert abs(v.mean()) < 3 * se
        else:
            assert v.mean() > 10 * se


def test_test_statistic_and_pvalue(one_thread):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, generator=generator, dtype=torch.float64)
    y = x**2 + 0.3 * torch.randn(60, generator=generator, dtype=torch.float64)
    for estimator in ("biased", "unbiased"):
        result = hsic_test(x, y, 199, estimator=estimator, generator=generator)
        torch.testing.assert_close(result.statistic, hsic(x, y, estimator=estimator))
        assert result.null.shape == (199,)
        assert result.pvalue == (1 + int((result.null >= result.statistic).sum())) / 200
        assert result.pvalue == 1 / 200  # dependent: no permutation comes close
    assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1]) < 0.3  # Pearson misses it


def test_low_rank_shortcut_equals_the_dense_computation(monkeypatch, one_thread):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, generator=generator, dtype=torch.float64)
    y = x.sin()[:, None] + torch.randn(300, 2, generator=generator, dtype=torch.float64)
    def run(kernel, estimator, swap):
        a, b = (y, x) if swap else (x, y)
        kernel = kernel[::-1] if swap and isinstance(kernel, tuple) else kernel
        return (hsic(a, b, kernel, estimator=estimator, normalized=True),
                hsic_test(a, b, 50, kernel, estimator=estimator, batch_size=7,
                          generator=torch.Generator().manual_seed(1)))

    # x's kernel has a factor; y's (2-d Gaussian) is a matrix, or a factor when linear:
    # the half-factored path with the factor on either side, and the all-factor path
    cases = itertools.product(("gaussian", ("gaussian", "linear")), ("biased", "unbiased"),
                              (False, True))
    for kernel, estimator, swap in cases:
        fast_value, fast = run(kernel, estimator, swap)
        assert hsic_impl._gram(x[:, None], "gaussian", "median", "x", True).factor is not None
        with monkeypatch.context() as m:
            m.setattr(hsic_impl, "_pivoted_cholesky", lambda *args: None)
            m.setattr(hsic_impl, "LOW_RANK_FROM", 10**9)
            slow_value, slow = run(kernel, estimator, swap)
        torch.testing.assert_close(fast_value, slow_value, atol=1e-10, rtol=0)
        torch.testing.assert_close(fast.null, slow.null, atol=1e-12, rtol=0)
        assert fast.pvalue == slow.pvalue


@pytest.mark.parametrize("n, ties", [(301, False), (400, False), (333, True)])
def test_median_distance_of_1d_samples_is_numpys(n, ties):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 20, size=(n, 1)).astype(float) if ties else rng.standard_cauchy((n, 1))
    got = hsic_impl._median_distance(torch.from_numpy(a)).item()
    assert got == pytest.approx(numpy_median_distance(a), rel=1e-14, abs=0)


def test_false_positive_rate_is_alpha(one_thread):
    generator = torch.Generator().manual_seed(0)
    trials, alpha = 400, 0.05
    rejections = 0
    for _ in range(trials):
        x = torch.randn(30, generator=generator, dtype=torch.float64)
        y = torch.randn(30, generator=generator, dtype=torch.float64)
        rejections += hsic_test(x, y, 99, generator=generator).pvalue <= alpha
    se = (alpha * (1 - alpha) / trials) ** 0.5
    assert abs(rejections / trials - alpha) < 3 * se


def test_linear_kernel_on_one_hot_labels_is_the_delta_kernel():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (40,), generator=generator)
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    delta = (labels[:, None] == labels[None, :]).double()
    k = gaussian(z, 1.5)
    h = torch.eye(40, dtype=torch.float64) - 1 / 40
    expected = torch.trace(k @ h @ delta @ h) / 40**2
    torch.testing.assert_close(hsic(z, one_hot, kernel=("gaussian", "linear"), bandwidth=1.5),
                               expected)


def test_gradients():
    x = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(10, dtype=torch.float64, requires_grad=True)
    for estimator in ("biased", "unbiased"):
        assert torch.autograd.gradcheck(
            lambda a, b, e=estimator: hsic(a, b, bandwidth=(0.9, 1.1), estimator=e), (x, y))


@pytest.mark.parametrize("call, match", [
    (lambda x, y: hsic(x, y[:9]), r"same number of samples, got 10 and 9"),
    (lambda x, y: hsic(x[:3], y[:3], estimator="unbiased"), r"n >= 4 samples, got 3"),
    (lambda x, y: hsic(x[:1], y[:1]), r"n >= 2 samples, got 1"),
    (lambda x, y: hsic(x, y, bandwidth=0.0), "bandwidth for x must be 'median' or a positive"),
    (lambda x, y: hsic(x, y, bandwidth=("median", -1.0)), "bandwidth for y must be"),
    (lambda x, y: hsic(x, y, bandwidth="mean"), "bandwidth for x must be"),
    (lambda x, y: hsic(x, y, kernel="laplace"), "kernel for x must be one of"),
    (lambda x, y: hsic(x, y, estimator="v"), "estimator must be one of"),
    (lambda x, y: hsic(torch.ones(10), y, normalized=True), r"HSIC\(x, x\) > 0"),
    (lambda x, y: hsic(x[None], y), r"\(n,\) or \(n, features\)"),
    (lambda x, y: hsic_test(x, y, 0), "permutations must be a positive int, got 0"),
    (lambda x, y: hsic_test(x, y, 10, batch_size=0), "batch_size must be a positive int"),
])
def test_bad_input_raises(call, match):
    x, y = torch.randn(10, 2), torch.randn(10)
    with pytest.raises(ValueError, match=match):
        call(x, y)
