import math
from collections import Counter

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.long_tail import (
    TASKS,
    LongTail,
    balance,
    group_recalls,
    long_tail_counts,
    loss_functions,
    make_long_tailed,
    prior_accuracy,
)


def test_long_tail_counts_follow_the_exponential_profile():
    available = {c: 200 for c in range(11)}
    counts = long_tail_counts(available, ratio=100, n_max=100)
    for c in range(11):  # ties ranked by class id: class c has rank c
        assert counts[c] == max(1, round(100 * 100 ** (-c / 10)))
    assert counts[0] / counts[10] == 100


def test_long_tail_counts_rank_by_availability_and_stay_feasible():
    available = {0: 5, 1: 80, 2: 40, 3: 60}
    counts = long_tail_counts(available, ratio=100, n_max=1000)
    assert all(counts[c] <= available[c] for c in available)
    order = sorted(counts, key=counts.get, reverse=True)
    assert order == [1, 3, 2, 0]  # most available example -> head
    # n_max is lowered to what the pool can fill, the profile's shape is kept
    n = min(available[c] / 100 ** (-r / 3) for r, c in enumerate([1, 3, 2, 0]))
    assert counts[1] == round(n)


@pytest.mark.parametrize("available", [{0: 10}, {0: 3, 1: 0}])
def test_long_tail_counts_rejects_bad_pools(available):
    with pytest.raises(ValueError):
        long_tail_counts(available)


def test_make_long_tailed_and_balance():
    rows = [(f"t{c}-{i}", c) for c in range(3) for i in range(50)]
    counts = {0: 30, 1: 7, 2: 2}
    lt = make_long_tailed(rows, counts, seed=1)
    assert Counter(y for _, y in lt) == Counter(counts)
    assert len(set(lt)) == len(lt) and set(lt) <= set(rows)
    assert make_long_tailed(rows, counts, seed=1) == lt
    assert make_long_tailed(rows, counts, seed=2) != lt
    bal = balance(lt, seed=0)
    assert Counter(y for _, y in bal) == {0: 2, 1: 2, 2: 2}


def test_loss_functions_at_uniform_priors_reduce_to_ce():
    torch.manual_seed(0)
    z, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    fns = loss_functions(torch.full((4,), 0.25))
    ce = torch.nn.functional.cross_entropy(z, y)
    # uniform priors: LA shifts every logit equally, weights are all 1
    torch.testing.assert_close(fns["la_loss"](z, y), ce)
    torch.testing.assert_close(fns["weighted_ce"](z, y), ce)
    assert fns["focal"](z, y) < ce
    assert fns["truncation"](z, y) <= ce


def test_loss_functions_la_matches_formula():
    priors = torch.tensor([0.7, 0.2, 0.1])
    z, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    expected = torch.nn.functional.cross_entropy(z + priors.log(), y)
    torch.testing.assert_close(loss_functions(priors)["la_loss"](z, y), expected)
    w = loss_functions(priors)["weighted_ce"]
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(w(z, y), (ce / (3 * priors[y])).mean())


def test_group_recalls():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 0, 1, 0, 0, 0, 3, 0])
    logits = torch.nn.functional.one_hot(pred, 4).float()
    r = group_recalls(logits, labels, {0: 100, 1: 50, 2: 5, 3: 1})
    assert math.isclose(r["head_recall"], 75.0)  # classes 0, 1: recall 1 and 0.5
    assert math.isclose(r["tail_recall"], 25.0)  # classes 2, 3: recall 0 and 0.5


@pytest.mark.data(*LongTail.datasets)
def test_long_tail_smoke(tmp_path):
    exp = LongTail()
    ctx = Context(seed=0, scale="smoke", workdir=tmp_path, cache_dir=tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert run.metrics and all(math.isfinite(v) for v in run.metrics.values())
    assert "tnews/gain/la_loss" in run.metrics and "tnews/posthoc/balanced_accuracy" in run.metrics
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 3
    assert "tnews/la_prior/prior_accuracy" in run.metrics and "tnews/posthoc_tau/1" in run.metrics
    assert all(c.holds in (True, False, None) and c.description for c in checks)
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()


def test_prior_accuracy_weights_recalls_by_the_priors():
    labels = torch.tensor([0, 0, 1, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1]), 2).float()  # recalls 1, .5
    assert math.isclose(prior_accuracy(logits, labels, torch.tensor([0.9, 0.1])), 95.0, rel_tol=1e-6)
    assert math.isclose(prior_accuracy(logits, labels, torch.tensor([0.5, 0.5])), 75.0)


def _stats(la_gain: float, posthoc_gain: float, prior_gain: float):
    runs = []
    for e in (0.0, 0.2, -0.2):
        m = {}
        for task in TASKS:
            m.update({f"{task}/ce/balanced_accuracy": 20.0 + e,
                      f"{task}/la_loss/balanced_accuracy": 20.0 + la_gain + 2 * e,
                      f"{task}/posthoc/balanced_accuracy": 20.0 + posthoc_gain - e,
                      f"{task}/la_loss/prior_accuracy": 50.0 + e,
                      f"{task}/la_prior/prior_accuracy": 50.0 + prior_gain,
                      f"{task}/gain/la_loss": la_gain + e})
        runs.append(Run(m))
    return _aggregate(runs, False)


@pytest.mark.parametrize(("gains", "expected"), [
    ((4.0, 3.5, 10.0), REPRODUCED),
    ((4.0, -8.0, 10.0), NOT_REPRODUCED),  # post-hoc adjustment hurts
    ((-8.0, 3.5, 10.0), NOT_REPRODUCED),  # LA loss hurts
    ((4.0, 3.5, -10.0), NOT_REPRODUCED),  # adding log pi back lowers overall accuracy
])
def test_the_verdict_follows_the_claim(gains, expected):
    assert verdict(LongTail().checks(_stats(*gains))) == expected
