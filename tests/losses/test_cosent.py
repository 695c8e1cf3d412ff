"""CoSENT (kexue.fm/archives/8847) and its baselines against direct formulas and
sentence-transformers' CoSENTLoss / SoftmaxLoss / CosineSimilarityLoss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from kexue.losses import (
    CoSENTLoss,
    SBERTSoftmaxLoss,
    cosent_loss,
    cosent_loss_from_embeddings,
    cosent_loss_pairwise,
    cosine_mse_loss,
    pair_cosine,
)

st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")


def brute_force(scores: torch.Tensor, labels: torch.Tensor, scale: float) -> float:
    """log(1 + sum over ordered pairs y_i > y_j of exp(scale (s_j - s_i))), in Python floats."""
    s, y = scores.double().tolist(), labels.double().tolist()
    total = 1.0
    for i, j in itertools.product(range(len(s)), repeat=2):
        if y[i] > y[j]:
            total += math.exp(scale * (s[j] - s[i]))
    return math.log(total)


def random_batch(batch: int, dim: int, dtype: torch.dtype, labels: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(batch, dim, generator=g, dtype=torch.float64).to(dtype)
    if labels == "int":  # many ties, like STS-B-zh integer scores
        y = torch.randint(0, 6, (batch,), generator=g)
    elif labels == "bool":
        y = torch.rand(batch, generator=g) > 0.5
    else:
        y = torch.rand(batch, generator=g) * 5
    return u, v, y


@pytest.mark.parametrize("labels", ["float", "int", "bool"])
@pytest.mark.parametrize("batch", [2, 7, 64])
def test_equals_sentence_transformers_float64(batch: int, labels: str) -> None:
    ref = st_losses.CoSENTLoss(model=None, scale=20.0)
    for seed in range(5):
        u, v, y = random_batch(batch, 16, torch.float64, labels, seed)
        expected = ref.compute_loss_from_embeddings([u, v], y)
        got = cosent_loss_from_embeddings(u, v, y, scale=20.0)
        assert abs(got.item() - expected.item()) <= 1e-6 * max(1.0, abs(expected.item()))
        assert abs(got.item() - expected.item()) <= 1e-10


def test_equals_sentence_transformers_float32() -> None:
    ref = st_losses.CoSENTLoss(model=None, scale=20.0)
    for seed in range(10):
        u, v, y = random_batch(128, 32, torch.float32, "float", seed)
        expected = ref.compute_loss_from_embeddings([u, v], y)
        got = cosent_loss_from_embeddings(u, v, y)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_gradients_equal_sentence_transformers() -> None:
    ref = st_losses.CoSENTLoss(model=None, scale=20.0)
    u, v, y = random_batch(32, 8, torch.float64, "int", 3)
    u1, v1 = u.clone().requires_grad_(), v.clone().requires_grad_()
    u2, v2 = u.clone().requires_grad_(), v.clone().requires_grad_()
    cosent_loss_from_embeddings(u1, v1, y).backward()
    ref.compute_loss_from_embeddings([u2, v2], y).backward()
    torch.testing.assert_close(u1.grad, u2.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("labels", ["float", "int", "bool"])
def test_fast_path_equals_pairwise_and_brute_force(labels: str) -> None:
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        s = torch.rand(9, generator=g, dtype=torch.float64) * 2 - 1
        _, _, y = random_batch(9, 1, torch.float64, labels, seed)
        for scale in (1.0, 20.0):
            fast = cosent_loss(s, y, scale=scale).item()
            pairwise = cosent_loss_pairwise(s, y, scale=scale).item()
            assert fast == pytest.approx(brute_force(s, y, scale), rel=1e-12, abs=1e-12)
            assert pairwise == pytest.approx(brute_force(s, y, scale), rel=1e-12, abs=1e-12)


def test_all_equal_labels_give_zero_loss_and_zero_gradient() -> None:
    s = torch.randn(16, dtype=torch.float64, requires_grad=True)
    for f in (cosent_loss, cosent_loss_pairwise):
        loss = f(s, torch.full((16,), 3.0))
        assert loss.item() == 0.0
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(64, generator=g) * 2 - 1).to(dtype)
    y = torch.randint(0, 6, (64,), generator=g)
    expected = cosent_loss(s.float(), y)  # the same (rounded) scores, in fp32
    for f in (cosent_loss, cosent_loss_pairwise):
        got = f(s, y)
        assert got.dtype == torch.float32
        assert torch.isfinite(got)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    u, v, _ = random_batch(64, 16, dtype, "float", 1)
    got = cosent_loss_from_embeddings(u, v, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, cosent_loss_from_embeddings(u.float(), v.float(), y))


def test_gradcheck() -> None:
    u, v, y = random_batch(6, 4, torch.float64, "int", 7)
    y[0] = 0
    y[1] = 5  # at least one ordered pair
    u.requires_grad_()
    v.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: cosent_loss_from_embeddings(a, b, y), (u, v))
    s = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cosent_loss(x, y, scale=3.0), (s,))


def test_invariances() -> None:
    u, v, y = random_batch(20, 8, torch.float64, "float", 11)
    loss = cosent_loss_from_embeddings(u, v, y)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cosent_loss_from_embeddings(u[perm], v[perm], y[perm]), loss)
    # cosine ignores the vectors' lengths; CoSENT only sees the labels' order
    scales = torch.rand(20, 1, dtype=torch.float64) + 0.5
    torch.testing.assert_close(cosent_loss_from_embeddings(u * scales, v, y), loss)
    torch.testing.assert_close(cosent_loss_from_embeddings(u, v, torch.exp(y)), loss)


def test_module_matches_function() -> None:
    u, v, y = random_batch(10, 8, torch.float32, "float", 5)
    torch.testing.assert_close(CoSENTLoss(scale=5.0)(u, v, y), cosent_loss_from_embeddings(u, v, y, 5.0))
    torch.testing.assert_close(pair_cosine(u, v), F.cosine_similarity(u, v, dim=-1))


def test_bad_input() -> None:
    s = torch.randn(4)
    with pytest.raises(ValueError, match="4 entries but labels has 3"):
        cosent_loss(s, torch.ones(3))
    with pytest.raises(ValueError, match="at least 2 pairs to rank, got 1"):
        cosent_loss(torch.randn(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"shape \(batch,\), got shape \(2, 2\)"):
        cosent_loss(torch.randn(2, 2), torch.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        cosent_loss(torch.tensor([0.1, float("nan")]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels contain NaN"):
        cosent_loss(torch.tensor([0.1, 0.2]), torch.tensor([0.0, float("nan")]))
    u = torch.randn(3, 4)
    bad = u.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"u or v contain NaN or inf in 1 pair\(s\): rows \[1\]"):
        cosent_loss_from_embeddings(bad, u, torch.arange(3.0))
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        cosent_loss_from_embeddings(u, bad, torch.arange(3.0))
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 5\)"):
        cosent_loss_from_embeddings(u, torch.randn(3, 5), torch.arange(3.0))


# ----------------------------------------------------------------------------- baselines


def test_sbert_softmax_loss_formula_and_binarisation() -> None:
    torch.manual_seed(0)
    u, v, y = random_batch(12, 8, torch.float32, "float", 2)
    head = SBERTSoftmaxLoss(8)  # threshold 2.5, two classes
    features = torch.cat([u, v, (u - v).abs()], dim=-1)
    expected = F.cross_entropy(head.classifier(features), (y > 2.5).long())
    torch.testing.assert_close(head(u, v, y), expected)
    nli = SBERTSoftmaxLoss(8, num_labels=3, threshold=None)
    classes = torch.randint(0, 3, (12,))
    torch.testing.assert_close(
        nli(u, v, classes), F.cross_entropy(nli.classifier(features), classes)
    )
    with pytest.raises(ValueError, match="integer class labels"):
        nli(u, v, y)
    with pytest.raises(ValueError, match="num_labels must be 2, got 3"):
        SBERTSoftmaxLoss(8, num_labels=3)
    with pytest.raises(ValueError, match="expected 12 labels"):
        head(u, v, y[:5])


def test_sbert_softmax_loss_equals_sentence_transformers(monkeypatch) -> None:
    """ST's SoftmaxLoss with the same classifier weights, fed our embeddings directly."""
    import sentence_transformers.sentence_transformer.losses.softmax as st_softmax

    class FakeModel(torch.nn.Module):
        device = torch.device("cpu")

    u, v, y = random_batch(16, 8, torch.float32, "float", 4)
    ref = st_softmax.SoftmaxLoss(FakeModel(), embedding_dimension=8, num_labels=2)
    head = SBERTSoftmaxLoss(8)
    head.classifier.load_state_dict(ref.classifier.state_dict())
    monkeypatch.setattr(st_softmax, "embed_columns", lambda model, features: [u, v])
    expected = ref([{}, {}], (y > 2.5).long())
    torch.testing.assert_close(head(u, v, y), expected)


def test_cosine_mse_equals_sentence_transformers() -> None:
    ref = st_losses.CosineSimilarityLoss(model=None)
    u, v, y = random_batch(16, 8, torch.float32, "float", 6)
    targets = y / 5
    torch.testing.assert_close(
        cosine_mse_loss(u, v, targets), ref.compute_loss_from_embeddings([u, v], targets)
    )
    per_pair = cosine_mse_loss(u, v, targets, reduction="none")
    torch.testing.assert_close(per_pair, (F.cosine_similarity(u, v) - targets) ** 2)
    with pytest.raises(ValueError, match="expected 16 labels"):
        cosine_mse_loss(u, v, targets[:3])
