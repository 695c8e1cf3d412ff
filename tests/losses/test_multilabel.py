"""Tests for kexue.losses.multilabel: multilabel categorical cross-entropy (post 7359)."""

import math

import pytest
import torch

from kexue.losses import (
    multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy,
)


def _data(shape=(6, 7), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = 3 * torch.randn(shape, generator=g, dtype=dtype)
    y = (torch.rand(shape, generator=g) < 0.3).long()
    y[0] = 0  # a row without positives
    y[1] = 1  # a row without negatives
    return s, y


def _brute_force(s, y):
    """log(1 + sum_{neg i, pos j} e^{s_i - s_j} + sum_neg e^{s_i - s_0} + sum_pos e^{s_0 - s_j}), s_0 = 0.

    The pairwise form of the post (its equation before the factorisation), summed term by term.
    """
    out = []
    for row_s, row_y in zip(s.tolist(), y.tolist()):
        neg = [v for v, t in zip(row_s, row_y) if t == 0]
        pos = [v for v, t in zip(row_s, row_y) if t == 1]
        total = 1.0
        total += sum(math.exp(i - j) for i in neg for j in pos)
        total += sum(math.exp(i) for i in neg) + sum(math.exp(-j) for j in pos)
        out.append(math.log(total))
    return torch.tensor(out, dtype=torch.float64)


def _to_sparse(y, pad=-1, k=None):
    rows = [torch.nonzero(r).flatten().tolist() for r in y.reshape(-1, y.shape[-1])]
    k = k or max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), k), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.reshape(*y.shape[:-1], k)


def test_equals_brute_force_pairwise_formula():
    s, y = _data()
    loss = multilabel_categorical_crossentropy(s, y, reduction="none")
    torch.testing.assert_close(loss, _brute_force(s, y))
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, y), loss.mean())
    torch.testing.assert_close(
        multilabel_categorical_crossentropy(s, y, reduction="sum"), loss.sum()
    )


def test_single_positive_is_softmax_ce_with_threshold_class():
    # one positive t, and every negative below the threshold: the loss reduces to
    # log(1 + sum_neg e^{s_i}) + log(1 + e^{-s_t}) -- checked against a logsumexp of the
    # scores with the threshold class appended
    s, _ = _data(shape=(5, 4), seed=2)
    t = torch.tensor([0, 3, 1, 2, 2])
    y = torch.nn.functional.one_hot(t, 4)
    neg = torch.cat([s.masked_fill(y.bool(), -math.inf), torch.zeros(5, 1, dtype=s.dtype)], 1)
    ref = torch.logsumexp(neg, 1) + torch.nn.functional.softplus(-s.gather(1, t[:, None])[:, 0])
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, y, reduction="none"), ref)


def test_sparse_equals_dense():
    s, y = _data(shape=(3, 4, 9), seed=1)
    y[0, 0, 0] = 1  # class 0 is a positive in a padded row
    dense = multilabel_categorical_crossentropy(s, y, reduction="none")
    sparse = _to_sparse(y)
    assert (sparse == -1).any()  # padding present
    torch.testing.assert_close(
        sparse_multilabel_categorical_crossentropy(s, sparse, reduction="none"), dense
    )
    # another padding value, extra padding columns, and a repeated index
    padded = _to_sparse(y, pad=-100, k=12)
    padded[..., -1] = padded[..., 0].clamp_min(0)  # repeat the first positive (or class 0)
    y2 = y.clone()
    y2.scatter_(-1, padded[..., -1:], 1)
    torch.testing.assert_close(
        sparse_multilabel_categorical_crossentropy(s, padded, ignore_index=-100, reduction="none"),
        multilabel_categorical_crossentropy(s, y2, reduction="none"),
    )


def test_sparse_gradient_equals_dense_gradient():
    s, y = _data(seed=4)
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    multilabel_categorical_crossentropy(a, y).backward()
    sparse_multilabel_categorical_crossentropy(b, _to_sparse(y)).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_zero_loss_limit_and_prediction_rule():
    # positives far above 0 and negatives far below: loss -> 0; predicting s > 0 recovers y
    y = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0]])
    s = torch.where(y.bool(), 30.0, -30.0).double()
    loss = multilabel_categorical_crossentropy(s, y, reduction="none")
    assert torch.all(loss < 1e-12)
    assert torch.equal((s > 0).long(), y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_scores_finite(dtype):
    s = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 3.0, -1e4], [1e4, 1e4, -1e4, -1e4]])
    y = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]])
    ref = _brute_force_stable(s.double(), y)
    for fn, tgt in (
        (multilabel_categorical_crossentropy, y),
        (sparse_multilabel_categorical_crossentropy, _to_sparse(y)),
    ):
        z = s.to(dtype).requires_grad_()
        loss = fn(z, tgt, reduction="none")
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(z.grad).all()
        tol = 2e-2 * ref.abs().max().item() if dtype == torch.bfloat16 else 1e-3
        torch.testing.assert_close(loss.double(), ref, rtol=0, atol=tol)


def _brute_force_stable(s, y):
    """Reference for huge scores: the factorised formula with float64 logsumexp."""
    zero = torch.zeros(s.shape[0], 1, dtype=s.dtype)
    neg = torch.cat([s.masked_fill(y.bool(), -math.inf), zero], 1)
    pos = torch.cat([(-s).masked_fill(~y.bool(), -math.inf), zero], 1)
    return torch.logsumexp(neg, 1) + torch.logsumexp(pos, 1)


def test_gradcheck_float64():
    s, y = _data(shape=(4, 5), seed=5)
    sp = _to_sparse(y)
    assert torch.autograd.gradcheck(
        lambda z: multilabel_categorical_crossentropy(z, y), (s.clone().requires_grad_(),)
    )
    assert torch.autograd.gradcheck(
        lambda z: sparse_multilabel_categorical_crossentropy(z, sp), (s.clone().requires_grad_(),)
    )


def test_bad_input_raises():
    s, y = _data(shape=(3, 4))
    with pytest.raises(ValueError, match=r"shape of input \(3, 4\), got \(3, 5\)"):
        multilabel_categorical_crossentropy(s, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="only 0 and 1.*-1"):
        multilabel_categorical_crossentropy(s, y - (y == 0).long())
    with pytest.raises(ValueError, match=r"\[0, 3\] or equal ignore_index=-1, found 4"):
        sparse_multilabel_categorical_crossentropy(s, torch.tensor([[0, 4], [1, -1], [-1, -1]]))
    with pytest.raises(ValueError, match=r"ignore_index must lie outside \[0, 3\], got 0"):
        sparse_multilabel_categorical_crossentropy(
            s, torch.zeros(3, 1, dtype=torch.long), ignore_index=0
        )
    with pytest.raises(ValueError, match=r"shape \(3,\) \+ \(K,\)"):
        sparse_multilabel_categorical_crossentropy(s, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class indices"):
        sparse_multilabel_categorical_crossentropy(s, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="floating-point"):
        multilabel_categorical_crossentropy(y, y)
    with pytest.raises(ValueError, match="reduction"):
        multilabel_categorical_crossentropy(s, y, reduction="batchmean")


def test_bool_and_float_targets_match_integer():
    s, y = _data(seed=6)
    ref = multilabel_categorical_crossentropy(s, y)
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, y.bool()), ref)
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, y.double()), ref)
