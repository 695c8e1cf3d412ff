"""CharTokenizer properties and WordPieceTokenizer parity with transformers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kexue.data as D
from kexue.data import CharTokenizer, WordPieceTokenizer

CORPUS = ["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起，離宮百雉餘。", "我爱北京", "北京"]


# -- CharTokenizer --------------------------------------------------------------------


def test_char_fit_special_ids_and_order():
    tok = CharTokenizer.fit(CORPUS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert [tok.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = set("".join(CORPUS))
    assert tok.vocab_size == len(tok) == 5 + len(chars)
    # most frequent first ("，" "。" "北" "京" appear twice), ties by code point
    twice = sorted(c for c in chars if "".join(CORPUS).count(c) == 2)
    assert [tok.id_to_token(5 + i) for i in range(len(twice))] == twice


def test_char_min_count_and_max_size():
    tok = CharTokenizer.fit(CORPUS, min_count=2)
    assert tok.vocab_size == 5 + 4
    small = CharTokenizer.fit(CORPUS, max_size=7)
    assert small.vocab_size == 7
    assert [small.id_to_token(i) for i in (5, 6)] == [tok.id_to_token(5), tok.id_to_token(6)]
    with pytest.raises(ValueError, match="min_count must be an int >= 1, got 0"):
        CharTokenizer.fit(CORPUS, min_count=0)
    with pytest.raises(ValueError, match="max_size must be an int >= 5 or None, got 3"):
        CharTokenizer.fit(CORPUS, max_size=3)
    with pytest.raises(TypeError, match="single str"):
        CharTokenizer.fit("abc")


def test_char_round_trip_on_a_real_corpus():
    texts = [t for t, _ in D.load_sentiment("valid")]
    tok = CharTokenizer.fit(texts)
    for t in texts[:500]:
        ids = tok.encode(t)
        assert len(ids) == len(t) and tok.unk_token_id not in ids
        assert tok.decode(ids) == t
        assert tok.decode(torch.tensor(ids)) == t


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="".join(sorted(set("".join(CORPUS)))), max_size=30))
def test_char_round_trip_property(text):
    tok = CharTokenizer.fit(CORPUS)
    assert tok.decode(tok.encode(text, add_special_tokens=True)) == text


def test_char_unknown_specials_and_truncation():
    tok = CharTokenizer.fit(CORPUS)
    ids = tok.encode("北京X")
    assert ids[-1] == tok.unk_token_id
    assert tok.decode(ids) == "北京"
    assert tok.decode(ids, skip_special_tokens=False) == "北京[UNK]"
    with_special = tok.encode("我爱北京", add_special_tokens=True, max_length=4)
    assert with_special == [tok.cls_token_id, tok.token_to_id("我"), tok.token_to_id("爱"),
                            tok.sep_token_id]
    assert tok.encode("我爱北京", max_length=3) == tok.encode("我爱北")
    with pytest.raises(ValueError, match="max_length must be an int >= 2 or None, got 1"):
        tok.encode("我", add_special_tokens=True, max_length=1)
    with pytest.raises(ValueError, match=r"ids must be in \[0, \d+\), got 999"):
        tok.decode([999])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(["我"])


def test_char_batch_encode_pads_right():
    tok = CharTokenizer.fit(CORPUS)
    texts = ["我爱北京", "北京", ""]
    out = tok.batch_encode(texts, add_special_tokens=True)
    assert out["input_ids"].shape == out["attention_mask"].shape == (3, 6)
    assert out["input_ids"].dtype == torch.long
    assert out["attention_mask"].sum(1).tolist() == [6, 4, 2]
    for row, t in enumerate(texts):
        n = len(t) + 2
        assert out["input_ids"][row, :n].tolist() == tok.encode(t, add_special_tokens=True)
        assert (out["input_ids"][row, n:] == tok.pad_token_id).all()
    fixed = tok.batch_encode(texts, max_length=3, padding="max_length")
    assert fixed["input_ids"].shape == (3, 3)
    assert fixed["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        tok.batch_encode(texts, padding="max_length")
    with pytest.raises(ValueError, match="padding must be one of"):
        tok.batch_encode(texts, padding="right")
    with pytest.raises(ValueError, match="non-empty"):
        tok.batch_encode([])
    with pytest.raises(TypeError, match="list of str, got str"):
        tok.batch_encode("我爱北京")


def test_char_save_load(tmp_path):
    tok = CharTokenizer.fit(CORPUS)
    tok.save(tmp_path / "vocab.json")
    back = CharTokenizer.load(tmp_path / "vocab.json")
    assert back.vocab_size == tok.vocab_size
    for t in CORPUS + ["北京X"]:
        assert back.encode(t, add_special_tokens=True) == tok.encode(t, add_special_tokens=True)
    (tmp_path / "bad.json").write_text(json.dumps({"type": "Other"}))
    with pytest.raises(ValueError, match="not a CharTokenizer file"):
        CharTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        CharTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="must start with the special tokens"):
        CharTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer([*CharTokenizer.SPECIAL_TOKENS, "a", "a"])


# -- WordPieceTokenizer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return D.minilm_path()


@pytest.fixture(scope="module")
def hf_tokenizer(minilm):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(minilm))


@pytest.fixture(scope="module")
def sentences():
    # 200 SST-2 dev sentences plus a few with accents, CJK and unknown characters
    rows = [t for t, _ in D.load_sst2("dev")[:200]]
    return rows + ["Café au lait, naïve résumé!", "中文 mixed with English", "emoji 🙂 ☃ tab\tend",
                   "a [MASK] token and [SEP] inside"]


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def wordpiece(request, minilm, tmp_path_factory):
    if request.param == "tokenizer.json":
        return WordPieceTokenizer.from_pretrained(minilm)
    folder = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(minilm / "vocab.txt", folder)
    shutil.copy(minilm / "tokenizer_config.json", folder)
    return WordPieceTokenizer.from_pretrained(folder)


def test_wordpiece_single_parity(wordpiece, hf_tokenizer, sentences):
    ours = wordpiece.batch_encode(sentences, max_length=64)
    ref = hf_tokenizer(sentences, max_length=64, truncation=True, padding=True,
                       return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours[key], ref[key]), key
    assert ours["input_ids"].shape[1] <= 64
    untruncated = wordpiece.batch_encode(sentences)
    ref = hf_tokenizer(sentences, padding=True, return_tensors="pt")
    assert torch.equal(untruncated["input_ids"], ref["input_ids"])


def test_wordpiece_pair_parity(wordpiece, hf_tokenizer, sentences):
    a, b = sentences[:102], sentences[102:204]
    for max_length, padding, hf_padding in [(40, "longest", True), (24, "max_length", "max_length")]:
        ours = wordpiece.batch_encode(a, max_length=max_length, pairs=b, padding=padding)
        ref = hf_tokenizer(a, b, max_length=max_length, truncation=True, padding=hf_padding,
                           return_tensors="pt")
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert torch.equal(ours[key], ref[key]), (key, max_length)
    assert ours["input_ids"].shape == (102, 24)


def test_wordpiece_encode_decode(wordpiece, hf_tokenizer, sentences):
    for s in sentences[:50] + sentences[-4:]:
        ids = wordpiece.encode(s)
        assert ids == hf_tokenizer.encode(s)
        assert wordpiece.decode(ids) == hf_tokenizer.decode(ids, skip_special_tokens=True)
        assert wordpiece.tokenize(s) == hf_tokenizer.tokenize(s)
    assert wordpiece.encode("a", pair="b") == hf_tokenizer.encode("a", "b")
    assert wordpiece.vocab_size == len(hf_tokenizer) == 30522
    assert (wordpiece.pad_token_id, wordpiece.unk_token_id, wordpiece.cls_token_id,
            wordpiece.sep_token_id, wordpiece.mask_token_id) == (
        hf_tokenizer.pad_token_id, hf_tokenizer.unk_token_id, hf_tokenizer.cls_token_id,
        hf_tokenizer.sep_token_id, hf_tokenizer.mask_token_id)


def test_wordpiece_ignores_padding_stored_in_tokenizer_json(minilm):
    # MiniLM's tokenizer.json stores fixed padding/truncation at 128; we must not inherit it
    tok = WordPieceTokenizer.from_pretrained(minilm)
    assert len(tok.encode("hello")) == 3
    assert tok.batch_encode(["hello", "hello world"])["input_ids"].shape == (2, 4)
    assert len(tok.encode("word " * 300)) == 302


def test_wordpiece_validation(minilm, tmp_path):
    tok = WordPieceTokenizer.from_pretrained(minilm)
    with pytest.raises(ValueError, match="one entry per text: 2 texts, 1 pairs"):
        tok.batch_encode(["a", "b"], pairs=["c"])
    with pytest.raises(TypeError, match="list of str, got str"):
        tok.batch_encode("a sentence")
    with pytest.raises(ValueError, match="max_length must be an int >= 5 or None, got 4"):
        tok.batch_encode(["a"], max_length=4, pairs=["b"])
    with pytest.raises(ValueError, match="max_length must be an int >= 3 or None, got 2"):
        tok.batch_encode(["a"], max_length=2)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 30522\), got 30522"):
        tok.decode([30522])
    with pytest.raises(FileNotFoundError, match="tokenizer.json or vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("a\nb\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no \\[CLS\\] token"):
        WordPieceTokenizer.from_pretrained(tmp_path)
