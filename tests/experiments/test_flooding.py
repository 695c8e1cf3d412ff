import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.flooding import (
    VARIANTS,
    BagOfChars,
    Flooding,
    flooded_loss,
    gradient_penalty_loss,
    parameter_grad_sq_norm,
    pick_flood_level,
)


def model_and_batch():
    torch.manual_seed(0)
    model = BagOfChars(20, 3, hidden=8)
    ids = torch.randint(1, 20, (5, 6))
    mask = torch.ones_like(ids)
    mask[2:, 4:] = 0
    ids[mask == 0] = 0
    return model, (ids, mask, torch.tensor([0, 1, 2, 0, 1]))


def test_bag_of_chars_ignores_padding():
    model, (ids, mask, _) = model_and_batch()
    padded = torch.cat([ids, torch.zeros(5, 3, dtype=torch.long)], 1)
    padded_mask = torch.cat([mask, torch.zeros(5, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(ids, mask), model(padded, padded_mask))


def test_flooded_loss_is_ce_above_b_and_mirrored_below():
    model, batch = model_and_batch()
    ce = F.cross_entropy(model(batch[0], batch[1]), batch[2])
    torch.testing.assert_close(flooded_loss(0.0)(model, batch), ce)
    high = ce.item() + 0.5
    torch.testing.assert_close(flooded_loss(high)(model, batch), 2 * high - ce)
    # below the flood level the gradient is the ascent direction
    flooded_loss(high)(model, batch).backward()
    g_flood = model.mlp[2].bias.grad.clone()
    model.zero_grad()
    flooded_loss(0.0)(model, batch).backward()
    torch.testing.assert_close(g_flood, -model.mlp[2].bias.grad)


def test_gradient_penalty_loss_adds_the_squared_parameter_gradient():
    model, batch = model_and_batch()
    ce = F.cross_entropy(model(batch[0], batch[1]), batch[2])
    grads = torch.autograd.grad(ce, list(model.parameters()))
    expected = ce + 0.7 * sum(g.pow(2).sum() for g in grads)
    torch.testing.assert_close(gradient_penalty_loss(0.7)(model, batch), expected)


def test_parameter_grad_sq_norm_is_the_full_batch_value_and_clears_grads():
    model, batch = model_and_batch()
    data = TensorDataset(*batch)
    ce = F.cross_entropy(model(batch[0], batch[1]), batch[2])
    expected = sum(g.pow(2).sum() for g in torch.autograd.grad(ce, list(model.parameters())))
    assert math.isclose(parameter_grad_sq_norm(model, data), expected.item(), rel_tol=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_smoke_run_gives_finite_metrics_curves_and_well_formed_checks(tmp_path):
    exp = Flooding()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {f"{v}/test_loss" for v in VARIANTS} <= set(run.metrics)
    assert all(run.metrics[f"{v}/min_test_loss"] <= run.metrics[f"{v}/test_loss"] + 1e-9
               for v in VARIANTS)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert run.metrics["picked/b"] in (0.02, 0.05, 0.1)
    picked = f"b={run.metrics['picked/b']:g}"
    assert run.metrics["picked/test_loss"] == run.metrics[f"{picked}/test_loss"]
    assert len(checks) == 3 and all(c.holds is None for c in checks)
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert len(extra.figures) == 2 and all((tmp_path / f).exists() for f in extra.figures)


def test_the_flood_level_is_picked_on_validation_loss_not_test_loss():
    metrics = {"b=0.02/valid_loss": 0.6, "b=0.05/valid_loss": 0.4, "b=0.1/valid_loss": 0.5,
               "b=0/valid_loss": 0.1,  # b = 0 is the baseline, never picked
               "b=0.02/test_loss": 0.1, "b=0.05/test_loss": 0.9, "b=0.1/test_loss": 0.8}
    assert pick_flood_level(metrics) == "b=0.05"


def _stats(test_loss_gain, accuracy_gain, train_accuracy=100.0):
    runs = [Run({"b=0/train_accuracy": train_accuracy,
                 "b=0/test_loss": 1.0 + noise, "picked/test_loss": 1.0 + noise - test_loss_gain,
                 "b=0/test_accuracy": 80.0 + noise,
                 "picked/test_accuracy": 80.0 + noise + accuracy_gain})
            for noise in (0.0, 0.05, -0.03)]
    return _aggregate(runs, False)


@pytest.mark.parametrize("loss_gain, accuracy_gain, train_accuracy, expected", [
    (0.5, 1.0, 100.0, REPRODUCED),
    (0.5, -1.0, 100.0, NOT_REPRODUCED),  # lower test loss but worse accuracy
    (-0.3, 1.0, 100.0, NOT_REPRODUCED),  # the flooded model is worse on test loss
    (0.5, 1.0, 90.0, NOT_REPRODUCED),  # b = 0 never memorised: not the post's regime
])
def test_the_verdict_needs_memorisation_and_a_better_test_loss_and_accuracy(
        loss_gain, accuracy_gain, train_accuracy, expected):
    checks = Flooding().checks(_stats(loss_gain, accuracy_gain, train_accuracy))
    assert verdict(checks) == expected
