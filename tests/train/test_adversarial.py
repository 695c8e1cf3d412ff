import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.train import (
    FGM,
    GradientPenaltyStep,
    PerturbationSite,
    gradient_penalty,
    normalize_perturbation,
)
from kexue.train.step import plain_step


class Tiny(nn.Module):
    """Embedding -> tanh -> mean over the sequence -> linear: a smooth text classifier."""

    def __init__(self, vocab: int = 11, dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lin = nn.Linear(dim, classes)

    def get_input_embeddings(self) -> nn.Module:
        return self.emb

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.emb(ids)).mean(1))  # (batch, classes)


def loss_fn(model, batch):
    ids, y = batch
    return F.cross_entropy(model(ids), y)


def make(seed=0):
    torch.manual_seed(seed)
    model = Tiny().double()
    ids = torch.randint(0, 11, (4, 5))
    y = torch.randint(0, 3, (4,))
    return model, (ids, y)


def grads_of(model, step, batch):
    model.zero_grad(set_to_none=True)
    step(model, batch, loss_fn)
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def penalised_grads(model, batch, where, penalty):
    """Parameter gradient of L + penalty(g), g = dL/dx at the site, by double backward."""
    model.zero_grad(set_to_none=True)
    site = PerturbationSite(model, where)
    with site.capture() as xs:
        loss = loss_fn(model, batch)
    (g,) = torch.autograd.grad(loss, xs, create_graph=True)
    (loss + penalty(g)).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("where,norm", [("weight", "global"), ("output", "global"),
                                        ("output", "per_example")])
def test_fgm_is_first_order_gradient_penalty(where, norm):
    model, batch = make()
    eps = 1e-4
    if norm == "global":
        def penalty(g):
            return eps * g.norm()
    else:
        def penalty(g):
            return eps * g.flatten(1).norm(dim=1).sum()
    fgm = grads_of(model, FGM(model, eps, where=where, norm=norm), batch)
    reference = penalised_grads(model, batch, where, penalty)
    plain = grads_of(model, plain_step, batch)
    first_order = (reference - plain).norm()  # O(eps), the effect being tested
    assert first_order > 1e-7
    assert (fgm - reference).norm() < 1e-3 * first_order  # O(eps^2) remainder


def test_unnormalised_fgm_matches_half_squared_penalty():
    model, batch = make(1)
    eps = 1e-4
    fgm = grads_of(model, FGM(model, eps, where="output", norm=None), batch)
    gp = grads_of(model, GradientPenaltyStep(model, eps, where="output"), batch)
    plain = grads_of(model, plain_step, batch)
    assert (gp - plain).norm() > 1e-8
    assert (fgm - gp).norm() < 1e-3 * (gp - plain).norm()


def test_common_variant_adds_clean_and_adversarial_gradients():
    model, batch = make(2)
    author = grads_of(model, FGM(model, 0.3, variant="author"), batch)
    common = grads_of(model, FGM(model, 0.3, variant="common"), batch)
    plain = grads_of(model, plain_step, batch)
    torch.testing.assert_close(common, plain + author)


def test_fgm_author_perturbation_is_epsilon_times_unit_gradient():
    model, batch = make(3)
    eps = 0.7
    seen = []

    def recording_loss(m, b):
        seen.append(m.emb.weight.detach().clone())
        return loss_fn(m, b)

    model.zero_grad()
    loss = FGM(model, eps)(model, batch, recording_loss)
    (g,) = torch.autograd.grad(loss_fn(model, batch), model.emb.weight)
    torch.testing.assert_close(seen[1] - seen[0], eps * g / g.norm())
    torch.testing.assert_close(loss, loss_fn(model, batch).detach())  # clean loss reported


@pytest.mark.parametrize("where", ["weight", "output"])
def test_embedding_restored_when_the_step_raises(where):
    model, batch = make(4)
    weight = model.emb.weight
    before = weight.detach().clone()
    calls = []

    def failing(m, b):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return loss_fn(m, b)

    with pytest.raises(RuntimeError, match="boom"):
        FGM(model, 1.0, where=where)(model, batch, failing)
    assert model.emb._parameters["weight"] is weight
    assert torch.equal(model.emb.weight, before)
    assert not model.emb._forward_hooks and not model.emb._forward_pre_hooks
    # and the model still trains normally
    grads_of(model, plain_step, batch)
    assert torch.equal(model.emb.weight, before)


