"""Readers: record counts and types from shared/data/README.md, parity of shipped and
shared copies, split validation and malformed input."""

from __future__ import annotations

from collections import Counter

import pytest

import kexue.data as D


@pytest.fixture(scope="module")
def sst2_train():
    return D.load_sst2("train")


# -- shipped sets ---------------------------------------------------------------------


@pytest.mark.parametrize(("split", "n"), [("train", 16883), ("valid", 2111), ("test", 2111)])
def test_sentiment(split, n):
    rows = D.load_sentiment(split)
    assert len(rows) == n
    assert all(isinstance(t, str) and t and y in (0, 1) for t, y in rows)
    if split == "train":
        assert Counter(y for _, y in rows) == {1: 8588, 0: 8295}


@pytest.mark.parametrize(("split", "n"), [("train", 5749), ("dev", 1500), ("test", 1379)])
def test_stsb_en(split, n):
    rows = D.load_stsb(split)
    assert len(rows) == n
    assert all(isinstance(a, str) and isinstance(b, str) and isinstance(s, float) for a, b, s in rows)
    assert min(s for *_, s in rows) >= 0.0 and max(s for *_, s in rows) <= 5.0
    if split == "train":
        assert rows[0] == ("A plane is taking off.", "An air plane is taking off.", 5.0)


def test_stsb_valid_and_dev_are_aliases():
    assert D.load_stsb("valid") == D.load_stsb("dev")


def test_sst2_counts_and_crlf(sst2_train):
    assert len(sst2_train) == 67349
    assert Counter(y for _, y in sst2_train) == {0: 29780, 1: 37569}
    assert sst2_train[0] == ("hide new secretions from the parental units", 0)
    assert not any("\r" in t for t, _ in sst2_train)
    for split, n, counts in [("dev", 872, {0: 428, 1: 444}), ("test", 1821, {0: 912, 1: 909})]:
        rows = D.load_sst2(split)
        assert len(rows) == n and Counter(y for _, y in rows) == counts


def test_tinyshakespeare():
    text = D.load_tinyshakespeare()
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert text.count("\n") == 40000 and len(set(text)) == 65


def test_tang_poems_bundled_subset(only_bundled):
    poems = D.load_tang_poems()
    assert len(poems) == 10008  # files 0..9000 hold 1000-1003 poems each
    assert poems[0].split("\n")[:2] == ["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起，離宮百雉餘。"]
    assert D.load_tang_poems(limit=7) == poems[:7]


@pytest.mark.data()
def test_tang_poems_all_files():
    if D.find("chinese-poetry-tang", "poet.tang.44000") is None:
        pytest.skip("only the bundled Tang-poem files are present (kexue data get chinese-poetry-tang)")
    poems = D.load_tang_poems()
    assert len(poems) == 45023
    assert all(isinstance(p, str) and p for p in poems)


def test_tang_limit_validation():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="limit must be a positive int"):
            D.load_tang_poems(limit=bad)


@pytest.mark.parametrize(("split", "n"), [("dev", 3219), ("trial", 1002)])
def test_cmrc2018(split, n):
    rows = D.load_cmrc2018(split)
    assert len(rows) == n
    assert all(r["answers"] and len(r["answers"]) == len(r["answer_starts"]) for r in rows)
    # answer spans sit at answer_start, except a handful of upstream offsets (-1 = not a span)
    spans = [(r["context"], t, a) for r in rows
             for t, a in zip(r["answers"], r["answer_starts"]) if a != -1]
    exact = sum(c[a:a + len(t)] == t for c, t, a in spans)
    assert exact >= 0.99 * len(spans) and len(spans) - exact <= 10


@pytest.mark.parametrize(("name", "n_nodes", "n_edges", "groups"),
                         [("football", 115, 613, set(range(12))),
                          ("polbooks", 105, 441, {"l", "c", "n"})])
