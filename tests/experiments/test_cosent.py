import math

import pytest
import torch
import torch.nn.functional as F

from kexue.evidence.base import Context
from kexue.evidence.suite import _aggregate
from kexue.experiments._shared.sts import subsample
from kexue.experiments.cosent import (
    LOSSES,
    ZH_TASKS,
    CoSENTChinese,
    CoSENTEnglish,
    PairModel,
    finetune,
    pair_dataset,
    zh_task_rows,
)
from kexue.models import Bert, BertConfig

needs_zh = pytest.mark.data("stsb-zh", "senteval_cn")


def _encoder(seed=0):
    torch.manual_seed(seed)
    return Bert(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), pooler=False)


def _pairs(n=16, seq=10, seed=0, label_max=5.0):
    g = torch.Generator().manual_seed(seed)

    def side():
        ids = torch.randint(5, 50, (n, seq), generator=g)
        lengths = torch.randint(2, seq + 1, (n,), generator=g)
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        return ids * mask, mask

    (a, am), (b, bm) = side(), side()
    labels = torch.rand(n, generator=g) * label_max
    return a, am, b, bm, labels


def test_embed_ignores_padding():
    model = PairModel(_encoder(), "cosent", 5.0, 16).eval()
    a, am, *_ = _pairs()
    padded = F.pad(a, (0, 7))
    padded_mask = F.pad(am, (0, 7))
    torch.testing.assert_close(model.embed(a, am), model.embed(padded, padded_mask))


def test_cosine_mse_regresses_on_label_over_label_max():
    model = PairModel(_encoder(), "cosine-mse", 5.0, 16).eval()
    a, am, b, bm, y = _pairs()
    u, v = model.embed(a, am), model.embed(b, bm)
    expected = ((F.cosine_similarity(u, v) - y / 5.0) ** 2).mean()
    torch.testing.assert_close(model.loss((a, am, b, bm, y)), expected)


def test_sbert_binarises_at_half_label_max():
    model = PairModel(_encoder(), "sbert", 1.0, 16).eval()
    a, am, b, bm, y = _pairs(label_max=1.0)
    u, v = model.embed(a, am), model.embed(b, bm)
    logits = model.sbert.classifier(torch.cat([u, v, (u - v).abs()], -1))
    expected = F.cross_entropy(logits, (y > 0.5).long())
    torch.testing.assert_close(model.loss((a, am, b, bm, y)), expected)


def test_cosent_loss_matches_brute_force_over_ordered_pairs():
    model = PairModel(_encoder(), "cosent", 5.0, 16).eval()
    a, am, b, bm, y = _pairs()
    cos = F.cosine_similarity(model.embed(a, am), model.embed(b, bm))
    terms = [20 * (cos[j] - cos[i]) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j]]
    expected = torch.logsumexp(torch.stack([torch.tensor(0.0), *terms]), 0)
    torch.testing.assert_close(model.loss((a, am, b, bm, y)), expected)


def test_pair_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        PairModel(_encoder(), "triplet", 5.0, 16)
    with pytest.raises(ValueError, match="label_max"):
        PairModel(_encoder(), "cosent", 0.0, 16)


def test_finetune_trains_the_encoder_in_place():
    enc = _encoder()
    before = [p.detach().clone() for p in enc.parameters()]
    a, am, b, bm, y = _pairs(n=16)
    data = torch.utils.data.TensorDataset(a, am, b, bm, y)
    out = finetune(enc, "cosent", data, label_max=5.0, hidden_size=16, lr=1e-2, epochs=1,
                   batch_size=8)
    assert out is enc and not enc.training
    assert any(not torch.equal(p0, p) for p0, p in zip(before, enc.parameters()))


def test_pair_dataset_layout_and_errors():
    from kexue.data import CharTokenizer

    rows = [("你好", "您好", 4.0), ("天气", "下雨了吧", 1.0)]
    tok = CharTokenizer.fit([r[0] + r[1] for r in rows])

    def encode(texts):
        return tok.batch_encode(texts, max_length=8, add_special_tokens=True, padding="max_length")

    ds = pair_dataset(encode, rows)
    a_ids, a_mask, b_ids, b_mask, labels = ds.tensors
    assert a_ids.shape == b_ids.shape == (2, 8)
    assert a_mask.sum(1).tolist() == [4, 4] and b_mask.sum(1).tolist() == [4, 6]
    assert labels.tolist() == [4.0, 1.0]
    with pytest.raises(ValueError, match="at least one"):
        pair_dataset(encode, [])


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
    assert len(checks) == 2 and all(c.holds is None or isinstance(c.holds, bool) for c in checks)
