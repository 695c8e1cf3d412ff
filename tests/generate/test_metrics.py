import random

import pytest
import torch

from kexue.generate.metrics import corpus_bleu, rouge_l


def _corpus(seed, n=40):
    rng = random.Random(seed)
    chars = "的了是在我有他这中大来上个国和"
    def sent():
        return "".join(rng.choice(chars) for _ in range(rng.randint(1, 12)))
    refs = [sent() for _ in range(n)]
    hyps = [r[: rng.randint(0, len(r))] + sent()[: rng.randint(0, 4)] if rng.random() < 0.7 else sent()
            for r in refs]
    return hyps, refs


@pytest.mark.parametrize("seed", range(4))
def test_bleu_equals_sacrebleu_on_characters(seed):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = _corpus(seed)
    want = sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                 tokenize="none").score
    assert corpus_bleu(hyps, refs) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_bleu_edge_cases():
    assert corpus_bleu(["abcd"], ["abcd"]) == pytest.approx(100.0)
    assert corpus_bleu(["xyz"], ["abc"]) == 0.0
    assert corpus_bleu(["ab"], ["abcd"]) == 0.0  # no 3- or 4-grams at all


def test_rouge_l_equals_lcs_f1():
    def lcs(a, b):
        d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                d[i + 1][j + 1] = d[i][j] + 1 if a[i] == b[j] else max(d[i][j + 1], d[i + 1][j])
        return d[-1][-1]

    hyps, refs = _corpus(9)
    hyps[0] = ""
    got = rouge_l(hyps, refs)
    want = [200 * lcs(h, r) / (len(h) + len(r)) for h, r in zip(hyps, refs)]
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64))
    assert rouge_l([""], [""]) == [0.0]


def test_bad_input():
    with pytest.raises(ValueError, match="as many hypotheses as references"):
        corpus_bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        rouge_l([], [])
