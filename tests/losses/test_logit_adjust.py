"""Tests for kexue.losses.logit_adjust: logit-adjusted loss, post-hoc adjustment, priors."""

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.losses import LogitAdjustedLoss, class_priors, posthoc_logit_adjust

PRIORS = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=torch.float64)


def _data(n=12, extra=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn((n, 4, *extra), generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (n, *extra), generator=g)
    return x, t


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_tau0_is_cross_entropy(reduction):
    x, t = _data(extra=(3,))
    loss = LogitAdjustedLoss(PRIORS, tau=0.0, reduction=reduction)
    torch.testing.assert_close(loss(x, t), F.cross_entropy(x, t, reduction=reduction))


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_matches_pairwise_formula(tau):
    # log[1 + sum_{i != y} (pi_i / pi_y)^tau e^{f_i - f_y}]  (post 7615)
    x, t = _data()
    ref = []
    for f, y in zip(x.tolist(), t.tolist()):
        s = sum((PRIORS[i] / PRIORS[y]) ** tau * math.exp(f[i] - f[y]) for i in range(4) if i != y)
        ref.append(math.log1p(s))
    got = LogitAdjustedLoss(PRIORS, tau=tau, reduction="none")(x, t)
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_bias_initialisation_is_the_same_model():
    # the post's "simplest implementation": a bias initialised to tau log pi, trained with CE;
    # loss and gradients equal those of the LA loss on the un-shifted logits
    x, t = _data()
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la = LogitAdjustedLoss(PRIORS, tau=1.0)(a, t)
    ce = F.cross_entropy(b + PRIORS.log(), t)
    la.backward()
    ce.backward()
    torch.testing.assert_close(la, ce)
    torch.testing.assert_close(a.grad, b.grad)


def test_posthoc_adjust():
    x, _ = _data()
    torch.testing.assert_close(posthoc_logit_adjust(x, PRIORS, tau=1.0), x - PRIORS.log())
    torch.testing.assert_close(posthoc_logit_adjust(x, PRIORS, tau=0.0), x)
    # undoes the shift of the loss form
    torch.testing.assert_close(posthoc_logit_adjust(x + 1.5 * PRIORS.log(), PRIORS, tau=1.5), x)
    # other class dim
    xt = x.T.contiguous()  # (C, N)
    torch.testing.assert_close(posthoc_logit_adjust(xt, PRIORS, dim=0), (x - PRIORS.log()).T)
    # equal logits: the prediction moves to the rarest class
    tie = torch.zeros(1, 4)
    assert posthoc_logit_adjust(tie, PRIORS.float()).argmax().item() == 3


def test_class_priors_counts_and_smoothing():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 0, 3, 0, 1])
    torch.testing.assert_close(class_priors(labels, 4), torch.tensor([0.5, 0.3, 0.1, 0.1]))
    # from a "dataset" of (x, y) pairs via a generator
    dataset = [(None, int(y)) for y in labels]
    torch.testing.assert_close(class_priors((y for _, y in dataset), 4), class_priors(labels, 4))
    # a class without examples needs smoothing: (n_k + s) / (N + C s)
    got = class_priors(torch.tensor([0, 0, 1]), 3, smoothing=1.0)
    torch.testing.assert_close(got, torch.tensor([3 / 6, 2 / 6, 1 / 6]))
    # works directly as LogitAdjustedLoss priors
    LogitAdjustedLoss(got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_finite(dtype):
    x = torch.tensor([[1e4, -1e4, 0.0, 0.0], [-1e4, 1e4, -1e4, 2.0], [0.0, 0.0, 0.0, 1e4]])
    t = torch.tensor([0, 0, 3])
    for tau in (0.0, 1.0):
        z = x.to(dtype).requires_grad_()
        loss = LogitAdjustedLoss(PRIORS, tau=tau)(z, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        if tau == 0.0:
            torch.testing.assert_close(loss, F.cross_entropy(x.to(dtype), t))


def test_gradcheck_float64():
    x, t = _data(n=5)
    loss = LogitAdjustedLoss(PRIORS, tau=1.0)
    assert torch.autograd.gradcheck(lambda z: loss(z, t), (x.clone().requires_grad_(),))


def test_module_buffer_and_repr():
    loss = LogitAdjustedLoss(PRIORS.float(), tau=0.5)
    assert "log_priors" in loss.state_dict()
    torch.testing.assert_close(loss.log_priors, PRIORS.float().log())
    assert "tau=0.5" in repr(loss)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"sum to 1 \(tolerance 0.001\), got sum 0.9"):
        LogitAdjustedLoss(torch.tensor([0.5, 0.3, 0.1]))
    with pytest.raises(ValueError, match=r"> 0.*classes \[1\]"):
        LogitAdjustedLoss(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"sum to 1"):
        posthoc_logit_adjust(torch.zeros(2, 3), torch.tensor([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match="tau must be >= 0, got -1"):
        LogitAdjustedLoss(PRIORS, tau=-1.0)
    loss = LogitAdjustedLoss(PRIORS)
    with pytest.raises(ValueError, match=r"\(N, 4, \*\).*got shape \(2, 3\)"):
        loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\], got values in \[0, 4\]"):
        loss(torch.zeros(2, 4), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\)"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"4 classes on dim -1, got shape \(2, 3\)"):
        posthoc_logit_adjust(torch.zeros(2, 3), PRIORS)
    with pytest.raises(ValueError, match=r"classes \[2\] have no example among 3 labels"):
        class_priors(torch.tensor([0, 0, 1]), 3)
    with pytest.raises(ValueError, match=r"\[0, 2\] for num_classes=3, got values in \[0, 5\]"):
        class_priors(torch.tensor([0, 5, 1]), 3)
    with pytest.raises(ValueError, match="smoothing must be >= 0"):
        class_priors(torch.tensor([0, 1]), 2, smoothing=-1.0)
