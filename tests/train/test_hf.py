"""kexue steps inside ``transformers.Trainer``: gradient accumulation, bf16, flooding."""

from __future__ import annotations

import copy
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from kexue.losses import flooding
from kexue.train import FGM, VAT, GradientPenaltyStep, plain_step
from kexue.train.hf import StepTrainer, use_step

N, SEQ = 8, 6


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 40, (N, SEQ), generator=g)
    mask = torch.ones(N, SEQ, dtype=torch.long)
    mask[::3, -2:] = 0  # some padding
    labels = torch.randint(0, 3, (N,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]}
            for i in range(N)]


def train_once(model, data, tmp_path, step_factory, batch_size, accumulation, **kw):
    """One optimiser step (SGD, no clipping); returns the parameter change."""
    net = copy.deepcopy(model)
    before = [p.detach().clone() for p in net.parameters()]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation, max_steps=1, max_grad_norm=0.0,
        lr_scheduler_type="constant", report_to=[], use_cpu=True, save_strategy="no",
        logging_steps=1, seed=0, disable_tqdm=True, **kw)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    trainer = transformers.Trainer(model=net, args=args, train_dataset=data,
                                   optimizers=(optimizer, None))
    use_step(trainer, step_factory(net) if step_factory else None)
    trainer.train()
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before)])
    return delta, trainer


STEPS = {
    # per-example perturbations: a micro-batch's perturbation does not depend on the others
    "fgm": lambda m: FGM(m, 0.5, where="output", norm="per_example"),
    "fgm-common": lambda m: FGM(m, 0.5, variant="common", where="output",
                                norm="per_example"),
    "vat": lambda m: VAT(m, epsilon=1.0, xi=1e-2, where="output", norm="per_example"),
}


@pytest.mark.parametrize("name", STEPS)
def test_accumulation_of_two_equals_one_step_on_the_doubled_batch(model, data, tmp_path, name):
    whole, _ = train_once(model, data, tmp_path, STEPS[name], batch_size=N, accumulation=1)
    halves, _ = train_once(model, data, tmp_path, STEPS[name], batch_size=N // 2,
                           accumulation=2)
    assert whole.abs().max() > 1e-3  # the step moved the weights
    torch.testing.assert_close(halves, whole, atol=1e-6, rtol=0)


def test_a_step_that_ignores_the_given_backward_fails_that_test(model, data, tmp_path):
    """The comparison above can fail: a step calling loss.backward() itself (the common
    PyTorch FGM recipe) is not divided by the accumulation steps."""
    def naive(m):
        return lambda model, batch, loss_fn, backward=None: plain_step(model, batch, loss_fn)

    whole, _ = train_once(model, data, tmp_path, naive, batch_size=N, accumulation=1)
    halves, _ = train_once(model, data, tmp_path, naive, batch_size=N // 2, accumulation=2)
    torch.testing.assert_close(halves, 2 * whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["fgm", "vat", "gp"])
def test_bf16_autocast_keeps_losses_finite(model, data, tmp_path, name):
    factory = STEPS.get(name) or (lambda m: GradientPenaltyStep(m, 1.0))
    delta, trainer = train_once(model, data, tmp_path, factory, batch_size=4, accumulation=2,
                                bf16=True)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    assert torch.isfinite(delta).all() and delta.abs().max() > 0


def test_flooding_and_step_trainer(model, data, tmp_path):
    """Below the flood level the update reverses: gradient ascent on the loss."""
    plain, trainer = train_once(model, data, tmp_path, None, batch_size=N, accumulation=1)
    loss = trainer.state.log_history[0]["loss"]
    net = copy.deepcopy(model)
    before = [p.detach().clone() for p in net.parameters()]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=N, max_steps=1,
        max_grad_norm=0.0, lr_scheduler_type="constant", report_to=[], use_cpu=True,
        save_strategy="no", seed=0, disable_tqdm=True)
    trainer = StepTrainer(model=net, args=args, train_dataset=data, flooding=loss + 1.0,
                          optimizers=(torch.optim.SGD(net.parameters(), lr=0.5), None))
    trainer.train()
    flooded = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before)])
    torch.testing.assert_close(flooded, -plain, atol=1e-6, rtol=0)
    assert flooding(torch.tensor(1.0), 2.0).item() == 3.0


def test_use_step_restores_and_validates(model, data, tmp_path):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = transformers.Trainer(model=copy.deepcopy(model), args=args, train_dataset=data)
    original = trainer.training_step
    use_step(trainer, flooding=0.1)
    assert trainer.training_step != original
    use_step(trainer)
    assert trainer.training_step == original
    with pytest.raises(ValueError, match="flood level"):
        use_step(trainer, flooding=-1)
    with pytest.raises(TypeError, match="step must be"):
        use_step(trainer, "fgm")
    with pytest.raises(TypeError, match="transformers.Trainer"):
        use_step(object(), plain_step)
