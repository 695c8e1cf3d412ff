import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.train.vat import (
    VAT,
    NoiseConsistency,
    kl_with_logits,
    rademacher_gradient_penalty,
    split_batch,
)


def softmax_mlp(seed=0, d=3, k=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, k)).double()


def test_power_iteration_recovers_top_eigenvector_of_a_quadratic():
    torch.manual_seed(0)
    linear = nn.Linear(5, 4, bias=False).double()  # f(x) = B x; ||B r||^2 has Hessian 2 B^T B
    x = torch.randn(3, 5, dtype=torch.float64)
    vat = VAT(linear, where="input", norm="per_example", divergence="mse", epsilon=2.0,
              xi=1e-3, n_power_iterations=60)
    (r,) = vat.perturbation(linear, x)
    eigvals, eigvecs = torch.linalg.eigh(linear.weight.T @ linear.weight)
    top = eigvecs[:, -1]
    torch.testing.assert_close(r.norm(dim=1), torch.full((3,), 2.0, dtype=torch.float64))
    cos = (r @ top).abs() / r.norm(dim=1)
    assert (cos > 1 - 1e-8).all(), cos
    # the VAT loss is then the largest quadratic value: eps^2 * lambda_max (mse on B r)
    torch.testing.assert_close(vat.loss(linear, x), 4.0 * eigvals[-1])


def test_power_iteration_finds_top_eigenvector_of_the_kl_hessian():
    mlp = softmax_mlp(1)
    x = torch.randn(1, 3, dtype=torch.float64)
    clean = mlp(x).detach()

    def kl_at(r):
        return kl_with_logits(clean, mlp(x + r.view(1, 3)))

    hessian = torch.autograd.functional.hessian(kl_at, torch.zeros(3, dtype=torch.float64))
    eigvals, eigvecs = torch.linalg.eigh(hessian)
    assert eigvals[-1] > 1.5 * eigvals[-2]  # a clear top direction
    vat = VAT(mlp, where="input", norm="global", xi=1e-4, n_power_iterations=30)
    (r,) = vat.perturbation(mlp, x)
    cos = (r.flatten() @ eigvecs[:, -1]).abs() / r.norm()
    assert cos > 1 - 1e-5


def test_one_power_iteration_beats_random_noise_on_average():
    mlp = softmax_mlp(2)
    x = torch.randn(64, 3, dtype=torch.float64)
    torch.manual_seed(0)
    vat = VAT(mlp, where="input", norm="per_example", xi=1e-4, epsilon=0.5)
    noise = VAT(mlp, where="input", norm="per_example", xi=1e-4, epsilon=0.5,
                n_power_iterations=0)
    assert vat.loss(mlp, x) > 2 * noise.loss(mlp, x)


@pytest.mark.parametrize("divergence", ["kl", "mse"])
def test_noise_loss_matches_half_sigma_squared_gradient_penalty(divergence):
    mlp = softmax_mlp(3)
    x0 = torch.randn(3, dtype=torch.float64)
    sigma, n = 1e-2, 40000
    torch.manual_seed(0)
    mc = NoiseConsistency(mlp, sigma, where="input", divergence=divergence).loss(
        mlp, x0.expand(n, 3).clone())
    # exact 0.5 sigma^2 sum_i lambda_i ||grad f_i||^2 with the Jacobian
    if divergence == "kl":
        fi = lambda v: torch.softmax(mlp(v), -1)
        lam = 1 / fi(x0)
    else:
        fi = mlp  # f_i = logits, lambda_i = 2
        lam = torch.full((4,), 2.0, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(fi, x0)  # (k, d)
    expected = 0.5 * sigma**2 * (lam * jac.pow(2).sum(1)).sum()
    assert abs(mc.item() / expected.item() - 1) < 0.03
    # and the Rademacher estimator of the same quantity agrees
    xr = x0.expand(n, 3).clone().requires_grad_()
    est = rademacher_gradient_penalty(fi(xr), xr, weights=lam, create_graph=False)
    assert abs(0.5 * sigma**2 * est.item() / expected.item() - 1) < 0.03


def test_rademacher_estimator_exact_for_one_output_and_unbiased():
    mlp = softmax_mlp(4, k=1)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    est = rademacher_gradient_penalty(mlp(x), x, reduction="none")
    (g,) = torch.autograd.grad(mlp(x).sum(), x)
    torch.testing.assert_close(est, g.pow(2).sum(1))  # eta^2 = 1: exact
    mlp = softmax_mlp(5, k=4)
    jac = torch.autograd.functional.jacobian(lambda v: mlp(v).sum(0), x)  # (k, batch, d)
    exact = jac.pow(2).sum((0, 2))  # (batch,)
    torch.manual_seed(0)
    est = rademacher_gradient_penalty(mlp(x), x, n_samples=4000, reduction="none",
                                      create_graph=False)
    torch.testing.assert_close(est, exact, rtol=0.05, atol=0)

    def seeded(w):  # the same eta draw at every evaluation
        torch.manual_seed(1)
        return rademacher_gradient_penalty(torch.tanh(x @ w), x, reduction="sum")

    assert torch.autograd.gradcheck(
        seeded, (torch.randn(3, 2, dtype=torch.float64, requires_grad=True),))


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_vat_step_is_supervised_plus_alpha_vat():
    mlp = softmax_mlp(6)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 4, (8,))

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    def predict(m, b):
        return m(b[0])

    vat = VAT(mlp, where="input", norm="per_example", xi=1e-3, alpha=0.7, predict_fn=predict)
    torch.manual_seed(0)
    reported = vat(mlp, (x, y), loss_fn)
    step = _grads(mlp)
    mlp.zero_grad()
    torch.manual_seed(0)
    (0.7 * vat.loss(mlp, (x, y)) + loss_fn(mlp, (x, y))).backward()
    torch.testing.assert_close(step, _grads(mlp))
    torch.testing.assert_close(reported, loss_fn(mlp, (x, y)).detach())


