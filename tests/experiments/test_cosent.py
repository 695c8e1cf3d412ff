import math

import pytest
import torch

from kexue.evidence import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.sts import subsample
from kexue.experiments.cosent import (
    LOSSES,
    ZH_TASKS,
    CoSENTChinese,
    CoSENTEnglish,
    finetune,
    spearman_x100,
    zh_task_rows,
)
from kexue.models import Bert, BertConfig

needs_zh = pytest.mark.data("stsb-zh", "senteval_cn")


def test_finetune_trains_the_library_encoder_in_place():
    """The experiment's fine-tuning is SentenceEncoder.fit (the library's; tested in
    tests/embed/test_finetune.py) with the post's settings."""
    from tokenizers import Tokenizer

    from kexue.data import minilm_path
    from kexue.embed import SentenceEncoder

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    model = Bert(BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            max_position_embeddings=32), pooler=False)
    encoder = SentenceEncoder(model, tokenizer, max_length=16)
    rows = [(f"sentence {i}", f"another {i % 3}", float(i % 6)) for i in range(40)]
    before = [p.detach().clone() for p in model.parameters()]
    out = finetune(encoder, "cosent", rows, label_max=5.0, lr=1e-2)
    assert out is encoder and not model.training
    assert any(not torch.equal(p0, p) for p0, p in zip(before, model.parameters()))
    assert -100 <= spearman_x100(encoder, rows) <= 100


def test_subsample_is_a_fixed_subset():
    rows = [(str(i), str(i), float(i)) for i in range(100)]
    s1, s2 = subsample(rows, 10, 3), subsample(rows, 10, 3)
    assert s1 == s2 and len(set(s1)) == 10 and set(s1) <= set(rows)
    assert subsample(rows, None, 3) == rows and subsample(rows, 500, 3) == rows


@needs_zh
def test_zh_task_rows_label_ranges():
    for task in ZH_TASKS:
        train, test, label_max = zh_task_rows(task, 50, 30)
        assert len(train) == 50 and len(test) == 30
        labels = {r[2] for r in train + test}
        assert max(labels) <= label_max and min(labels) >= 0
        assert label_max == (5.0 if task == "STS-B" else 1.0)
    with pytest.raises(ValueError, match="task"):
        zh_task_rows("MNLI", 1, 1)


@needs_zh
def test_cosent_zh_smoke(tmp_path):
    exp = CoSENTChinese()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert {f"{k}/avg" for k in ("untuned", *LOSSES)} <= set(run.metrics)
    stats = _aggregate([run], False)
    assert exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path)).figures
    checks = exp.checks(stats)
    assert checks and all(c.holds is None or isinstance(c.holds, bool) for c in checks)


@pytest.mark.slow
def test_cosent_en_smoke(tmp_path):
    exp = CoSENTEnglish()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert set(run.metrics) == {"untuned", *LOSSES}
    assert all(math.isfinite(v) and -100 <= v <= 100 for v in run.metrics.values())
    checks = exp.checks(_aggregate([run], False))
    assert len(checks) == 1 and checks[0].holds is None  # one seed: noise unknown


@pytest.mark.parametrize("cosent, sbert, expected", [
    ([85.1, 85.4, 84.9], [82.0, 82.6, 81.9], REPRODUCED),
    ([82.0, 82.6, 81.9], [85.1, 85.4, 84.9], NOT_REPRODUCED),  # Sentence-BERT wins
])
def test_cosent_en_verdict(cosent, sbert, expected):
    runs = [Run({"untuned": 82.0, "cosent": c, "sbert": b}) for c, b in zip(cosent, sbert)]
    assert verdict(CoSENTEnglish().checks(_aggregate(runs, False))) == expected


@pytest.mark.parametrize("cosent, sbert, expected", [
    ([33.4, 33.0, 33.8], [23.9, 25.0, 22.8], REPRODUCED),  # our last quick run
    ([23.9, 25.0, 22.8], [33.4, 33.0, 33.8], NOT_REPRODUCED),
])
def test_cosent_zh_verdict(cosent, sbert, expected):
    runs = [Run({"cosent/avg": c, "sbert/avg": b}) for c, b in zip(cosent, sbert)]
    assert verdict(CoSENTChinese().checks(_aggregate(runs, False))) == expected
