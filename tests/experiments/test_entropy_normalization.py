import math

import numpy as np
import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Skip, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.entropy_normalization import (
    FAMILIES,
    GRID,
    EntropyNormalization,
    error_by_iteration,
    posted_entropy_normalize,
    summarize_errors,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_posted_iteration_is_the_posts_numpy_snippet():
    rng = np.random.default_rng(0)
    p = rng.random(100)
    p /= p.sum()
    ours = posted_entropy_normalize(torch.from_numpy(p), math.log(30), iters=10).numpy()
    target = np.log(30)
    for _ in range(10):  # the post's code, verbatim apart from names
        h = -(p * np.log(p)).sum()
        gamma = 1 + (target - h) / (h**2 - (p * np.log(p) ** 2).sum())
        p = p**gamma
        p /= p.sum()
    np.testing.assert_allclose(ours, p, rtol=1e-12)
    assert abs(-(p * np.log(p)).sum() - target) < 1e-9  # the post's example converges


def test_error_by_iteration_and_summary():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 100, generator=g, dtype=torch.float64)
    p /= p.sum(-1, keepdim=True)
    target = torch.tensor([0.3, 1.0, 2.0, 3.0, 4.0, math.log(30)], dtype=torch.float64)
    errors = {m: error_by_iteration(p, target, m) for m in ("posted64", "kexue")}
    assert errors["kexue"].shape == (len(GRID), 6)
    ours = summarize_errors(errors["kexue"])
    assert ours["success"] == 1 and ours["nan"] == 0 and 1 <= ours["iters"] <= 30
    posted = summarize_errors(errors["posted64"])
    assert posted["nan"] > 0  # the low target underflows


def test_summary_counts_nan_and_iterations():
    errors = torch.full((len(GRID), 3), 1.0, dtype=torch.float64)
    errors[GRID.index(4):, 0] = 1e-9  # row 0 converges at 4 iterations
    errors[:, 2] = float("nan")
    s = summarize_errors(errors)
    assert s["success"] == pytest.approx(1 / 3) and s["nan"] == pytest.approx(1 / 3)
    assert s["iters"] == 4 and s["success_rough4"] == pytest.approx(1 / 3)


def test_smoke_run_gives_checks(tmp_path):
    exp = EntropyNormalization()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    try:
        run = exp.run(ctx)
    except Skip as e:
        pytest.skip(str(e))
    assert all(f"{f}/kexue/success" in run.metrics for f in FAMILIES)
    assert all(run.metrics[f"{f}/kexue/success"] == 1 for f in FAMILIES)
    stats = _aggregate([run], False)
    assert len(exp.checks(stats)) == 2 * len(FAMILIES)
    extra = exp.summarize(stats, [run], ctx)
    assert all((tmp_path / f).exists() for f in extra.figures)


def synthetic(posted: float, ours: float):
    runs = []
    for noise in (-0.01, 0.0, 0.01):
        metrics = {}
        for f in FAMILIES:
            metrics[f"{f}/posted64/success_rough4"] = posted + noise
            metrics[f"{f}/kexue/success"] = min(1.0, ours + noise / 10)  # success rates near 1 vary little
        runs.append(Run(metrics))
    return _aggregate(runs, False)


def test_verdicts_follow_the_measurements():
    exp = EntropyNormalization()
    assert verdict(exp.checks(synthetic(0.97, 1.0))) == REPRODUCED
    assert verdict(exp.checks(synthetic(0.5, 1.0))) == NOT_REPRODUCED  # the snippet fails
    assert verdict(exp.checks(synthetic(0.97, 0.8))) == NOT_REPRODUCED  # the solve fails
