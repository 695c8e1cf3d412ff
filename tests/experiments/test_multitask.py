import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.multitask import (
    STRATEGIES,
    MultiTaskWeighting,
    SharedEncoderTwoHeads,
    TwoTaskData,
    make_mtl,
    multitask_loss,
    prior_losses,
    spearman,
)


def _batch(n=6, vocab=30, seed=0, target_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    ids = lambda: torch.randint(5, vocab, (n, 7), generator=g)
    mask = torch.ones(n, 7, dtype=torch.long)
    return (ids(), mask, torch.randint(0, 2, (n,), generator=g), ids(), mask, ids(), mask,
            target_scale * 5 * torch.rand(n, generator=g))


def test_two_task_data_cycles_the_shorter_task():
    a = (torch.arange(5), torch.arange(5) * 10)
    b = (torch.arange(2),)
    ds = TwoTaskData(a, b)
    assert len(ds) == 5
    assert [tuple(int(x) for x in ds[i]) for i in range(5)] == [
        (0, 0, 0), (1, 10, 1), (2, 20, 0), (3, 30, 1), (4, 40, 0)]
    with pytest.raises(ValueError):
        TwoTaskData(a, (torch.zeros(0),))


def test_prior_losses():
    labels = torch.tensor([0, 0, 0, 1])
    scores = torch.tensor([1.0, 3.0, 5.0, 7.0])
    ce, mse = prior_losses(labels, scores)
    assert math.isclose(ce, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel_tol=1e-9)
    assert math.isclose(mse, 5.0)  # variance of 1, 3, 5, 7 around 4


def test_single_task_strategy_ignores_the_other_loss():
    torch.manual_seed(0)
    batch = _batch()
    model = SharedEncoderTwoHeads(30, make_mtl("single-sentiment", (0.7, 1e6)), hidden=16)
    model.eval()  # no dropout: both calls see the same network
    loss = multitask_loss(model, batch)
    torch.testing.assert_close(loss, model.task_losses(batch)[0])
    loss.backward()
    assert model.sts_head.weight.grad.abs().sum() == 0


def _shared_grad_direction(strategy: str, sts_factor: float) -> torch.Tensor:
    """Direction of the shared layer's gradient when the STS loss is multiplied by a factor."""
    torch.manual_seed(0)
    model = SharedEncoderTwoHeads(30, make_mtl(strategy, (0.7, 2.0 * sts_factor)), hidden=16)
    model.eval()
    ce, mse = model.task_losses(_batch()).unbind()
    model.mtl([ce, sts_factor * mse]).backward()
    g = model.shared[0].weight.grad.flatten()
    return g / g.norm()


@pytest.mark.parametrize("strategy", ["initial", "prior", "realtime", "log", "gmean"])
def test_scale_invariant_strategies_ignore_a_rescaled_task(strategy):
    """Multiplying the STS loss by 10^6 leaves the shared-encoder gradient direction alone."""
    torch.testing.assert_close(_shared_grad_direction(strategy, 1.0),
                               _shared_grad_direction(strategy, 1e6), atol=1e-5, rtol=1e-4)


def test_plain_sum_is_not_scale_invariant():
    a, b = _shared_grad_direction("fixed", 1.0), _shared_grad_direction("fixed", 1e6)
    assert (a - b).norm() > 1e-2


def test_uncertainty_log_vars_are_model_parameters():
    model = SharedEncoderTwoHeads(30, make_mtl("uncertainty", (0.7, 1.0)), hidden=16)
    assert any(p is model.mtl.log_vars for p in model.parameters())


def test_spearman():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert math.isclose(spearman(x, torch.tensor([10.0, 20, 30, 40])), 100.0)
    assert math.isclose(spearman(x, -x), -100.0)
    assert spearman(torch.ones(4), x) == 0.0


@pytest.mark.data(*MultiTaskWeighting.datasets)
def test_multitask_smoke(tmp_path):
    exp = MultiTaskWeighting()
    ctx = Context(seed=0, scale="smoke", workdir=tmp_path, cache_dir=tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {f"{s}/sentiment" for s in STRATEGIES} <= set(run.metrics)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds in (True, False, None) for c in checks)
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()


def _stats(sentiment_gap: float, sts_gap: float):
    """Runs where realtime - fixed = the given gaps (plus small paired noise)."""
    runs = [Run({"fixed/sentiment": 85.0 + e, "fixed/sts": 50.0 - e,
                 "realtime/sentiment": 85.0 + sentiment_gap + 1.1 * e,
                 "realtime/sts": 50.0 + sts_gap - 0.9 * e}) for e in (0.0, 0.5, -0.4)]
    return _aggregate(runs, False)


@pytest.mark.parametrize(("gaps", "expected"), [
    ((0.2, -0.3), REPRODUCED),  # within the tolerance on both tasks
    ((3.0, 5.0), REPRODUCED),  # better on both
    ((0.2, -6.0), NOT_REPRODUCED),  # the STS task loses
    ((-6.0, 1.0), NOT_REPRODUCED),  # the sentiment task loses
])
def test_the_verdict_follows_the_claim(gaps, expected):
    assert verdict(MultiTaskWeighting().checks(_stats(*gaps))) == expected


@pytest.mark.parametrize("strategy", ["log", "gmean"])
def test_log_and_gmean_point_where_realtime_points(strategy):
    """Why only ``realtime`` is trained: sum log L_i and the geometric mean share its
    gradient direction."""
    torch.testing.assert_close(_shared_grad_direction(strategy, 1.0),
                               _shared_grad_direction("realtime", 1.0), atol=1e-5, rtol=1e-4)