def test_fgm_leaves_weights_unchanged_after_a_normal_step():
    model, batch = make(5)
    before = [p.detach().clone() for p in model.parameters()]
    FGM(model, 1.0)(model, batch, loss_fn)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.emb._parameters["weight"].__class__ is nn.Parameter


def test_fgm_input_site_on_float_features():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 2, (6,))
    eps = 1e-4

    def mlp_loss(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    mlp.zero_grad()
    FGM(mlp, eps, where="input", norm="per_example")(mlp, (x, y), mlp_loss)
    fgm = torch.cat([p.grad.flatten() for p in mlp.parameters()])
    mlp.zero_grad()
    xr = x.clone().requires_grad_()
    loss = mlp_loss(mlp, (xr, y))
    (g,) = torch.autograd.grad(loss, xr, create_graph=True)
    (loss + eps * g.norm(dim=1).sum()).backward()
    ref = torch.cat([p.grad.flatten() for p in mlp.parameters()])
    mlp.zero_grad()
    mlp_loss(mlp, (x, y)).backward()
    plain = torch.cat([p.grad.flatten() for p in mlp.parameters()])
    assert (fgm - ref).norm() < 1e-3 * (ref - plain).norm()


def test_gradient_penalty_value_and_double_backward():
    torch.manual_seed(0)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)

    def penalised(w, x):
        loss = torch.tanh(x @ w.T).pow(2).sum()
        return gradient_penalty(loss, x, epsilon=0.3)

    loss = torch.tanh(x @ w.T).pow(2).sum()
    (g,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(penalised(w, x), loss + 0.15 * g.pow(2).sum())
    assert torch.autograd.gradcheck(penalised, (w, x))


def test_gradient_penalty_step_matches_function():
    model, batch = make(6)
    step = grads_of(model, GradientPenaltyStep(model, 0.5), batch)
    ref = penalised_grads(model, batch, "output", lambda g: 0.25 * g.pow(2).sum())
    torch.testing.assert_close(step, ref)


def test_gradient_penalty_step_through_fused_attention():
    # with dropout 0, nn.MultiheadAttention takes a fused SDPA kernel that has no double
    # backward; the step must still work (it selects the math kernel)
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Embedding(7, 8), nn.TransformerEncoder(layer, 1,
                                                                    enable_nested_tensor=False))
    ids = torch.randint(0, 7, (2, 5))

    def encoder_loss(m, b):
        return m(b).pow(2).mean()

    GradientPenaltyStep(model[0], 1.0)(model, ids, encoder_loss)
    assert all(p.grad is not None for p in model.parameters())


def test_frozen_embedding_output_site_still_works():
    model, batch = make(7)
    model.emb.weight.requires_grad_(False)
    model.zero_grad()
    FGM(model, 0.5, where="output")(model, batch, loss_fn)
    assert model.lin.weight.grad is not None and model.emb.weight.grad is None
    with pytest.raises(ValueError, match="embedding"):
        FGM(model, 0.5, where="weight")


def test_hugging_face_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    model.train()
    batch = {"input_ids": torch.randint(0, 50, (3, 7)), "labels": torch.tensor([0, 1, 1])}

    def hf_loss(m, b):
        return m(**b).loss

    emb = model.get_input_embeddings().weight
    before = emb.detach().clone()
    for step in (FGM(model, 0.5), FGM(model, 0.5, where="output", norm="per_example"),
                 GradientPenaltyStep(model, 1.0)):
        model.zero_grad()
        loss = step(model, batch, hf_loss)
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert emb.grad is not None and torch.isfinite(emb.grad).all()
        assert torch.equal(emb, before)


def test_normalize_perturbation():
    g = [torch.tensor([[3.0, 4.0], [0.0, 1.0]])]
    torch.testing.assert_close(normalize_perturbation(g, "global", eps=0)[0].norm(),
                               torch.tensor(1.0))
    per = normalize_perturbation(g, "per_example", eps=0)[0]
    torch.testing.assert_close(per.norm(dim=1), torch.ones(2))
    assert normalize_perturbation(g, None)[0] is g[0]
    zero = normalize_perturbation([torch.zeros(2, 3)], "per_example")[0]
    assert torch.equal(zero, torch.zeros(2, 3))  # no NaN for a zero gradient