def test_labelled_and_unlabelled_parts():
    mlp = softmax_mlp(7)
    lab = (torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 4, (4,)))
    unlab = torch.randn(16, 3, dtype=torch.float64)
    seen_loss, seen_pred = [], []

    def loss_fn(m, b):
        seen_loss.append(b[0].shape[0])
        return F.cross_entropy(m(b[0]), b[1])

    def predict(m, b):
        seen_pred.append(b.shape[0])
        return m(b)

    vat = VAT(mlp, where="input", norm="per_example", xi=1e-3, predict_fn=predict)
    vat(mlp, {"labelled": lab, "unlabelled": unlab}, loss_fn)
    assert seen_loss == [4] and set(seen_pred) == {16}
    mlp.zero_grad()
    loss = vat(mlp, {"unlabelled": unlab}, loss_fn)  # VAT only: returns the VAT loss
    assert seen_loss == [4] and loss > 0 and _grads(mlp).abs().sum() > 0
    assert split_batch((1, 2)) == ((1, 2), (1, 2))
    with pytest.raises(ValueError, match="unlabelled"):
        split_batch({"labelled": lab})


def test_weight_site_on_an_embedding_model_and_restoration():
    torch.manual_seed(0)
    emb = nn.Embedding(10, 4)
    model = nn.Sequential(emb, nn.Flatten(), nn.Linear(12, 3))
    ids, y = torch.randint(0, 10, (5, 3)), torch.randint(0, 3, (5,))
    weight = emb.weight
    before = weight.detach().clone()

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    vat = VAT(emb, predict_fn=lambda m, b: m(b[0]))  # author's defaults: matrix, global, xi=10
    loss = vat(model, (ids, y), loss_fn)
    assert torch.isfinite(loss) and torch.isfinite(emb.weight.grad).all()
    (delta,) = vat.perturbation(model, (ids, y))
    assert delta.shape == (10, 4)
    torch.testing.assert_close(delta.norm(), torch.tensor(1.0))
    assert emb._parameters["weight"] is weight and torch.equal(weight, before)
    noise = NoiseConsistency(emb, 0.1, where="output", predict_fn=lambda m, b: m(b[0]))
    assert torch.isfinite(noise(model, (ids, y), loss_fn))


def test_hugging_face_model_vat():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    batch = {"input_ids": torch.randint(0, 40, (3, 6)), "labels": torch.tensor([0, 1, 0])}
    vat = VAT(model, predict_fn=lambda m, b: m(input_ids=b["input_ids"]).logits)
    loss = vat(model, batch, lambda m, b: m(**b).loss)
    assert torch.isfinite(loss)
    assert model.get_input_embeddings().weight.grad is not None


def test_bad_input():
    mlp = softmax_mlp()
    for name, kwargs in [("epsilon", {"epsilon": 0}), ("xi", {"xi": -1.0}),
                         ("n_power_iterations", {"n_power_iterations": -1}),
                         ("alpha", {"alpha": 0}), ("divergence", {"divergence": "js"}),
                         ("norm", {"norm": "l1"})]:
        with pytest.raises(ValueError, match=name):
            VAT(mlp, where="input", **kwargs)
    with pytest.raises(ValueError, match="per_example"):
        VAT(nn.Embedding(3, 2), norm="per_example")
    with pytest.raises(ValueError, match="sigma"):
        NoiseConsistency(mlp, 0.0, where="input")
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="n_samples"):
        rademacher_gradient_penalty(x * 2, x, n_samples=0)
    with pytest.raises(ValueError, match="inputs"):
        rademacher_gradient_penalty(x * 2, torch.randn(2, 3))
    with pytest.raises(ValueError, match="weights"):
        rademacher_gradient_penalty(x * 2, x, weights=-torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        kl_with_logits(torch.zeros(2, 3), torch.zeros(2, 4))
    vat = VAT(mlp, where="input", divergence=lambda a, b: (a - b).pow(2).sum(-1))
    with pytest.raises(ValueError, match="scalar"):
        vat.loss(mlp, torch.randn(2, 3, dtype=torch.float64))


def test_in_fit():
    from kexue.train.loop import TrainConfig, fit

    mlp = softmax_mlp(8).float()
    torch.manual_seed(8)
    data = [(torch.randn(3), int(torch.randint(0, 4, ()))) for _ in range(16)]

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    for step in (VAT(mlp, where="input", norm="per_example", xi=1e-2,
                     predict_fn=lambda m, b: m(b[0])),
                 NoiseConsistency(mlp, 0.1, where="input", predict_fn=lambda m, b: m(b[0]))):
        result = fit(mlp, loss_fn, data, TrainConfig(steps=3, batch_size=4, progress=False),
                     step=step)
        assert result.step == 3