def test_graphs(name, n_nodes, n_edges, groups):
    g = D.load_graph(name)
    assert len(g["labels"]) == len(g["groups"]) == n_nodes
    assert len(g["edges"]) == n_edges and set(g["groups"]) == groups
    assert all(0 <= i < n_nodes and 0 <= j < n_nodes for i, j in g["edges"])
    if name == "football":
        assert g["labels"][0] == "Pittsburgh" and g["groups"][0] == 1
    else:
        assert Counter(g["groups"]) == {"l": 43, "c": 49, "n": 13}


@pytest.mark.data()
@pytest.mark.parametrize("name", ["sentiment", "stsb-en", "sst2", "tinyshakespeare",
                                  "chinese-poetry-tang", "cmrc2018", "graphs"])
def test_bundled_and_upstream_copies_give_identical_records(name, monkeypatch, tmp_path,
                                                            research_root):
    """The bundled gzip copies read exactly as the upstream files in ``$KEXUE_DATA``."""
    from kexue.data import registry

    readers = {
        "sentiment": lambda: [D.load_sentiment(s) for s in ("train", "valid", "test")],
        "stsb-en": lambda: [D.load_stsb(s) for s in ("train", "dev", "test")],
        "sst2": lambda: [D.load_sst2(s) for s in ("train", "dev", "test")],
        "tinyshakespeare": D.load_tinyshakespeare,
        "chinese-poetry-tang": lambda: D.load_tang_poems(limit=10000),
        "cmrc2018": lambda: [D.load_cmrc2018(s) for s in ("dev", "trial")],
        "graphs": lambda: [D.load_graph(g) for g in ("football", "polbooks")],
    }
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("KEXUE_DATA")
    from_bundle = readers[name]()
    monkeypatch.setenv("KEXUE_DATA", research_root)
    monkeypatch.setattr(registry, "BUNDLED_ROOT", tmp_path / "none")
    from_upstream = readers[name]()
    assert from_bundle == from_upstream


# -- research-use sets ----------------------------------------------------------------


@pytest.mark.data("stsb-zh")
@pytest.mark.parametrize(("split", "n"), [("train", 5231), ("valid", 1458), ("test", 1361)])
def test_stsb_zh(split, n):
    rows = D.load_stsb(split, lang="zh")
    assert len(rows) == n
    assert {s for *_, s in rows} <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}
    if split == "valid":
        assert D.load_stsb("dev", lang="zh") == rows


@pytest.mark.data("senteval_cn")
@pytest.mark.parametrize(("task", "n_test", "n_valid", "balance"), [
    ("ATEC", 20000, 20000, {0: 16390, 1: 3610}),
    ("BQ", 10000, 10000, {0: 5000, 1: 5000}),
    ("LCQMC", 12500, 8802, {0: 6250, 1: 6250}),
    ("PAWSX", 2000, 2000, {0: 1106, 1: 894}),
])
def test_senteval_cn(task, n_test, n_valid, balance):
    test = D.load_senteval_cn(task, "test")
    assert len(test) == n_test and len(D.load_senteval_cn(task, "valid")) == n_valid
    assert Counter(y for *_, y in test) == balance
    assert all(isinstance(a, str) and isinstance(b, str) for a, b, _ in test)


@pytest.mark.data("fewclue-tnews")
@pytest.mark.parametrize(("split", "n", "labelled"), [
    ("train_0", 240, True), ("dev_4", 240, True), ("train_few_all", 1185, True),
    ("dev_few_all", 1098, True), ("test_public", 2010, True), ("test", 1500, False),
    ("unlabeled", 20000, False),
])
def test_fewclue_tnews(split, n, labelled):
    rows = D.load_fewclue("tnews", split)
    assert len(rows) == n
    assert all(isinstance(r["sentence"], str) for r in rows)
    labels = {r["label"] for r in rows}
    if labelled:
        assert labels <= set(range(100, 117)) - {105, 111}
    else:
        assert labels == {None}


