"""Step protocol v2: every parameter backward goes through ``backward=``; a loss function
may return ``(loss, outputs)`` and VAT / noise consistency reuse the outputs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.train import (
    FGM,
    VAT,
    GradientPenaltyStep,
    NoiseConsistency,
    plain_step,
    split_loss,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 3)

    def get_input_embeddings(self) -> nn.Module:
        return self.emb

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.emb(ids)).mean(1))  # (batch, classes)


def make():
    torch.manual_seed(0)
    return Tiny().double(), (torch.randint(0, 11, (4, 5)), torch.randint(0, 3, (4,)))


def loss_only(model, batch):
    ids, y = batch
    return F.cross_entropy(model(ids), y)


def loss_and_logits(model, batch):
    ids, y = batch
    logits = model(ids)
    return F.cross_entropy(logits, y), logits


def predict(model, batch):
    return model(batch[0])


STEPS = {
    "plain": lambda m: plain_step,
    "fgm-author": lambda m: FGM(m, 0.3),
    "fgm-common": lambda m: FGM(m, 0.3, variant="common", where="output"),
    "fgm-common-unnormalised": lambda m: FGM(m, 0.3, variant="common", where="output",
                                             norm=None),
    "gradient-penalty": lambda m: GradientPenaltyStep(m, 0.5),
    "vat": lambda m: VAT(m, predict_fn=predict, where="output", norm="per_example", xi=1e-3),
    "noise": lambda m: NoiseConsistency(m, 0.1, predict_fn=predict),
}


def grads(model, step, batch, loss_fn, **kwargs):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same random directions for VAT and noise
    loss = step(model, batch, loss_fn, **kwargs)
    return loss, torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("name", STEPS)
def test_every_backward_goes_through_the_given_backward(name):
    model, batch = make()
    step = STEPS[name](model)
    loss, reference = grads(model, step, batch, loss_only)
    calls = []

    def scaled_backward(x):
        calls.append(x.detach())
        (x / 4).backward()

    scaled_loss, scaled = grads(model, step, batch, loss_only, backward=scaled_backward)
    torch.testing.assert_close(scaled, reference / 4)  # a missed backward would not be /4
    torch.testing.assert_close(scaled_loss, loss)  # the reported loss is the clean one
    assert calls


@pytest.mark.parametrize("name", ["vat", "noise"])
def test_consistency_steps_reuse_the_clean_outputs(name):
    model, batch = make()
    step = STEPS[name](model)
    forwards = []
    model.register_forward_hook(lambda *a: forwards.append(1))
    _, without = grads(model, step, batch, loss_only)
    n_without = len(forwards)
    forwards.clear()
    _, with_outputs = grads(model, step, batch, loss_and_logits)
    torch.testing.assert_close(with_outputs, without)  # same clean prediction, same update
    assert len(forwards) == n_without - 1  # the no-grad clean forward is gone


def test_fgm_and_gp_accept_loss_and_outputs():
    model, batch = make()
    for name in ("fgm-author", "fgm-common", "gradient-penalty", "plain"):
        step = STEPS[name](model)
        _, a = grads(model, step, batch, loss_only)
        _, b = grads(model, step, batch, loss_and_logits)
        torch.testing.assert_close(a, b, msg=name)


def test_split_loss():
    loss = torch.tensor(1.0)
    assert split_loss(loss) == (loss, None)
    assert split_loss((loss, "out")) == (loss, "out")
    with pytest.raises(ValueError, match="pair"):
        split_loss((loss, 1, 2))
    with pytest.raises(ValueError, match="scalar floating"):
        split_loss((torch.ones(2), None))


@pytest.mark.parametrize("name", ["fgm-author", "fgm-common", "vat", "gradient-penalty"])
def test_losses_stay_finite_under_bf16_autocast(name):
    model, batch = make()
    model = model.float()
    step = STEPS[name](model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, g = grads(model, step, batch, loss_and_logits)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
