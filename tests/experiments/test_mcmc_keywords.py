import math
import random

import torch

from kexue.data import CharTokenizer
from kexue.evidence import Context, Run, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments.mcmc_keywords import (
    MCMCKeywords,
    contains_in_order,
    pick_keywords,
    random_insertion,
)


def test_keywords_and_the_random_insertion_baseline():
    texts = ["今天天气真的很好啊", "这家酒店的服务不错"]
    kws = pick_keywords(texts, 2, random.Random(0))
    assert all(len(w) == 2 and all(len(k) == 2 for k in w) for w in kws)
    assert all(contains_in_order(t, w) for t, w in zip(texts, kws))
    tok = CharTokenizer.fit(texts)
    unigram = torch.ones(tok.vocab_size, dtype=torch.float64)
    unigram[:5] = 0
    rows = random_insertion(kws, [9, 6], unigram, tok, torch.Generator().manual_seed(0))
    assert [len(r) for r in rows] == [9, 6]
    assert all(contains_in_order(tok.decode(r), w) for r, w in zip(rows, kws))  # keywords whole
    assert not contains_in_order("天气今天", ["今天", "天气"])


def test_smoke_run(tmp_path, one_thread):
    exp = MCMCKeywords()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert run.metrics["mh/keyword_inclusion"] == 100.0 == run.metrics["annealed/keyword_inclusion"]
    stats = _aggregate([run], False)
    assert all(c.holds is None or c.holds for c in exp.checks(stats))
    assert exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path)).tables


def _stats(mh_nll, inclusion=100.0):
    return _aggregate([Run({"mh/keyword_inclusion": inclusion, "annealed/keyword_inclusion": 100.0,
                            "mh/nll_per_token": mh_nll + d, "random_mh/nll_per_token": 5.0 + d,
                            "annealed/nll_per_token": 3.0 + d, "random_annealed/nll_per_token": 5.0 + d})
                       for d in (-0.05, 0.0, 0.05)], False)


def test_verdict_follows_the_measurements():
    exp = MCMCKeywords()
    assert verdict(exp.checks(_stats(3.5))) == "reproduced"
    assert verdict(exp.checks(_stats(6.0))) == "not reproduced"
    assert verdict(exp.checks(_stats(3.5, inclusion=97.0))) == "not reproduced"
