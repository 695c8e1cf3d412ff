"""Property-based checks (hypothesis) across losses, masks and positions, and the errors
library functions raise for bad input.

Properties: for logits of any magnitude a float32 (or bfloat16) loss and its gradient are
finite; the invariances the docstrings state hold (CoSENT depends only on the order of the
labels and on score differences; the multilabel CE is symmetric in swapping positive and
negative roles with negated scores; masks are boolean and consistent with their definition).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from kexue.losses import (
    LogitAdjustedLoss,
    cosent_loss,
    focal_loss,
    hard_truncation_loss,
    multilabel_categorical_crossentropy,
    posthoc_logit_adjust,
)
from kexue.models import GPT2, Bert, BertConfig
from kexue.models.hf import GPT2Config
from kexue.nn import causal_mask, permutation_mask, sinusoidal_embedding, unilm_mask

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DTYPES = hs.sampled_from([torch.float32, torch.bfloat16])
MAGNITUDE = hs.sampled_from([1e-3, 1.0, 30.0, 1e4, 1e30])


def _logits(seed: int, shape: tuple[int, ...], magnitude: float, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * magnitude).clamp(-3e38, 3e38)
    return x.to(dtype).requires_grad_()


def _finite_with_grad(loss: torch.Tensor, x: torch.Tensor) -> bool:
    loss.backward()
    return bool(torch.isfinite(loss).all()) and bool(torch.isfinite(x.grad).all())


@SETTINGS
@given(seed=hs.integers(0, 10_000), mag=MAGNITUDE, dtype=DTYPES, batch=hs.integers(2, 16))
def test_cosent_finite_and_label_order_invariant(seed, mag, dtype, batch):
    x = _logits(seed, (batch,), min(mag, 1.0), dtype)  # cosines live in [-1, 1]
    g = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, 5, (batch,), generator=g).float()
    loss = cosent_loss(x, labels)
    assert _finite_with_grad(loss, x)
    # a monotone relabelling and a shift of all scores change nothing
    same = cosent_loss(x.detach().float() + 0.3, labels * 7 - 2)
    torch.testing.assert_close(same, loss.detach().float(), rtol=2e-2, atol=2e-2)


@SETTINGS
@given(seed=hs.integers(0, 10_000), mag=MAGNITUDE, dtype=DTYPES, classes=hs.integers(2, 9))
def test_classification_losses_are_finite_for_extreme_logits(seed, mag, dtype, classes):
    x = _logits(seed, (6, classes), mag, dtype)
    target = torch.randint(0, classes, (6,), generator=torch.Generator().manual_seed(seed))
    for loss_fn in (lambda z: focal_loss(z, target, gamma=2.0),
                    lambda z: hard_truncation_loss(z, target, m=0.5)):
        z = x.detach().clone().requires_grad_()
        assert _finite_with_grad(loss_fn(z), z)
    priors = torch.softmax(torch.randn(classes, generator=torch.Generator().manual_seed(seed)), 0)
    z = x.detach().clone().requires_grad_()
    assert _finite_with_grad(LogitAdjustedLoss(priors)(z, target), z)


@SETTINGS
@given(seed=hs.integers(0, 10_000), mag=MAGNITUDE, dtype=DTYPES, labels=hs.integers(2, 12))
def test_multilabel_ce_finite_and_symmetric(seed, mag, dtype, labels):
    x = _logits(seed, (5, labels), mag, dtype)
    y = (torch.rand(5, labels, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    loss = multilabel_categorical_crossentropy(x, y)
    assert _finite_with_grad(loss, x)
    # swapping the roles of positives and negatives with negated scores is the same loss
    mirrored = multilabel_categorical_crossentropy(-x.detach(), 1 - y)
    torch.testing.assert_close(mirrored.float(), loss.detach().float(), rtol=1e-2, atol=1e-2)


@SETTINGS
@given(seed=hs.integers(0, 1000), n=hs.integers(1, 12))
def test_masks_match_their_definitions(seed, n):
    g = torch.Generator().manual_seed(seed)
    segments = (torch.arange(n) >= torch.randint(0, n + 1, (1,), generator=g)).long()[None]
    m = unilm_mask(segments)[0]  # (n, n): i sees j iff j is in segment 0 or j <= i
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    assert torch.equal(m, (segments[0][j] == 0) | (j <= i))
    order = torch.randperm(n, generator=g)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    assert torch.equal(permutation_mask(order[None])[0], rank[j] <= rank[i])
    assert torch.equal(causal_mask(n), j <= i)


@SETTINGS
@given(pos=hs.integers(0, 100_000), dim=hs.sampled_from([2, 8, 64]))
def test_sinusoidal_positions_are_bounded_and_finite(pos, dim):
    e = sinusoidal_embedding(torch.tensor([[pos]]), dim)
    assert torch.isfinite(e).all() and e.abs().max() <= 1.0 + 1e-6


# --- errors for bad input ------------------------------------------------------------


@pytest.mark.parametrize("scale", [float("nan"), -20.0, 0.0, float("inf")])
def test_cosent_rejects_a_bad_scale(scale):
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        cosent_loss(torch.randn(4), torch.arange(4.0), scale=scale)


def test_cosent_rejects_labels_of_another_shape():
    with pytest.raises(ValueError, match=r"labels of shape \(batch,\).*\(2, 2\)"):
        cosent_loss(torch.randn(4), torch.arange(4.0).reshape(2, 2))


@pytest.mark.parametrize("priors", [torch.tensor([0.5, float("nan")]),
                                    torch.tensor([1.5, -0.5]), torch.tensor([0.5, float("inf")])])
def test_logit_adjustment_rejects_bad_priors(priors):
    with pytest.raises(ValueError, match="class_priors must be"):
        LogitAdjustedLoss(priors)
    with pytest.raises(ValueError, match="class_priors must be"):
        posthoc_logit_adjust(torch.randn(3, 2), priors)


def _tiny_bert() -> Bert:
    return Bert(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32,
                           max_position_embeddings=16))


def _tiny_gpt2() -> GPT2:
    return GPT2(GPT2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, max_position_embeddings=16))


@pytest.mark.parametrize("make", [_tiny_bert, _tiny_gpt2])
@pytest.mark.parametrize("ids, match", [
    (torch.tensor([[1, 2, 50]]), r"\[0, 50\).*got 50"),
    (torch.tensor([[1, -3, 2]]), r"\[0, 50\).*got -3"),
    (torch.zeros(1, 0, dtype=torch.long), "at least one token"),
    (torch.zeros(2, 3), "integer"),
])
def test_models_reject_bad_ids(make, ids, match):
    with pytest.raises(ValueError, match=match):
        make()(ids)


def test_damaged_checkpoint_files_are_named(tmp_path):
    folder = tmp_path / "m"
    _tiny_bert().save_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=str(folder / "config.json")):
        Bert.from_pretrained(folder)
    _tiny_bert().save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=str(folder / "model.safetensors")):
        Bert.from_pretrained(folder)


def test_damaged_gzip_data_is_named(tmp_path, monkeypatch):
    from kexue import data

    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "sentiment.valid.data.gz").write_bytes(b"\x1f\x8b not gzip")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="sentiment.valid.data.gz"):
        data.load_sentiment("valid")


def test_gradients_stay_finite_in_bfloat16_attention():
    model = _tiny_bert().to(torch.bfloat16)
    out = model(torch.randint(0, 50, (2, 8))).last_hidden_state
    out.float().pow(2).mean().backward()
    assert all(torch.isfinite(p.grad.float()).all() for p in model.parameters()
               if p.grad is not None)
    assert math.isfinite(out.float().abs().max().item())
