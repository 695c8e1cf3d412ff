import math

import torch

from kexue.data import CharTokenizer
from kexue.evidence.base import MEASURED, Context, verdict
from kexue.evidence.suite import _aggregate
from kexue.experiments.gpt2_poems import GPT2Poems, poem_blocks, unigram_cross_entropy


def test_poem_blocks_concatenate_with_separators():
    tok = CharTokenizer.fit(["春眠不覺曉", "處處聞啼鳥"])
    blocks = poem_blocks(["春眠不覺曉", "處處聞啼鳥"], tok, 4)
    stream = tok.encode("春眠不覺曉") + [tok.sep_token_id] + tok.encode("處處聞啼鳥") + [tok.sep_token_id]
    assert blocks.shape == (2, 5)
    assert blocks[0].tolist() == stream[:5] and blocks[1].tolist() == stream[4:9]


def test_unigram_cross_entropy_matches_direct_formula():
    train = torch.tensor([[0, 0, 1, 2]])
    held = torch.tensor([[0, 2]])
    p = torch.tensor([3.0, 2.0, 2.0], dtype=torch.float64) / 7.0  # add-one counts, vocabulary 3
    want = -(p[0].log() + p[2].log()) / 2
    assert math.isclose(unigram_cross_entropy(train, held, 3), float(want), rel_tol=1e-12)


def test_smoke_run_is_measured_without_a_verdict(tmp_path):
    exp = GPT2Poems()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path))
    assert all(math.isfinite(v) for v in run.metrics.values()) and len(run.samples) == 3
    checks = exp.checks(_aggregate([run, run], False))
    assert checks == [] and not exp.numerical_claim
    assert verdict(checks, numerical_claim=exp.numerical_claim) == MEASURED


def test_no_measurement_turns_into_a_verdict():
    # the post has no numerical claim: a model far worse than the unigram baseline is
    # still only "measured"
    from kexue.evidence.base import Run

    bad = [Run({"gpt2_val_nats": 9.0 + s, "unigram_val_nats": 6.6, "improvement": -0.4})
           for s in range(3)]
    exp = GPT2Poems()
    assert verdict(exp.checks(_aggregate(bad, False)), numerical_claim=False) == MEASURED