def test_bad_input():
    model, batch = make()
    for eps in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="epsilon"):
            FGM(model, eps)
        with pytest.raises(ValueError, match="epsilon"):
            GradientPenaltyStep(model, eps)
    with pytest.raises(ValueError, match="weight"):
        FGM(nn.ReLU(), 1.0)
    with pytest.raises(ValueError, match="per_example"):
        FGM(model, 1.0, norm="per_example")
    with pytest.raises(ValueError, match="variant"):
        FGM(model, 1.0, variant="madry")
    with pytest.raises(ValueError, match="where"):
        FGM(model, 1.0, where="somewhere")
    with pytest.raises(ValueError, match="scalar"):
        FGM(model, 1.0)(model, batch, lambda m, b: F.cross_entropy(m(b[0]), b[1],
                                                                   reduction="none"))
    with pytest.raises(ValueError, match="not called"):
        FGM(nn.Embedding(3, 2), 1.0, where="output")(model, batch, loss_fn)
    with pytest.raises(ValueError, match="does not depend"):
        FGM(nn.Embedding(3, 2), 1.0)(model, batch, loss_fn)
    x = torch.randn(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match="loss"):
        gradient_penalty(x.sum(0), x)
    with pytest.raises(ValueError, match="inputs"):
        gradient_penalty(x.sum(), torch.randn(3, 2))
    with pytest.raises(ValueError, match="epsilon"):
        gradient_penalty(x.sum(), x, epsilon=-1)


def test_in_fit_and_hand_written_loop():
    from kexue.train.loop import TrainConfig, fit

    model, _ = make(8)
    torch.manual_seed(8)
    data = [(torch.randint(0, 11, (5,)), int(torch.randint(0, 3, ()))) for _ in range(16)]
    for step in (FGM(model, 0.5), FGM(model, 0.5, variant="common", where="output"),
                 GradientPenaltyStep(model, 1.0)):
        result = fit(model, loss_fn, data, TrainConfig(steps=3, batch_size=4, progress=False),
                     step=step)
        assert result.step == 3
    # hand-written loop: the loss goes down on a fixed batch
    ids = torch.stack([d[0] for d in data])
    y = torch.tensor([d[1] for d in data])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    fgm = FGM(model, 0.1)
    first = None
    for _ in range(30):
        loss = fgm(model, (ids, y), loss_fn)
        opt.step()
        opt.zero_grad()
        first = loss if first is None else first
    assert loss < first


def _ddp_helpers():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _robust_ddp_script

    return _robust_ddp_script


def test_steps_accept_a_ddp_wrapped_model(tmp_path):
    """One process (world size 1): a DDP-wrapped model gives the plain model's gradients."""
    import torch.distributed as dist

    helpers = _ddp_helpers()
    data = helpers.make_data()[:8]
    batch = (torch.stack([x for x, _ in data]), torch.tensor([t for _, t in data]))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        for name in helpers.make_steps(helpers.make_model()):
            grads = []
            for wrap in (False, True):
                model = helpers.make_model()
                step = helpers.make_steps(model)[name]
                wrapped = nn.parallel.DistributedDataParallel(model) if wrap else model
                torch.manual_seed(0)
                step(wrapped, batch, helpers.loss_fn)
                grads.append([p.grad.clone() for p in model.parameters()])
            for a, b in zip(*grads):
                torch.testing.assert_close(a, b)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_steps_under_ddp_with_two_processes(tmp_path):
    """Under torchrun the extra passes run in no_sync(); the final backward reduces all
    gradients. FGM (common, per-example) is batch-size free, so 2 x 4 equals 1 x 8."""
    here = Path(__file__).resolve().parent
    helpers = _ddp_helpers()
    make_model, make_steps = helpers.make_model, helpers.make_steps

    from kexue.train.loop import TrainConfig, fit

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CI="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(port), str(here / "_robust_ddp_script.py"), str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its two workers
        _, err = proc.communicate()
        pytest.fail("torchrun did not finish in 300 s: " + err[-2000:])
    assert proc.returncode == 0, err[-3000:]
    initial = make_model().state_dict()
    for name in make_steps(make_model()):
        ranks = [torch.load(tmp_path / f"{name}_rank{r}.pt", weights_only=True) for r in (0, 1)]
        for key, value in ranks[0].items():
            assert torch.equal(ranks[1][key], value), (name, key)
            assert torch.isfinite(value).all()
        assert not torch.equal(ranks[0]["lin.weight"], initial["lin.weight"])
    model = make_model()
    step = make_steps(model)["fgm_common_per_example"]
    fit(model, helpers.loss_fn, helpers.make_data(),
        TrainConfig(**dict(helpers.CONFIG, batch_size=8)), step=step)
    ddp = torch.load(tmp_path / "fgm_common_per_example_rank0.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
