"""The bracketed-tree reader: parsing, malformed input, and the PTB sample's counts."""

import pytest

import kexue.data as D


def leaves(tree):
    _label, children = tree
    return [w for c in children for w in ([c] if isinstance(c, str) else leaves(c))]


def test_parse_brackets_nests_labels_and_words():
    text = "( (S (NP-SBJ (DT The) (NN cat)) (VP (VBD sat) (-NONE- *-1)) (. .)) )\n((X y))"
    first, second = D.parse_brackets(text)
    assert first == ("S", [("NP-SBJ", [("DT", ["The"]), ("NN", ["cat"])]),
                           ("VP", [("VBD", ["sat"]), ("-NONE-", ["*-1"])]), (".", ["."])])
    assert second == ("X", ["y"])
    assert leaves(first) == ["The", "cat", "sat", "*-1", "."]
    # an unlabelled bracket with several children is kept, labelled ""
    assert D.parse_brackets("((A a) (B b))") == [("", [("A", ["a"]), ("B", ["b"])])]


@pytest.mark.parametrize(("text", "message"), [
    ("(S (NP a)", "1 unclosed"),
    ("(S a))", "unbalanced"),
    ("word (S a)", "outside any bracket"),
])
def test_parse_brackets_rejects_malformed_text(text, message):
    with pytest.raises(ValueError, match=message):
        D.parse_brackets(text, "sample.mrg")


@pytest.mark.data("ptb-treebank-sample")
def test_ptb_sample_trees():
    trees = D.load_ptb_trees()
    assert len(trees) == 3914
    assert leaves(trees[0])[:4] == ["Pierre", "Vinken", ",", "61"]
    assert trees[0][0] == "S" and trees[1][1][0] == ("NP-SBJ", [("NNP", ["Mr."]), ("NNP", ["Vinken"])])
    assert all(isinstance(t, tuple) and t[0] for t in trees)
