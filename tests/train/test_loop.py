"""Tests of kexue.train.loop: the schedule, clipping, logging, evaluation, data order,
checkpoint/resume after SIGKILL, and DDP under torchrun."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

from kexue.train import TrainConfig, fit, plain_step, seed_everything
from kexue.train.loop import length_grouped_batches, linear_warmup_decay

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _loop_script import make_data, make_model, mse

REPO = HERE.parent.parent
PYTHON = sys.executable


def _config(**kw) -> TrainConfig:
    base = {"steps": 10, "batch_size": 4, "progress": False}
    base.update(kw)
    return TrainConfig(**base)


def _full_mse(model: nn.Module, data) -> float:
    x = torch.stack([e[0] for e in data])
    y = torch.stack([e[1] for e in data])
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item()


class RecordingStep:
    """plain_step that also records the training flag and the gradient norm it produced."""

    def __init__(self):
        self.training, self.norms = [], []

    def __call__(self, model, batch, loss_fn):
        self.training.append(model.training)
        loss = plain_step(model, batch, loss_fn)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads])).item())
        return loss


# --- learning, schedule, clipping -----------------------------------------------------


def test_loss_decreases_on_a_learnable_problem():
    seed_everything(0)
    model, data = make_model(dropout=0.0), make_data(64)
    before = _full_mse(model, data)
    result = fit(model, mse, data, _config(steps=60, batch_size=16, lr=3e-2, clip_norm=None))
    after = _full_mse(model, data)
    assert result.step == 60
    assert after < 0.1 * before, (before, after)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_lr_schedule_warms_up_then_decays_linearly_to_zero():
    seed_everything(0)
    result = fit(make_model(), mse, make_data(16),
                 _config(steps=10, lr=0.5, warmup=0.3, log_every=1))
    lrs = [r["lr"] for r in result.history]
    # warm-up of 3 steps: 1/3, 2/3, 1; then (10 - i) / 7 for i = 3..9
    expected = [0.5 * k / 3 for k in (1, 2, 3)] + [0.5 * (10 - i) / 7 for i in range(3, 10)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert max(lrs) == pytest.approx(0.5) and lrs.index(max(lrs)) == 2
    factor = linear_warmup_decay(3, 10)
    assert factor(10) == 0.0 and factor(12) == 0.0  # zero after the last step, never negative


def test_warmup_in_steps_and_no_warmup():
    assert _config(steps=10, warmup=4).warmup_steps == 4
    assert _config(steps=10, warmup=0.25).warmup_steps == round(2.5)
    seed_everything(0)
    result = fit(make_model(), mse, make_data(16), _config(steps=4, lr=0.1, log_every=1))
    assert [r["lr"] for r in result.history] == pytest.approx([0.1, 0.075, 0.05, 0.025])


def test_clip_norm_bounds_the_update_and_the_log_shows_the_norm_before_clipping():
    seed_everything(0)
    model = make_model(dropout=0.0)
    data = [(x, 100 * y) for x, y in make_data(16)]  # large targets: large gradients
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    clipped = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: clipped.append(
        torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                              for p in model.parameters()])).item()))
    step = RecordingStep()
    result = fit(model, mse, data, _config(steps=6, clip_norm=0.5, log_every=1),
                 step=step, optimizer=optimizer)
    assert min(step.norms) > 0.5  # clipping was active at every step
    assert max(clipped) <= 0.5 * (1 + 1e-5)
    assert clipped == pytest.approx([0.5] * 6, rel=1e-5)
    assert [r["grad_norm"] for r in result.history] == pytest.approx(step.norms, rel=1e-5)


def test_no_clipping_leaves_gradients_alone_and_still_logs_their_norm():
    seed_everything(0)
    model = make_model(dropout=0.0)
    data = [(x, 100 * y) for x, y in make_data(16)]
    step = RecordingStep()
    result = fit(model, mse, data, _config(steps=4, clip_norm=None, log_every=2), step=step)
    assert [r["grad_norm"] for r in result.history] == pytest.approx(
        [step.norms[1], step.norms[3]], rel=1e-5)
    assert min(step.norms) > 1.0


def test_adamw_default_decays_matrices_only():
    # Zero loss gradient: an AdamW step is then pure decoupled decay, p <- p (1 - lr wd).
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, lambda m, b: 0.0 * m(b).sum(), [torch.randn(4) for _ in range(4)],
        _config(steps=1, lr=0.1, weight_decay=0.5))
    after = model.state_dict()
    torch.testing.assert_close(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name]), name


def test_param_groups_override_the_config():
    seed_everything(0)
    model = make_model(dropout=0.0)
    first_before = model[0].weight.clone()
    last_before = model[3].weight.clone()
    fit(model, mse, make_data(16), _config(steps=3),
        param_groups=[{"params": model[0].parameters(), "lr": 0.0},
                      {"params": model[3].parameters()}])
    assert torch.equal(model[0].weight, first_before)
    assert not torch.equal(model[3].weight, last_before)


# --- records and evaluation ----------------------------------------------------------


def test_metrics_jsonl_has_one_line_per_log_step(tmp_path):
    seed_everything(0)
    result = fit(make_model(), mse, make_data(16), _config(steps=12, log_every=5,
                                                           out_dir=tmp_path))
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10, 12]  # every 5 steps and the last one
    assert lines == result.history
    assert set(lines[0]) == {"step", "epoch", "loss", "lr", "grad_norm", "elapsed"}
    # a new (non-resumed) run in the same folder starts a new file
    fit(make_model(), mse, make_data(16), _config(steps=5, log_every=5, out_dir=tmp_path))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_logged_loss_is_the_mean_since_the_previous_record():
    seed_everything(0)
    losses = []

    def recording_step(model, batch, loss_fn):
        losses.append(plain_step(model, batch, loss_fn).item())
        return torch.tensor(losses[-1])

    result = fit(make_model(), mse, make_data(16), _config(steps=7, log_every=3),
                 step=recording_step)
    means = [np.mean(losses[0:3]), np.mean(losses[3:6]), np.mean(losses[6:7])]
    assert [r["loss"] for r in result.history] == pytest.approx(means, rel=1e-6)


def test_eval_fn_called_at_the_right_steps_in_eval_mode_without_grad(tmp_path):
    seed_everything(0)
    calls = []
    step = RecordingStep()

    def eval_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"score": float(len(calls))}

    model = make_model()
    result = fit(model, mse, make_data(16),
                 _config(steps=10, log_every=5, eval_every=4, out_dir=tmp_path),
                 eval_fn=eval_fn, step=step)
    assert calls == [(False, False)] * 3  # at steps 4, 8 and the last one (10)
    assert all(step.training) and model.training  # back in train mode after each eval
    steps = [r["step"] for r in result.history]
    assert steps == [4, 5, 8, 10]
    assert [r.get("eval_score") for r in result.history] == [1.0, None, 2.0, 3.0]
    assert result.last_eval == {"score": 3.0}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["eval_score"] == 1.0


def test_model_mode_is_restored():
    seed_everything(0)
    model = make_model().eval()
    step = RecordingStep()
    fit(model, mse, make_data(16), _config(steps=2), step=step)
    assert step.training == [True, True] and not model.training


# --- data order --------------------------------------------------------------------


def _orders(seed: int, shuffle: bool = True, steps: int = 9) -> list[list[int]]:
    seen = []

    def collate(indices):
        seen.append(list(indices))
        return torch.tensor(indices, dtype=torch.float32)

    model = nn.Linear(1, 1)
    fit(model, lambda m, b: m(b[:, None]).pow(2).mean(), list(range(10)),
        _config(steps=steps, batch_size=3, seed=seed, shuffle=shuffle), collate_fn=collate)
    return seen


def test_data_order_is_a_function_of_seed_and_epoch():
    a, b, c = _orders(seed=5), _orders(seed=5), _orders(seed=6)
    assert a == b and a != c
    # 10 examples in batches of 3: 4 batches per epoch, each epoch a permutation
    epochs = [[i for batch in a[e:e + 4] for i in batch] for e in (0, 4)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert [len(x) for x in a[:4]] == [3, 3, 3, 1]
    assert [i for b in _orders(seed=5, shuffle=False, steps=4) for i in b] == list(range(10))


def test_length_grouped_batches_sort_within_windows_and_keep_every_example():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]
    batches = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    out = length_grouped_batches(batches, lengths, window=2, generator=torch.Generator().manual_seed(0))
    assert sorted(out) == [[2, 4, 0], [3, 5, 1], [6, 8, 7], [9]]  # sorted within each window
    assert sorted(i for b in out for i in b) == list(range(10))
    assert sorted(len(b) for b in out) == [1, 3, 3, 3]
    for b in out:  # each batch is sorted longest first
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        length_grouped_batches(batches, lengths, window=0)


def test_fit_with_length_window_batches_by_length_and_is_a_function_of_seed_and_epoch():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]

    def orders(seed):
        seen = []

        def collate(indices):
            seen.append(list(indices))
            return torch.tensor(indices, dtype=torch.float32)

        fit(nn.Linear(1, 1), lambda m, b: m(b[:, None]).pow(2).mean(), list(range(10)),
            _config(steps=8, batch_size=3, seed=seed, length_window=4), collate_fn=collate,
            lengths=lengths)
        return seen

    a = orders(5)
    assert a == orders(5) and a != orders(6)
    for epoch in (a[:4], a[4:]):  # one window holds the whole epoch: sorted, then shuffled
        assert sorted(i for b in epoch for i in b) == list(range(10))
        ranked = sorted(epoch, key=lambda b: -lengths[b[0]])
        assert [lengths[i] for b in ranked for i in b] == sorted(lengths, reverse=True)[:len(
            [i for b in ranked for i in b])]
    with pytest.raises(ValueError, match="needs fit\\(..., lengths=...\\)"):
        fit(nn.Linear(1, 1), lambda m, b: m(b[:, None]).pow(2).mean(), list(range(10)),
            _config(length_window=2))
    with pytest.raises(ValueError, match="one length per example \\(10\\), got 3"):
        fit(nn.Linear(1, 1), lambda m, b: m(b[:, None]).pow(2).mean(), list(range(10)),
            _config(length_window=2), lengths=[1, 2, 3])


def test_drop_last_drops_the_short_batch():
    seen = []
    fit(nn.Linear(1, 1), lambda m, b: m(b[:, None]).pow(2).mean(), list(range(10)),
        _config(steps=6, batch_size=3, drop_last=True),
        collate_fn=lambda xs: seen.append(len(xs)) or torch.tensor(xs, dtype=torch.float32))
    assert seen == [3] * 6


# --- checkpoints and resume ----------------------------------------------------------


def _start_script(out: Path, steps: int, every: int, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CI="1")
    return subprocess.Popen([PYTHON, str(HERE / "_loop_script.py"), str(out), str(steps),
                             str(every), *extra], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


def _read_records(path: Path) -> list[dict]:
    return _without_time([json.loads(line) for line in path.read_text().splitlines()])


def test_sigkill_then_resume_matches_an_uninterrupted_run_bit_for_bit(tmp_path):
    full, broken = tmp_path / "full", tmp_path / "broken"
    done = _start_script(full, 20, 5)  # the two runs go side by side
    killed = _start_script(broken, 20, 5, "--kill-after", "13")
    code, err = _finish(done)
    assert code == 0, err
    code, err = _finish(killed)
    assert code == -signal.SIGKILL, err
    assert not (broken / "final.pt").exists()
    checkpoint = torch.load(broken / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 10  # mid-epoch: 6 batches per epoch
    assert checkpoint["state"]["position"] == 4
    # the killed run logged step 12 after its last checkpoint; resuming must drop it
    assert 12 in [r["step"] for r in _read_records(broken / "metrics.jsonl")]

    code, err = _finish(_start_script(broken, 20, 5, "--resume"))
    assert code == 0, err
    a = torch.load(full / "final.pt", weights_only=True)
    b = torch.load(broken / "final.pt", weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert _read_records(full / "metrics.jsonl") == _read_records(
        broken / "metrics.jsonl")


def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_stays_finished(tmp_path):
    def run(**kw):
        seed_everything(0)
        model = make_model()
        result = fit(model, mse, make_data(16),
                     _config(steps=6, checkpoint_every=3, out_dir=tmp_path, resume=True, **kw),
                     eval_fn=lambda m: {"mse": _full_mse(m, make_data(16))})
        return model, result

    first, r1 = run()
    second, r2 = run()  # the checkpoint is at the last step: nothing left to do
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], value)
    assert r2.step == 6 and r2.history == r1.history and r2.last_eval == r1.last_eval


def test_resume_rejects_an_incompatible_checkpoint(tmp_path):
    seed_everything(0)
    fit(make_model(), mse, make_data(16), _config(steps=6, checkpoint_every=3,
                                                  out_dir=tmp_path))
    with pytest.raises(ValueError, match="batch_size=4.*batch_size=2"):
        fit(make_model(), mse, make_data(16),
            _config(steps=6, batch_size=2, out_dir=tmp_path, resume=True))
    with pytest.raises(ValueError, match="at step 6, past the 5 steps of this run"):
        fit(make_model(), mse, make_data(16), _config(steps=5, out_dir=tmp_path, resume=True))


def test_a_nan_never_replaces_the_last_good_checkpoint(tmp_path):
    """A loss that turns NaN at step 13 (checkpoints every 5): the run stops at step 15
    without writing, the step-10 checkpoint stays, and a resume continues from it."""
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * float("nan") if calls["n"] == 13 else loss

    seed_everything(0)
    with pytest.raises(FloatingPointError, match="not finite at step 15"):
        fit(make_model(), poisoned, make_data(16),
            _config(steps=20, checkpoint_every=5, log_every=100, out_dir=tmp_path))
    good = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert good["state"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in good["model"].values())
    seed_everything(0)
    result = fit(make_model(), mse, make_data(16),
                 _config(steps=20, checkpoint_every=5, out_dir=tmp_path, resume=True))
    assert result.step == 20


def test_checkpoints_rotate_and_a_corrupt_one_falls_back(tmp_path):
    seed_everything(0)
    fit(make_model(), mse, make_data(16), _config(steps=9, checkpoint_every=3, out_dir=tmp_path))
    steps = {p.name: torch.load(p, weights_only=True)["state"]["step"]
             for p in sorted(tmp_path.glob("checkpoint*.pt"))}
    assert steps == {"checkpoint.pt": 9, "checkpoint.1.pt": 6}  # keep_checkpoints=2
    data = bytearray((tmp_path / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (tmp_path / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"checkpoint\.pt \(ValueError: checksum mismatch\).*"
                                         r"resuming from .*checkpoint\.1\.pt"):
        result = fit(make_model(), mse, make_data(16),
                     _config(steps=9, checkpoint_every=3, out_dir=tmp_path, resume=True))
    assert result.step == 9 and [r["step"] for r in result.history][-1] == 9


# --- DDP -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    from _loop_ddp_script import DDP_CONFIG, N_EXAMPLES, full_data_mse

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CI="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_free_port()), str(HERE / "_loop_ddp_script.py"), str(tmp_path)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # meanwhile, the same run in one process with batch 2 x 4: DistributedSampler
    # interleaves the shards of one permutation and DDP averages two equal-size means
    seed_everything(0)
    model = make_model(dropout=0.0)
    config = dict(DDP_CONFIG, batch_size=2 * DDP_CONFIG["batch_size"])
    data = make_data(N_EXAMPLES)
    single = fit(model, mse, data, TrainConfig(out_dir=tmp_path / "single", **config),
                 eval_fn=full_data_mse(data))

    code, err = _finish(proc, timeout=180)
    assert code == 0, err[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in ranks[0]["model"].items():
        assert torch.equal(ranks[1]["model"][name], value), name
    assert _without_time(ranks[0]["history"]) == _without_time(ranks[1]["history"])
    assert ranks[0]["last_eval"] == ranks[1]["last_eval"]
    # only rank 0 wrote the log (one line per record, not two) and the checkpoint
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(ranks[0]["history"])
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["world_size"] == 2

    for name, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][name], value, rtol=1e-5, atol=1e-5)
    assert [r["step"] for r in ranks[0]["history"]] == [r["step"] for r in single.history]
    assert [r["loss"] for r in ranks[0]["history"]] == pytest.approx(
        [r["loss"] for r in single.history], rel=1e-5)
    assert ranks[0]["last_eval"]["mse"] == pytest.approx(single.last_eval["mse"], rel=1e-5)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    ({"steps": 0}, "steps must be a positive int, got 0"),
    ({"steps": -3}, "steps must be a positive int, got -3"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ({"log_every": 0}, "log_every must be a positive int, got 0"),
    ({"eval_every": -1}, "eval_every must be an int >= 0 or 'epoch', got -1"),
    ({"eval_every": "step"}, "eval_every must be an int >= 0 or 'epoch', got 'step'"),
    ({"epochs": 2}, "steps or epochs"),
    ({"steps": None}, "steps or epochs"),
    ({"steps": None, "epochs": 0}, "epochs must be a finite number > 0, got 0"),
    ({"lr": 0.0}, "lr must be > 0, got 0.0"),
    ({"clip_norm": 0.0}, "clip_norm must be > 0 or None, got 0.0"),
    ({"betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
    ({"warmup": 20}, "warmup is 20 steps, more than steps=10"),
    ({"warmup": 2.5}, "must be whole, got 2.5"),
    ({"checkpoint_every": 5}, "out_dir is required"),
    ({"resume": True}, "out_dir is required"),
    ({"length_window": -1}, "length_window must be an int >= 0, got -1"),
])
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        _config(**kw)


def test_epochs_evaluate_and_checkpoint_at_each_epoch_end(tmp_path):
    """16 examples in batches of 4: 4 steps an epoch; 2.5 epochs = 10 steps; warm-up is a
    fraction of those. Equal to the same run counted in steps."""
    seen = []

    def evaluate(model):
        seen.append(1)
        return {"n": float(len(seen))}

    config = _config(steps=None, epochs=2.5, warmup=0.2, eval_every="epoch", log_every=100,
                     checkpoint_every="epoch", out_dir=tmp_path / "epochs", lr=0.1)
    result = fit(make_model(), mse, make_data(16), config, eval_fn=evaluate)
    assert result.step == 10
    assert [r["step"] for r in result.history] == [4, 8, 10]
    assert [r["epoch"] for r in result.history] == [0, 1, 2]
    by_steps = fit(make_model(), mse, make_data(16), _config(steps=10, warmup=2, lr=0.1,
                                                             log_every=100))
    assert [r["lr"] for r in result.history][-1] == by_steps.history[-1]["lr"]
    assert config.total_steps(4) == 10 and config.warmup_steps_of(10) == 2
    with pytest.raises(ValueError, match="warmup_steps_of"):
        _ = config.warmup_steps
    saved = torch.load(tmp_path / "epochs" / "checkpoint.pt", weights_only=True)
    assert saved["state"]["step"] == 10
    assert (tmp_path / "epochs" / "checkpoint.1.pt").is_file()  # the epoch-2 one, rotated


def test_non_scalar_loss_raises():
    with pytest.raises(ValueError, match=r"scalar floating tensor, got \(4, 1\)"):
        fit(make_model(), lambda m, b: (m(b[0]) - b[1]) ** 2, make_data(8), _config())


def test_step_must_be_callable_and_return_a_scalar():
    with pytest.raises(TypeError, match="step must be callable, got int"):
        fit(make_model(), mse, make_data(8), _config(), step=42)
    with pytest.raises(ValueError, match="scalar floating tensor"):
        fit(make_model(), mse, make_data(8), _config(), step=lambda m, b, f: None)


def test_bad_data_raises():
    class Stream(IterableDataset):
        def __iter__(self):
            yield from make_data(4)

    with pytest.raises(ValueError, match="map-style Dataset or a sequence.*got Stream"):
        fit(make_model(), mse, Stream(), _config())
    with pytest.raises(ValueError, match="train_data is empty"):
        fit(make_model(), mse, [], _config())
    with pytest.raises(ValueError, match="3 examples, too few for one batch of batch_size=4"):
        fit(make_model(), mse, make_data(3), _config(drop_last=True))


def test_other_bad_arguments_raise():
    model = make_model()
    with pytest.raises(ValueError, match="either optimizer or param_groups"):
        fit(model, mse, make_data(8), _config(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            param_groups=[{"params": model.parameters()}])
    with pytest.raises(ValueError, match="eval_fn must return a mapping"):
        fit(model, mse, make_data(8), _config(steps=1), eval_fn=lambda m: 0.5)
    frozen = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        fit(frozen, lambda m, b: m(b).sum(), [torch.ones(2)] * 4, _config())


def test_non_finite_loss_raises():
    with pytest.raises(FloatingPointError, match=r"training loss is nan over steps 1\.\.2"):
        fit(make_model(), lambda m, b: mse(m, b) * float("nan"), make_data(8),
            _config(log_every=2))


def test_seed_everything_reproduces_all_three_generators():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(()).item()

    seed_everything(11)
    a = draw()
    seed_everything(11)
    assert draw() == a
    with pytest.raises(ValueError, match="seed must be an int in"):
        seed_everything(-1)


def test_default_adamw_is_fused_and_equals_the_reference_update():
    from kexue.train.loop import _adamw

    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(3)]
    grads = [torch.randn_like(w) for w in weights]
    config = _config(lr=0.1, weight_decay=0.1)
    updated = []
    for make in (lambda g: _adamw(g, config),
                 lambda g: torch.optim.AdamW(g, lr=0.1, weight_decay=0.1, foreach=False)):
        params = [nn.Parameter(w.clone()) for w in weights]
        optimizer = make([{"params": params}])
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
        updated.append(params)
        if len(updated) == 1:
            assert optimizer.defaults["fused"] is True
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
