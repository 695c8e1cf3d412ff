"""Tests for kexue.losses.imbalance: focal, hard truncation, smooth F1, weighted CE."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from kexue.losses import (
    class_weighted_cross_entropy,
    f1_weighted_cross_entropy,
    focal_loss,
    hard_truncation_loss,
    smooth_f1_loss,
)

REDUCTIONS = ("none", "mean", "sum")


def _multiclass(n=16, c=5, extra=(), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn((n, c, *extra), generator=g, dtype=dtype)
    t = torch.randint(0, c, (n, *extra), generator=g)
    return x, t


def _binary(shape=(16, 3), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(shape, generator=g, dtype=dtype)
    y = (torch.rand(shape, generator=g) < 0.3).to(dtype)
    return x, y


def _extreme(dtype):
    """Logits of +-1e4 (and a few moderate ones), multi-class and binary."""
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [0.0, 0.0, 0.0], [-1e4, -1e4, 1e4]])
    t = torch.tensor([0, 0, 2, 2])
    xb = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0, 2.0])
    yb = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    return x.to(dtype), t, xb.to(dtype), yb.to(dtype)


# ----------------------------------------------------------------------------- focal
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_gamma0_is_cross_entropy(reduction):
    x, t = _multiclass(extra=(4,))
    ref = F.cross_entropy(x, t, reduction=reduction)
    torch.testing.assert_close(focal_loss(x, t, gamma=0.0, reduction=reduction), ref)
    xb, yb = _binary()
    ref = F.binary_cross_entropy_with_logits(xb, yb, reduction=reduction)
    torch.testing.assert_close(focal_loss(xb, yb, gamma=0.0, reduction=reduction), ref)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_matches_textbook_formula(gamma):
    # multi-class: -alpha_t (1 - p_t)^gamma log p_t with p = softmax
    x, t = _multiclass()
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=torch.float64)
    pt = torch.softmax(x, dim=1).gather(1, t[:, None])[:, 0]
    ref = -alpha[t] * (1 - pt) ** gamma * pt.log()
    torch.testing.assert_close(focal_loss(x, t, gamma, alpha=alpha, reduction="none"), ref)
    # binary: -alpha (1-p)^g log p (y = 1), -(1-alpha) p^g log(1-p) (y = 0), p = sigmoid
    xb, yb = _binary()
    p = torch.sigmoid(xb)
    ref = -(0.25 * yb * (1 - p) ** gamma * p.log() + 0.75 * (1 - yb) * p**gamma * (1 - p).log())
    torch.testing.assert_close(focal_loss(xb, yb, gamma, alpha=0.25, reduction="none"), ref)


def test_focal_gamma1_equals_softened_truncation_k1():
    # post 4733: -sigma(-Kx) log sigma(x) (y=1), -sigma(Kx) log sigma(-x) (y=0) equals focal at K = gamma = 1
    xb, yb = _binary()
    soft = -(
        yb * torch.sigmoid(-xb) * F.logsigmoid(xb)
        + (1 - yb) * torch.sigmoid(xb) * F.logsigmoid(-xb)
    )
    torch.testing.assert_close(focal_loss(xb, yb, gamma=1.0, reduction="none"), soft)


def test_focal_down_weights_easy_examples():
    # the larger gamma, the smaller the loss of an easy example relative to a hard one
    x = torch.tensor([[4.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([0, 0])
    losses = [focal_loss(x, t, g, reduction="none") for g in (0, 1, 2, 5)]
    ratios = [easy / hard for easy, hard in losses]
    assert all(a > b for a, b in itertools.pairwise(ratios))


# ----------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_truncation_m1_is_cross_entropy(reduction):
    x, t = _multiclass(extra=(3,))
    ref = F.cross_entropy(x, t, reduction=reduction)
    torch.testing.assert_close(hard_truncation_loss(x, t, m=1.0, reduction=reduction), ref)
    xb, yb = _binary()
    ref = F.binary_cross_entropy_with_logits(xb, yb, reduction=reduction)
    torch.testing.assert_close(hard_truncation_loss(xb, yb, m=1.0, reduction=reduction), ref)


@pytest.mark.parametrize("m", [0.5, 0.6, 0.9])
def test_truncation_matches_post_rule(m):
    # lambda = 0 if (y = 1 and yhat > m) or (y = 0 and yhat < 1 - m), else 1  (posts 4293/4733)
    xb, yb = _binary(seed=1)
    p = torch.sigmoid(xb)
    lam = 1.0 - ((yb == 1) & (p > m)).double() - ((yb == 0) & (p < 1 - m)).double()
    ref = lam * F.binary_cross_entropy_with_logits(xb, yb, reduction="none")
    torch.testing.assert_close(hard_truncation_loss(xb, yb, m=m, reduction="none"), ref)
    assert 0 < lam.sum() < lam.numel()  # the check is not vacuous
    # multi-class: drop when p_t > m
    x, t = _multiclass(seed=1)
    pt = torch.softmax(x, 1).gather(1, t[:, None])[:, 0]
    ref = (pt <= m) * F.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(hard_truncation_loss(x, t, m=m, reduction="none"), ref)


def test_truncated_samples_get_no_gradient():
    x = torch.tensor([[5.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    hard_truncation_loss(x, torch.tensor([0, 0]), m=0.5).backward()
    assert torch.all(x.grad[0] == 0) and torch.all(x.grad[1] != 0)


# ----------------------------------------------------------------------------- smooth F1
def test_smooth_f1_matches_formula():
    xb, yb = _binary()
    p = torch.sigmoid(xb)
    torch.testing.assert_close(smooth_f1_loss(xb, yb), 1 - 2 * (yb * p).sum() / (yb + p).sum())
    x, t = _multiclass(extra=(2,))
    p = torch.softmax(x, 1)
    per_class = []
    for c in range(x.shape[1]):
        yc, pc = (t == c).double(), p[:, c]
        per_class.append(1 - 2 * (yc * pc).sum() / (yc + pc).sum())
    per_class = torch.stack(per_class)
    torch.testing.assert_close(smooth_f1_loss(x, t, reduction="none"), per_class)
    torch.testing.assert_close(smooth_f1_loss(x, t), per_class.mean())
    torch.testing.assert_close(smooth_f1_loss(x, t, reduction="sum"), per_class.sum())


def test_smooth_f1_is_f1_for_hard_predictions():
    # with saturated logits p is exactly 0/1 and the smoothed F1 is sklearn's F1
    g = torch.Generator().manual_seed(3)
    yb = (torch.rand(200, generator=g) < 0.2).double()
    xb = torch.where(torch.rand(200, generator=g) < 0.8, 2 * yb - 1, 1 - 2 * yb) * 100
    ref = f1_score(yb.numpy(), (xb > 0).numpy())
    torch.testing.assert_close(1 - smooth_f1_loss(xb, yb), torch.tensor(ref, dtype=torch.float64))
    t = torch.randint(0, 4, (300,), generator=g)
    pred = torch.where(
        torch.rand(300, generator=g) < 0.7, t, torch.randint(0, 4, (300,), generator=g)
    )
    x = 100.0 * F.one_hot(pred, 4).double()
    ref = f1_score(t.numpy(), pred.numpy(), average="macro")
    torch.testing.assert_close(1 - smooth_f1_loss(x, t), torch.tensor(ref, dtype=torch.float64))


def test_smooth_f1_empty_batch_is_finite():
    x = torch.full((8,), -1e4, requires_grad=True)
    loss = smooth_f1_loss(x, torch.zeros(8))
    loss.backward()
    assert loss.item() == 1.0 and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- weighted CE
def test_class_weighted_ce_matches_torch():
    x, t = _multiclass(extra=(3,))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    ref = F.cross_entropy(x, t, weight=w, reduction="none")
    torch.testing.assert_close(class_weighted_cross_entropy(x, t, w, reduction="none"), ref)
    torch.testing.assert_close(class_weighted_cross_entropy(x, t, w, reduction="sum"), ref.sum())
    torch.testing.assert_close(class_weighted_cross_entropy(x, t, w), ref.mean())  # plain mean
    xb, yb = _binary()
    wb = torch.tensor([0.3, 2.0], dtype=torch.float64)
    ce = F.binary_cross_entropy_with_logits(xb, yb, reduction="none")
    ref = torch.where(yb == 1, 2.0 * ce, 0.3 * ce)
    torch.testing.assert_close(class_weighted_cross_entropy(xb, yb, wb, reduction="none"), ref)


def test_f1_weighted_ce_formula_and_gradient_link():
    """Its gradient is the gradient of -F1_s with "grad p -> grad log p" (post 7708)."""
    xb, yb = _binary(shape=(40,))
    p = torch.sigmoid(xb)
    f1 = 2 * (yb * p).sum() / (yb + p).sum()
    ref = -(yb * (1 - f1 / 2) * p.log() + (1 - yb) * (f1 / 2) * (1 - p).log())
    torch.testing.assert_close(f1_weighted_cross_entropy(xb, yb, reduction="none"), ref)
    torch.testing.assert_close(
        f1_weighted_cross_entropy(xb, yb, f1=0.4),
        (-(yb * 0.8 * p.log() + (1 - yb) * 0.2 * (1 - p).log())).mean(),
    )

    z = xb.clone().requires_grad_()
    f1_weighted_cross_entropy(z, yb, reduction="sum").backward()
    z2 = xb.clone().requires_grad_()
    smooth_f1_loss(z2, yb).backward()  # gradient of -F1_s (+ const)
    q, d = torch.sigmoid(xb), (yb + torch.sigmoid(xb)).sum()
    # positives: grad log p = grad p / p;  negatives: grad log(1-p) = -grad p / (1-p)
    mapped = torch.where(yb == 1, z2.grad * d / (2 * q), z2.grad * d / (2 * (1 - q)))
    torch.testing.assert_close(z.grad, mapped)


# ----------------------------------------------------------------------------- extremes
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_finite_and_match_torch(dtype):
    x, t, xb, yb = _extreme(dtype)
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == torch.bfloat16 else {}
    losses = {
        "focal0": (lambda a, b: focal_loss(a, b, gamma=0.0), True),
        "focal.5": (lambda a, b: focal_loss(a, b, gamma=0.5), False),
        "focal2": (lambda a, b: focal_loss(a, b, gamma=2.0, alpha=None), False),
        "trunc1": (lambda a, b: hard_truncation_loss(a, b, m=1.0), True),
        "trunc.5": (lambda a, b: hard_truncation_loss(a, b, m=0.5), False),
        "f1": (smooth_f1_loss, False),
        "wce1": (
            lambda a, b: class_weighted_cross_entropy(
                a, b, torch.ones(a.shape[1] if a.dim() > 1 else 2)
            ),
            True,
        ),
    }
    for name, (fn, equals_ce) in losses.items():
        for inp, tgt, ce in ((x, t, F.cross_entropy), (xb, yb, F.binary_cross_entropy_with_logits)):
            z = inp.clone().requires_grad_()
            loss = fn(z, tgt)
            loss.backward()
            assert torch.isfinite(loss), (name, dtype)
            assert torch.isfinite(z.grad).all(), (name, dtype)
            if equals_ce:
                torch.testing.assert_close(
                    loss, ce(inp, tgt.to(inp.dtype) if tgt.is_floating_point() else tgt), **tol
                )
    z = xb.clone().requires_grad_()
    loss = f1_weighted_cross_entropy(z, yb)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


# ----------------------------------------------------------------------------- gradcheck
def test_gradcheck_float64():
    x, t = _multiclass(n=6, c=4)
    xb, yb = _binary(shape=(6, 2))
    alpha = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    cases = [
        (lambda z: focal_loss(z, t, gamma=2.0, alpha=alpha), x),
        (lambda z: focal_loss(z, t, gamma=0.5), x),
        (lambda z: focal_loss(z, yb, gamma=2.0, alpha=0.25), xb),
        (lambda z: focal_loss(z, yb, gamma=0.5), xb),
        (lambda z: hard_truncation_loss(z, t, m=0.5), x),
        (lambda z: hard_truncation_loss(z, yb, m=0.6), xb),
        (lambda z: smooth_f1_loss(z, t), x),
        (lambda z: smooth_f1_loss(z, yb), xb),
        (lambda z: class_weighted_cross_entropy(z, t, w), x),
        (lambda z: f1_weighted_cross_entropy(z, yb, f1=0.4), xb),  # batch F1 is detached
    ]
    for fn, inp in cases:
        assert torch.autograd.gradcheck(fn, (inp.clone().requires_grad_(),))


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises():
    x, t = _multiclass(n=4, c=3)
    xb, yb = _binary(shape=(4,))
    with pytest.raises(ValueError, match="gamma must be >= 0, got -1"):
        focal_loss(x, t, gamma=-1.0)
    with pytest.raises(ValueError, match=r"\[0, 2\].*got values in \[0, 3\]"):
        focal_loss(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 2\].*\[-1, "):
        hard_truncation_loss(x, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(ValueError, match=r"target shape \(5,\) fits neither form"):
        focal_loss(x, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="only 0 and 1.*2"):
        focal_loss(xb, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="integer class indices"):
        focal_loss(x, t.double())
    with pytest.raises(ValueError, match="reduction must be one of"):
        smooth_f1_loss(x, t, reduction="avg")
    with pytest.raises(ValueError, match=r"m must lie in \(0, 1\], got 1.5"):
        hard_truncation_loss(x, t, m=1.5)
    with pytest.raises(ValueError, match=r"alpha must be a tensor of shape \(3,\), got \(2,\)"):
        focal_loss(x, t, alpha=torch.ones(2))
    with pytest.raises(ValueError, match=r"binary alpha must be a float in \[0, 1\], got 1.5"):
        focal_loss(xb, yb, alpha=1.5)
    with pytest.raises(ValueError, match=r"weight must be a tensor of shape \(2,\), got \(3,\)"):
        class_weighted_cross_entropy(xb, yb, torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        focal_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="binary targets"):
        f1_weighted_cross_entropy(x, t)
    with pytest.raises(ValueError, match=r"f1 must be a scalar in \[0, 1\], got 1.2"):
        f1_weighted_cross_entropy(xb, yb, f1=1.2)


def test_bool_and_integer_binary_targets_match_float():
    xb, yb = _binary()
    ref = focal_loss(xb, yb, gamma=2.0, alpha=0.25)
    for target in (yb.bool(), yb.long()):
        torch.testing.assert_close(focal_loss(xb, target, gamma=2.0, alpha=0.25), ref)
        torch.testing.assert_close(hard_truncation_loss(xb, target), hard_truncation_loss(xb, yb))
        torch.testing.assert_close(smooth_f1_loss(xb, target), smooth_f1_loss(xb, yb))
