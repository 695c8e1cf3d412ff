import pytest

pytest.importorskip("jieba")
pytest.importorskip("sentencepiece")

import jieba

from kexue.data import CPMTokenizer, load_sentiment


@pytest.fixture(scope="module")
def lines():
    return [text for text, _ in load_sentiment("train")[:400]]


@pytest.fixture(scope="module")
def tok(lines):
    return CPMTokenizer.train(lines, vocab_size=3000)


def test_pre_tokenize_rule():
    text = "今天天气 很好\n我们去 公园 玩吧"
    expect = " ".join(
        w.replace(" ", "\u2582").replace("\n", "\u2583") for w in jieba.cut(text, cut_all=False)
    )
    assert CPMTokenizer.pre_tokenize(text) == expect
    assert "\u2582" in expect and "\u2583" in expect and "\n" not in expect


def test_newline_is_cls_id_3(tok):
    assert tok.sp.id_to_piece(3) == "<cls>" and tok.newline_id == 3
    ids = tok.encode("很好\n不错")
    assert 3 in ids
    assert tok.decode([3]) == "\n"
    assert tok.sp.piece_to_id("\u2583") == tok.sp.unk_id()  # '▃' itself is not in the vocab


def test_round_trip(tok, lines):
    samples = [
        lines[0],
        lines[1] + "\n" + lines[2],
        "  " + lines[3] + "\n\n" + lines[4] + " ",
        "\n".join(lines[5:15]),
    ]
    for text in samples:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.sp.unk_id() not in ids, text
        assert tok.decode(ids) == text


def test_save_load(tok, lines, tmp_path):
    tok.save(tmp_path / "cpm.model")
    again = CPMTokenizer(tmp_path / "cpm.model")
    assert again.encode(lines[7]) == tok.encode(lines[7])


def test_errors(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="no SentencePiece model"):
        CPMTokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match=r"token ids must be in \[0, "):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="text must be a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="newline_token 'NOPE'"):
        CPMTokenizer(tok.sp.serialized_model_proto(), newline_token="NOPE")
