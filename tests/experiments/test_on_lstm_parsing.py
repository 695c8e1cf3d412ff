import math

import pytest
import torch

from kexue.data import available, parse_brackets
from kexue.evidence import verdict
from kexue.evidence.base import Context, Run
from kexue.evidence.suite import _aggregate
from kexue.experiments.on_lstm_parsing import (
    ONLSTMLM,
    ONLSTMParsing,
    baseline_distances,
    gold_tree,
    gold_words,
    held_out_lines,
    lm_word,
    mean_f1,
    sentence_distances,
    sentence_f1,
    tree_spans,
)
from kexue.nn import distance_to_tree

pytestmark = pytest.mark.usefixtures("one_thread")

needs_ptb = pytest.mark.skipif(not (available("ptb-lm") and available("ptb-treebank-sample")),
                               reason="research-use PTB data not available (set KEXUE_DATA)")

TREE = parse_brackets("""( (S (NP-SBJ (NNP Mr.) (NNP Vinken) )
    (VP (VBZ is) (NP-PRD (NP (NN chairman) ) (PP (IN of) (NP (NNP Elsevier) (CD 1990) ))))
    (, ,) (-NONE- *T*-1) (. .) ))""")[0]


def test_gold_words_keep_word_tags_lowercased_with_digits_as_n():
    assert gold_words(TREE) == ["mr.", "vinken", "is", "chairman", "of", "elsevier", "N"]


def test_gold_tree_drops_punctuation_and_collapses_unaries():
    assert gold_tree(TREE) == [["Mr.", "Vinken"], ["is", ["chairman", ["of", ["Elsevier", "1990"]]]]]
    # words: 0 mr. 1 vinken 2 is 3 chairman 4 of 5 elsevier 6 N; the root is not a bracket
    assert tree_spans(gold_tree(TREE)) == {(0, 2), (2, 7), (3, 7), (4, 7), (5, 7)}
    assert gold_tree(parse_brackets("(S (, ,) (-NONE- *))")[0]) is None


def test_tree_spans_and_baselines():
    assert tree_spans(distance_to_tree([4, 3, 2, 1])) == {(1, 4), (2, 4)}  # right-branching
    assert tree_spans(distance_to_tree([1, 2, 3, 4])) == {(0, 2), (0, 3)}  # left-branching
    g = torch.Generator().manual_seed(0)
    right = tree_spans(distance_to_tree(baseline_distances(5, "right", g)))
    assert right == {(1, 5), (2, 5), (3, 5)}
    assert tree_spans(distance_to_tree(baseline_distances(5, "left", g))) == {(0, 2), (0, 3), (0, 4)}
    random_tree = tree_spans(distance_to_tree(baseline_distances(5, "random", g)))
    assert len(random_tree) == 3  # a binary tree on 5 leaves has 3 brackets below the root


def test_sentence_f1_follows_the_papers_conventions():
    assert sentence_f1({(0, 2)}, {(0, 2)}) == pytest.approx(1.0)
    assert sentence_f1({(0, 2), (1, 3)}, {(0, 2)}) == pytest.approx(2 / 3)
    assert sentence_f1(set(), set()) == pytest.approx(1.0)  # e.g. a two-word sentence
    assert sentence_f1({(0, 2)}, set()) == pytest.approx(0.0, abs=1e-6)
    gold = tree_spans(gold_tree(TREE))
    assert mean_f1([[7, 6, 5, 4, 3, 2, 1]], [gold]) == pytest.approx(
        100 * sentence_f1({(1, 7), (2, 7), (3, 7), (4, 7), (5, 7)}, gold))


def test_lm_word_maps_numbers_and_unknown_words():
    vocab = {"N": 0, "the": 1, "<unk>": 2}
    assert [lm_word(w, vocab) for w in ["N", "N.N", "N,N", "the", "nasa", "n.v."]] == [
        "N", "N", "N", "the", "<unk>", "<unk>"]


def test_held_out_lines_align_the_sample_to_the_start_of_the_training_text():
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "N", "a", "b", "c", "d", "e"])}
    train = [["zzz", "<eos>"], ["a", "b", "<eos>"], ["c", "<eos>"], ["d", "N", "<eos>"],
             ["e", "<eos>"], ["a", "b", "<eos>"]]
    sentences = [["a", "b"], ["c"], ["x", "y"], ["d", "N.N"]]  # as gold_words spells them
    assert held_out_lines(train, sentences, vocab) == 4  # the repeat at line 5 is not taken


def test_padding_does_not_change_a_sentences_distances():
    torch.manual_seed(0)
    model = ONLSTMLM(50, (8, 8, 8, 8), 4, dropout=0.0, dropconnect=0.0)
    sentences = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    batched = sentence_distances(model, sentences, eos=1)
    for s, d in zip(sentences, batched):
        alone = sentence_distances(model, [s], eos=1)[0]
        assert d.shape == (3, len(s))
        torch.testing.assert_close(d, alone)


@needs_ptb
def test_smoke_run_gives_finite_metrics_and_well_formed_checks(tmp_path):
    exp = ONLSTMParsing()
    run = exp.run(Context(0, "smoke", tmp_path, tmp_path, log=lambda s: None))
    assert all(math.isfinite(v) for v in run.metrics.values())
    assert 0 <= run.metrics["onlstm/f1"] <= 100 and run.metrics["left/f1"] < run.metrics["right/f1"]
    stats = _aggregate([run], False)
    checks = exp.checks(stats)
    assert len(checks) == 2 and all(c.holds is None for c in checks)
    extra = exp.summarize(stats, [run], Context(0, "smoke", tmp_path, tmp_path))
    assert "right-branching" in extra.tables[0] and "56.17" in extra.tables[1]


def synthetic(onlstm, right=40.0, random=20.0, seeds=3):
    return _aggregate([Run({"onlstm/f1": onlstm + 0.3 * s, "right/f1": right,
                            "random/f1": random + 0.2 * s}) for s in range(seeds)], False)


def test_verdict_follows_the_claim():
    exp = ONLSTMParsing()
    assert verdict(exp.checks(synthetic(47.7))) == "reproduced"
    assert verdict(exp.checks(synthetic(30.0))) == "not reproduced"  # below right-branching
    assert verdict(exp.checks(synthetic(15.0))) == "not reproduced"
