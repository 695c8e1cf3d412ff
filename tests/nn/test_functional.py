import math

import pytest
import torch

from kexue.experiments.entropy_normalization import posted_entropy_normalize
from kexue.nn.functional import entropy, entropy_normalize


def dirichlet(alpha: float, n: int, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch._standard_gamma(torch.full((batch, n), alpha, dtype=torch.float64), generator=g)
    return (x / x.sum(-1, keepdim=True)).float()


def test_entropy_is_the_shannon_entropy_with_zero_log_zero():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(entropy(p), torch.tensor([1.5 * math.log(2), 0.0]))
    assert entropy(p.T, dim=0).shape == (2,)


@pytest.mark.parametrize("alpha, n", [(0.1, 2), (0.1, 50_000), (1.0, 1000), (10.0, 50_000)])
@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
def test_hits_the_target_to_1e_6_in_float32(alpha, n, fraction):
    p = dirichlet(alpha, n, batch=3)
    target = fraction * math.log(n)
    q = entropy_normalize(p, target)
    assert q.dtype == torch.float32
    assert (entropy(q.double()) - target).abs().max() < 1e-6


def test_converges_where_the_posts_snippet_gives_nan_or_diverges():
    p = dirichlet(0.1, 1000, batch=8, seed=1)  # peaked: H(p) ≈ 5 nats, log n ≈ 6.9
    low, high = 0.2, 0.99 * math.log(1000)
    # p^γ underflows to 0, then 0 · log 0 = NaN
    assert torch.isnan(posted_entropy_normalize(p, low, iters=10)).any(-1).all()
    naive_high = posted_entropy_normalize(p, high, iters=10)
    assert ((entropy(naive_high.double()) - high).abs() < 1e-6).sum() < 8
    for target in (low, high):
        q = entropy_normalize(p, target)
        assert (entropy(q.double()) - target).abs().max() < 1e-6


def test_batched_targets_keep_the_order_and_the_zeros():
    p = dirichlet(0.5, 30, batch=4)
    p[:, :5] = 0
    p = p / p.sum(-1, keepdim=True)
    target = torch.tensor([0.3, 1.0, 2.0, 3.0])
    q = entropy_normalize(p, target)
    assert (entropy(q.double()) - target.double()).abs().max() < 1e-6
    assert (q[:, :5] == 0).all()
    assert torch.equal(p.argsort(-1)[:, 5:], q.argsort(-1)[:, 5:])


def test_dim_argument_matches_the_last_dim():
    p = dirichlet(1.0, 12, batch=6).reshape(2, 3, 12)
    q = entropy_normalize(p.transpose(1, 2), 1.0, dim=1).transpose(1, 2)
    torch.testing.assert_close(q, entropy_normalize(p, 1.0))


def test_gradients_are_the_implicit_ones():
    logits = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.4, 1.0, 1.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, t: entropy_normalize(torch.softmax(x, -1), t), (logits, target))
    # the entropy of the output is pinned: d H(p̃) / d logits = 0, d H(p̃) / d target = 1
    q = entropy_normalize(torch.softmax(logits, -1), target)
    entropy(q).sum().backward()
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), atol=1e-10, rtol=0)
    torch.testing.assert_close(target.grad, torch.ones_like(target))


def test_unreachable_targets_give_the_closest_distribution():
    tied = torch.tensor([0.4, 0.4, 0.2])  # cannot go below log 2
    torch.testing.assert_close(entropy_normalize(tied, 0.1), torch.tensor([0.5, 0.5, 0.0]))
    uniform = torch.full((5,), 0.2)
    torch.testing.assert_close(entropy_normalize(uniform, 0.5), uniform)


@pytest.mark.parametrize("p, target, iters, match", [
    (torch.tensor([0.5, 0.6]), 0.5, 30, "sum to 1"),
    (torch.tensor([1.2, -0.2]), 0.5, 30, "non-negative"),
    (torch.tensor([0.5, float("nan")]), 0.5, 30, "finite"),
    (torch.tensor([1, 0]), 0.5, 30, "floating"),
    (torch.tensor([1.0]), 0.0, 30, "at least 2"),
    (torch.tensor([0.5, 0.5]), 0.7, 30, r"\[0, log n\]"),
    (torch.tensor([0.5, 0.5]), -0.1, 30, r"\[0, log n\]"),
    (torch.tensor([[0.5, 0.5]] * 3), torch.tensor([0.1, 0.2]), 30, "broadcast"),
    (torch.tensor([0.5, 0.5]), 0.5, 0, "iters"),
])
def test_bad_input_raises(p, target, iters, match):
    with pytest.raises(ValueError, match=match):
        entropy_normalize(p, target, iters=iters)


def test_every_row_of_a_large_batch_converges_in_float64():
    # rows converge at different iterations; a converged row must stay put while the others
    # iterate (its Newton step rounds to 0 and must not count as leaving the bracket)
    p = dirichlet(0.3, 2000, batch=64, seed=3).double()
    p = p / p.sum(-1, keepdim=True)
    target = torch.linspace(0.05, 0.95, 64, dtype=torch.float64) * math.log(2000)
    q = entropy_normalize(p, target)
    assert (entropy(q) - target).abs().max() < 1e-9
