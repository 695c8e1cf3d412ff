import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.vae_density import KS, VAEDensity, binarized_digits, estimates_by_k

pytestmark = pytest.mark.usefixtures("one_thread")


def test_estimates_by_k_average_disjoint_blocks():
    log_w = torch.log(torch.tensor([[1.0], [3.0], [2.0], [6.0]]))
    out = estimates_by_k(log_w, (1, 2, 4))
    assert out[1] == pytest.approx(torch.log(torch.tensor([1.0, 3, 2, 6])).mean().item())
    assert out[2] == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert out[4] == pytest.approx(math.log(3))


def test_binarized_digits_split():
    pytest.importorskip("sklearn")
    train, test = binarized_digits()
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert set(train.unique().tolist()) == {0.0, 1.0}


def test_smoke_run_gives_checks(tmp_path):
    pytest.importorskip("sklearn")
    exp = VAEDensity()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert run.metrics["vae/ll_500"] > run.metrics["vae/elbo"]
    stats = _aggregate([run], False)
    assert len(exp.checks(stats)) == 5
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()


def synthetic(iwae_gain: float, tail: float):
    runs = []
    for noise in (-0.02, 0.0, 0.02):
        m = {}
        for name, shift in (("vae", 0.0), ("iwae", iwae_gain)):
            m[f"{name}/elbo"] = -18 + noise
            for i, k in enumerate(KS):
                m[f"{name}/ll_{k}"] = -18 + shift + 1 - 1 / (i + 1) + noise
            m[f"{name}/tail_fraction"] = tail
            m[f"{name}/gain_over_elbo"] = m[f"{name}/ll_5000"] - m[f"{name}/elbo"]
            m[f"{name}/gain_1_to_100"] = m[f"{name}/ll_100"] - m[f"{name}/ll_1"]
            m[f"{name}/gain_100_to_top"] = m[f"{name}/ll_5000"] - m[f"{name}/ll_100"]
        runs.append(Run(m))
    return _aggregate(runs, False)


def test_verdicts_follow_the_measurements():
    exp = VAEDensity()
    assert verdict(exp.checks(synthetic(0.5, 0.02))) == REPRODUCED
    assert verdict(exp.checks(synthetic(-0.5, 0.02))) == NOT_REPRODUCED  # IWAE worse
    assert verdict(exp.checks(synthetic(0.5, 0.5))) == NOT_REPRODUCED  # not converged
