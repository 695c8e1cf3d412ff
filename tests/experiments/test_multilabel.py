import math

import pytest
import torch

from kexue.data import CharTokenizer
from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments.multilabel import (
    MultilabelCE,
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
    assert {"bce/micro_f1", "mce/macro_f1", "bce_tuned/micro_f1"} <= set(run.metrics)
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 3 and all(c.holds in (True, False, None) for c in checks)
    extra = exp.summarize(stats, [run], ctx)
    assert (tmp_path / extra.figures[0]).exists()
