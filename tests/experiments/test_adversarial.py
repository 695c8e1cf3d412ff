import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from kexue.evidence.base import Context, Stat, Stats
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.classification import (
    TextClassifier,
    bert_scale_embeddings_,
    cross_entropy_loss,
)
from kexue.experiments.adversarial import (
    VARIANTS,
    AdversarialTraining,
    MathAttention,
    make_step,
    results_table,
    task_tokenizer,
)
from kexue.train import FGM


def tiny(dropout=0.0):
    torch.manual_seed(0)
    return TextClassifier(50, 3, hidden=16, layers=1, heads=2, max_length=12, dropout=dropout)


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (6, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[3:, 7:] = 0
    ids[mask == 0] = 0
    return ids, mask, torch.randint(0, 3, (6,), generator=g)


def test_bert_scale_embeddings_sets_row_norms_and_zero_padding_only():
    torch.manual_seed(0)
    model = TextClassifier(4000, 3, hidden=64, layers=1, heads=2, max_length=512)
    head_before = model.head.weight.clone()
    bert_scale_embeddings_(model, token_norm=1.1, position_norm=0.5)
    token_norms = model.embedding.weight[1:].norm(dim=1)
    assert abs(token_norms.mean().item() - 1.1) < 0.03
    assert abs(model.position.weight.norm(dim=1).mean().item() - 0.5) < 0.03
    assert torch.equal(model.embedding.weight[0], torch.zeros(64))
    assert torch.equal(model.head.weight, head_before)


def test_task_tokenizer_is_wordpiece_for_english_and_characters_for_chinese():
    en = task_tokenizer("sst2", ["a gripping film"])
    assert en.tokenize("a gripping film") == ["a", "gripping", "film"]
    assert en.pad_token_id == 0
    zh = task_tokenizer("sentiment", ["很好看", "很好"])
    assert [zh.id_to_token(i) for i in zh.encode("很好", add_special_tokens=False)] == ["很", "好"]


def test_make_step_builds_the_named_variant():
    model = tiny()
    assert make_step("baseline", model) is None
    fgm = make_step("fgm-0.5", model)
    assert isinstance(fgm, FGM) and fgm.epsilon == 0.5 and fgm.variant == "author"
    assert fgm.site.where == "weight" and fgm.norm == "global"
    assert isinstance(make_step("gp", model), MathAttention)
    with pytest.raises(ValueError, match="unknown variant 'pgd'"):
        make_step("pgd", model)


def test_gradient_penalty_step_matches_direct_double_backward():
    """The wrapped GP step fills grad_theta (L + 0.5 ||dL/dE(x)||^2), E(x) = embedding output."""
    model, b = tiny(), batch()
    make_step("gp", model)(model, b, cross_entropy_loss)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    outputs = []
    handle = model.embedding.register_forward_hook(lambda m, a, out: outputs.append(out) or None)
    with sdpa_kernel([SDPBackend.MATH]):
        loss = cross_entropy_loss(model, b)
        (g,) = torch.autograd.grad(loss, outputs[0], create_graph=True)
        (loss + 0.5 * g.pow(2).sum()).backward()
    handle.remove()
    for got_g, p in zip(got, model.parameters()):
        torch.testing.assert_close(got_g, p.grad, rtol=1e-4, atol=1e-7)
    # the penalty actually changes the gradient (it is not the plain CE gradient)
    model.zero_grad()
    cross_entropy_loss(model, b).backward()
    assert not torch.allclose(got[0], model.embedding.weight.grad)


def test_results_table_lists_every_variant_with_time_ratio():
    stats = Stats()
    for t in ("sentiment", "sst2"):
        for v in VARIANTS:
            stats[f"{t}/{v}/accuracy"] = Stat([80.0, 82.0])
            stats[f"{t}/{v}/seconds"] = Stat([2.0 if v.startswith("fgm") else 1.0] * 2)
    table = results_table(stats)
    rows = table.splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == list(VARIANTS)
    assert "| fgm-0.5 | 81.0 ± 1.4 | 81.0 ± 1.4 | 2.00 | 2.00 |" in table


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path):
    exp = AdversarialTraining()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert len(run.metrics) == 2 * len(VARIANTS) * 3 + 2  # + majority-class accuracy per task
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert all(0 <= run.metrics[f"{t}/{v}/accuracy"] <= 100
               for t in ("sentiment", "sst2") for v in VARIANTS)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 8 and all(c.holds is None for c in checks)  # one seed: noise unknown
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert (tmp_path / extra.figures[0]).exists() and len(extra.tables) == 2


def test_summary_flags_a_task_whose_baseline_is_near_the_majority_class(tmp_path):
    stats = Stats()
    for t, base in (("sentiment", 82.0), ("sst2", 53.0)):
        stats[f"{t}/majority_accuracy"] = Stat([50.0, 50.0])
        for v in VARIANTS:
            stats[f"{t}/{v}/accuracy"] = Stat([base, base + 1])
            stats[f"{t}/{v}/seconds"] = Stat([1.0, 1.0])
    extra = AdversarialTraining().summarize(stats, [], Context(0, "smoke", tmp_path, tmp_path))
    flagged = [n for n in extra.notes if "not learned" in n]
    assert len(flagged) == 1 and flagged[0].startswith("sst2:")
