import math

import pytest
import torch

from kexue.data import CharTokenizer
from kexue.evidence import NOT_REPRODUCED, REPRODUCED, Run, verdict
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.multilabel import (
    MultilabelCE,
    bce_loss,
    best_threshold,
    build_multilabel,
    multilabel_f1,
    to_dataset,
)

RECORDS = [(f"title {i}", kws) for i, kws in enumerate(
    [["a", "b"], ["a"], ["c"], ["b", "z"], ["a", "c"], ["y"], ["a"], ["b"], ["c", "a"], ["x"]] * 5
)]


def test_build_multilabel_labels_and_split():
    names, parts = build_multilabel(RECORDS, num_labels=3, seed=0)
    assert names == ["a", "b", "c"]  # most frequent first
    titles = [t for p in parts.values() for t, _ in p]
    assert len(titles) == len(set(titles))  # disjoint parts
    for rows in parts.values():
        for _, labels in rows:
            assert labels and labels == sorted(labels) and max(labels) < 3
    # rows whose keywords are all outside the label set are dropped
    kept = {t for p in parts.values() for t, _ in p}
    assert all(t not in kept for t, kws in RECORDS if not set(kws) & {"a", "b", "c"})
    assert build_multilabel(RECORDS, 3, seed=0) == (names, parts)


def test_build_multilabel_rejects_too_many_labels():
    with pytest.raises(ValueError, match="distinct keywords"):
        build_multilabel(RECORDS, num_labels=50)
    with pytest.raises(ValueError):
        build_multilabel(RECORDS, num_labels=0)


def test_to_dataset_is_multi_hot():
    tok = CharTokenizer.fit(["title 0123456789"])
    ds = to_dataset(tok, [("title 1", [0, 2]), ("title 2", [1])], 3, 16)
    assert ds.tensors[2].tolist() == [[1, 0, 1], [0, 1, 0]]


def test_multilabel_f1_against_hand_computation():
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 0]]).float()
    scores = torch.tensor([[2.0, -1, -1], [1, 1, -1], [1, -1, 1]])
    m = multilabel_f1(scores, target)
    # tp = (2, 1, 0), fp = (1, 0, 1), fn = (0, 0, 1)
    assert math.isclose(m["micro_f1"], 100 * 2 * 3 / (2 * 3 + 2 + 1))
    per_label = [2 * 2 / (4 + 1), 2 * 1 / 2, 0.0]
    assert math.isclose(m["macro_f1"], 100 * sum(per_label) / 3)
    assert math.isclose(m["precision"], 100 * 3 / 5) and math.isclose(m["recall"], 100 * 3 / 4)
    assert math.isclose(m["labels_per_text"], 5 / 3)


def test_best_threshold_finds_the_separating_value():
    target = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]]).float()
    scores = torch.where(target.bool(), -1.0, -3.0)  # every positive above -2
    t = best_threshold(scores, target)
    assert -3.0 <= t < -1.0
    assert multilabel_f1(scores, target, t)["micro_f1"] == 100.0


@pytest.mark.data(*MultilabelCE.datasets)
def test_multilabel_smoke(tmp_path):
    exp = MultilabelCE()
    ctx = Context(seed=0, scale="smoke", workdir=tmp_path, cache_dir=tmp_path, log=lambda s: None)
    run = exp.run(ctx)
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {"bce/micro_f1", "mce/macro_f1", "bce_tuned/micro_f1", "bce_weighted/macro_f1",
            "bce_weighted/pos_weight"} <= set(run.metrics)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 4 and all(c.holds in (True, False, None) for c in checks)
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()


def test_bce_loss_weights_the_positive_terms():
    scores, target = torch.tensor([[0.3, -1.0, 2.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    pos = -torch.nn.functional.logsigmoid(scores[0, 0])
    neg = -torch.nn.functional.logsigmoid(-scores[0, 1:]).sum()
    torch.testing.assert_close(bce_loss(scores, target), (pos + neg) / 3)
    torch.testing.assert_close(bce_loss(scores, target, pos_weight=10.0), (10 * pos + neg) / 3)


def _stats(mce_micro: float, mce_macro: float, noise=(0.0, 0.1, -0.1)):
    runs = [Run({"bce/micro_f1": 25.0 + e, "bce/macro_f1": 18.0 + e,
                 "bce_weighted/micro_f1": 40.0 + e, "bce_weighted/macro_f1": 35.0 + e,
                 "mce/micro_f1": mce_micro + 2 * e, "mce/macro_f1": mce_macro - e})
            for e in noise]
    return _aggregate(runs, False)


@pytest.mark.parametrize(("micro", "macro", "expected"), [
    (40.5, 35.2, REPRODUCED),  # beats plain BCE, matches weighted BCE
    (32.0, 27.0, NOT_REPRODUCED),  # beats plain BCE, far below weighted BCE
    (40.5, 15.0, NOT_REPRODUCED),  # loses to plain BCE on macro-F1
])
def test_the_verdict_follows_the_claim(micro, macro, expected):
    assert verdict(MultilabelCE().checks(_stats(micro, macro))) == expected
