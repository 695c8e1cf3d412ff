import math

import pytest
import torch

import kexue.experiments.rnn_gradients as rg
from kexue.evidence import verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.rnn_gradients import (
    CELLS,
    Regressor,
    RNNGradients,
    adding_problem,
    measure,
    train_until_solved,
)
from kexue.nn import make_cell

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adding_problem_marks_one_value_in_each_half_and_sums_them():
    x, y = adding_problem(200, 10, torch.Generator().manual_seed(0))
    assert x.shape == (200, 10, 2) and y.shape == (200, 1)
    markers = x[..., 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :5].sum(1) == 1).all() and (markers[:, 5:].sum(1) == 1).all()
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(1))
    with pytest.raises(ValueError, match="seq_len"):
        adding_problem(3, 1, torch.Generator())


def test_train_until_solved_stops_at_the_first_passing_check(monkeypatch):
    torch.manual_seed(0)
    model = Regressor(make_cell("gru", 2, 4))
    g = torch.Generator().manual_seed(1)
    assert train_until_solved(model, g, seq_len=6, max_steps=7, check_every=3, n_check=8) == (7, 0)
    monkeypatch.setattr(rg, "SUCCESS_MSE", float("inf"))
    assert train_until_solved(model, g, seq_len=6, max_steps=7, check_every=3, n_check=8) == (3, 0)


def test_train_until_solved_skips_non_finite_steps_and_keeps_weights_finite():
    torch.manual_seed(0)
    model = Regressor(make_cell("relu", 2, 4))
    with torch.no_grad():
        model.cell.weight_hh.fill_(1e3)  # the forward pass overflows float32
    before = [p.clone() for p in model.parameters()]
    steps, skipped = train_until_solved(model, torch.Generator().manual_seed(1), seq_len=20,
                                        max_steps=3, check_every=10, n_check=8)
    assert (steps, skipped) == (3, 3)
    for a, b in zip(before, model.parameters()):
        torch.testing.assert_close(a, b)


def test_measure_gives_a_curve_from_distance_zero_and_an_lstm_ratio():
    torch.manual_seed(0)
    x, _ = adding_problem(3, 8, torch.Generator().manual_seed(2))
    curve, ratio = measure(make_cell("lstm", 2, 4), x)
    assert curve.shape == (9,) and abs(curve[0].item()) < 1e-6  # ||[I 0]|| = 1
    assert ratio is not None and ratio > 0
    assert measure(make_cell("tanh", 2, 4), x)[1] is None


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path):
    exp = RNNGradients()
    torch.set_num_threads(2)  # the run uses one thread and gives the setting back
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert torch.get_num_threads() == 2
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {f"{c}/solved" for c in CELLS} <= set(run.metrics)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 5 and all(c.holds is None for c in checks)  # one seed: noise unknown
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert len(extra.figures) == 3 and all((tmp_path / f).exists() for f in extra.figures)
    assert "solved" in extra.tables[0]


def synthetic(lstm_far, tanh_far, ratio_init, ratio_trained, relu4, tanh4, seeds=5):
    runs = []
    for s in range(seeds):
        jitter = 0.01 * (s - 2)
        runs.append(Run({
            "trained/lstm/log10_grad@100": lstm_far + jitter,
            "trained/tanh/log10_grad@100": tanh_far - jitter,
            "init/lstm/secondary_to_forget": ratio_init + jitter,
            "trained/lstm/secondary_to_forget": ratio_trained + jitter,
            "radius4/relu/log10_grad@100": relu4 + jitter,
            "radius4/tanh/log10_grad@100": tanh4 - jitter,
        }))
    return _aggregate(runs, False)


def test_verdict_follows_the_claim():
    exp = RNNGradients()
    holds = synthetic(-0.5, -15.0, 0.4, 0.6, 12.0, -20.0)
    assert verdict(exp.checks(holds)) == "reproduced"
    assert verdict(exp.checks(synthetic(-0.5, -15.0, 0.4, 0.6, 44.0, 14.0))) == "reproduced"
    for false in (synthetic(-20.0, -15.0, 0.4, 0.6, 12.0, -20.0),  # LSTM decays faster
                  synthetic(-0.5, -15.0, 1.8, 0.6, 12.0, -20.0),  # secondary terms dominate
                  synthetic(-0.5, -15.0, 0.4, 0.6, -3.0, -20.0),  # relu does not explode
                  synthetic(-0.5, -15.0, 0.4, 0.6, 12.0, 20.0)):  # tanh explodes more
        assert verdict(exp.checks(false)) == "not reproduced"
