import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.weissi import (
    ARMS,
    Weissi,
    digits_splits,
    input_gradient_norms,
    l2_penalty,
    mlp,
    noisy_labels,
)


def test_noisy_labels_flips_exactly_the_rate_to_other_classes():
    labels = torch.arange(200) % 10
    out = noisy_labels(labels, 0.3, 10, torch.Generator().manual_seed(0))
    assert int((out != labels).sum()) == 60
    assert out.min() >= 0 and out.max() <= 9
    assert torch.equal(noisy_labels(labels, 0.0, 10, torch.Generator()), labels)
    with pytest.raises(ValueError, match="rate must be in"):
        noisy_labels(labels, 1.5, 10, torch.Generator())


def test_digits_splits_are_disjoint_with_clean_test_labels():
    train, val, test = digits_splits(300, 100, 0.3, seed=0)
    assert (len(train), len(val), len(test)) == (300, 100, 1397)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    # find each test image in the full set: its label is the original one
    index = {tuple(r.tolist()): i for i, r in enumerate(x)}
    assert all(int(y[index[tuple(r.tolist())]]) == int(lab)
               for r, lab in zip(test.tensors[0][:200], test.tensors[1][:200]))
    flipped = sum(int(y[index[tuple(r.tolist())]]) != int(lab)
                  for r, lab in zip(*train.tensors))
    assert 80 <= flipped <= 90  # 90 flipped; a few duplicate images may map elsewhere
    with pytest.raises(ValueError, match="leave a test set"):
        digits_splits(1500, 297, 0.3)


def test_input_gradient_norms_match_per_example_autograd():
    torch.manual_seed(0)
    model = mlp(16)
    x, y = torch.rand(7, 64), torch.randint(0, 10, (7,))
    grad_norm, jac_norm = input_gradient_norms(model, TensorDataset(x, y))
    per_grad, per_jac = [], []
    for xi, yi in zip(x, y):
        xi = xi.clone().requires_grad_()
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi[None]), yi[None]), xi)
        per_grad.append(g.norm())
        j = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], xi)  # (10, 64)
        per_jac.append(j.norm())
    assert math.isclose(grad_norm, torch.stack(per_grad).mean().item(), rel_tol=1e-5)
    assert math.isclose(jac_norm, torch.stack(per_jac).mean().item(), rel_tol=1e-5)


def test_jacobian_norm_of_a_linear_model_is_its_frobenius_norm():
    model = nn.Linear(64, 10)
    _, jac = input_gradient_norms(model, TensorDataset(torch.rand(4, 64), torch.zeros(4).long()))
    assert math.isclose(jac, model.weight.norm().item(), rel_tol=1e-5)


def test_l2_penalty_is_the_sum_of_squared_weights_without_biases():
    model = mlp(8)
    expected = sum(m.weight.pow(2).sum() for m in model if isinstance(m, nn.Linear))
    torch.testing.assert_close(l2_penalty(model), expected)


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path):
    exp = Weissi()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert all(f"{a}/input_grad_norm" in run.metrics for a in ARMS)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 2


def _stats(accuracy_gain, grad_ratio):
    runs = [Run({"l2/test_accuracy": 90.0 + noise, "weissi/test_accuracy": 90.0 + noise + accuracy_gain,
                 "l2/input_grad_norm": 1.0 + noise / 10,
                 "weissi/input_grad_norm": (1.0 + noise / 10) * grad_ratio})
            for noise in (0.0, 0.3, -0.2)]
    return _aggregate(runs, False)


@pytest.mark.parametrize("accuracy_gain, grad_ratio, expected", [
    (2.0, 0.5, REPRODUCED),
    (2.0, 1.7, NOT_REPRODUCED),  # better accuracy, but a larger input gradient than L2's
    (-2.0, 0.5, NOT_REPRODUCED),  # smaller input gradient, but worse than L2 on test
])
def test_the_verdict_needs_better_accuracy_and_a_smaller_input_gradient_than_l2(
        accuracy_gain, grad_ratio, expected):
    assert verdict(Weissi().checks(_stats(accuracy_gain, grad_ratio))) == expected