@pytest.mark.data("fewclue-iflytek")
@pytest.mark.parametrize(("split", "n", "labelled"), [
    ("train_few_all", 3024, True), ("dev_few_all", 1373, True), ("train_3", 928, True),
    ("dev_2", 690, True), ("test_public", 1749, True), ("test", 2600, False),
])
def test_fewclue_iflytek(split, n, labelled):
    rows = D.load_fewclue("iflytek", split)
    assert len(rows) == n
    if labelled:
        assert all(isinstance(r["label"], int) and 0 <= r["label"] < 119 for r in rows)
    else:
        assert {r["label"] for r in rows} == {None}
    if split == "test_public":
        assert len({r["label"] for r in rows}) == 98


@pytest.mark.data("ptb-lm")
@pytest.mark.parametrize(("split", "lines", "words"),
                         [("train", 42068, 887521), ("valid", 3370, 70390), ("test", 3761, 78669)])
def test_ptb(split, lines, words):
    rows = D.load_ptb(split)
    assert len(rows) == lines
    assert sum(len(r) for r in rows) == words + lines  # one <eos> per line
    assert all(r[-1] == "<eos>" for r in rows)
    if split == "train":
        assert rows[0][:2] == ["aer", "banknote"]
        assert len({w for r in rows for w in r}) == 10000


@pytest.mark.data("kgclue")
def test_kgclue():
    for split, n in [("train", 18000), ("dev", 2000), ("test_public", 2000), ("test", 3000)]:
        rows = D.load_kgclue(split)
        assert len(rows) == n
        if split == "test":
            assert {r["answer"] for r in rows} == {None}
        else:
            assert all(len(r["answer"]) == 3 for r in rows)
    kb = D.load_kgclue_kb()
    assert len(kb) == 22000 and len({r[1] for r in kb}) == 2176
    # the derived KB holds every dev gold triple
    assert {r["answer"] for r in D.load_kgclue("dev")} <= set(kb)


@pytest.mark.data("csl-title", "lcsts-clge")
def test_csl_title_and_lcsts():
    for split in ("clge/val", "clge/test", "ts/dev", "ts/test"):
        rows = D.load_csl_title(split)
        assert len(rows) == 1000
        assert all(len(abstract) > len(title) > 0 for abstract, title in rows[:50])
    for split, n in [("train", 8666), ("val", 1000), ("test", 1000)]:
        assert len(D.load_lcsts(split)) == n


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(("call", "listed"), [
    (lambda: D.load_sentiment("dev"), "'train', 'valid', 'test'"),
    (lambda: D.load_stsb("validation"), "'train', 'dev', 'valid', 'test'"),
    (lambda: D.load_stsb("train", lang="fr"), "'en', 'zh'"),
    (lambda: D.load_senteval_cn("ATEC", "train"), "'valid', 'test'"),
    (lambda: D.load_senteval_cn("STS", "test"), "'ATEC', 'BQ', 'LCQMC', 'PAWSX'"),
    (lambda: D.load_sst2("valid"), "'train', 'dev', 'test'"),
    (lambda: D.load_fewclue("tnews", "dev"), "'train_0'"),
    (lambda: D.load_fewclue("iflytek", "unlabeled"), "'test_public'"),
    (lambda: D.load_fewclue("afqmc", "test"), "'tnews', 'iflytek'"),
    (lambda: D.load_ptb("dev"), "'train', 'valid', 'test'"),
    (lambda: D.load_cmrc2018("train"), "'dev', 'trial'"),
    (lambda: D.load_graph("karate"), "'football', 'polbooks'"),
])
def test_bad_split_lists_the_valid_ones(call, listed):
    with pytest.raises(ValueError) as err:
        call()
    assert listed in str(err.value)


def test_malformed_line_names_file_and_line(monkeypatch, tmp_path):
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "sentiment.valid.data").write_text("ok\t1\nno label here\n",
                                                                 encoding="utf-8")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"sentiment\.valid\.data, line 2: expected 2 .* got 1"):
        D.load_sentiment("valid")
