"""Registry, root resolution and the shipped copies."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

import kexue.data as D
from kexue.data import registry
from kexue.data.download import sources

REQUIRED_SETS = {
    "sentiment", "stsb-en", "stsb-zh", "senteval_cn", "sst2", "tinyshakespeare",
    "chinese-poetry-tang", "fewclue-tnews", "fewclue-iflytek", "ptb-lm", "cmrc2018",
    "graphs", "kgclue", "csl-title", "lcsts-clge", "ptb-treebank-sample",
}
SHIPPED_SETS = {"sentiment", "stsb-en", "sst2", "tinyshakespeare", "chinese-poetry-tang",
                "cmrc2018", "graphs"}


def test_registry_covers_the_sets():
    assert REQUIRED_SETS <= set(D.DATASETS)
    for name, ds in D.DATASETS.items():
        assert ds.name == name and ds.files and ds.source and ds.licence
        assert ds.optional <= set(ds.files)
    assert set(D.DATASETS["senteval_cn"].files) == {
        f"{t}/{s}" for t in ("ATEC", "BQ", "LCQMC", "PAWSX") for s in ("valid", "test")
    }


def test_dataset_is_frozen():
    with pytest.raises(AttributeError):
        D.DATASETS["sst2"].name = "x"  # type: ignore[misc]


def test_redistributable_flags():
    assert {n for n, ds in D.DATASETS.items() if ds.redistributable} == SHIPPED_SETS


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.data(n))
                                  for n in sorted(REQUIRED_SETS)])
def test_every_file_is_present_and_matches_its_checksum(name):
    for key, rel in D.DATASETS[name].files.items():
        p = D.find(name, key)
        if p is None:
            continue  # optional files (Tang poems beyond the bundled ten)
        source = sources().get(rel)
        if source is not None and p.name == Path(rel).name:  # an upstream copy, not a .gz of it
            assert hashlib.sha256(p.read_bytes()).hexdigest() == source.sha256, rel


@pytest.mark.parametrize("name", sorted(SHIPPED_SETS))
def test_bundled_sets_work_alone(name, only_bundled):
    assert D.available(name)
    for key in D.DATASETS[name].files:
        if key in D.DATASETS[name].optional:
            continue
        p = D.path(name, key)
        assert p.is_relative_to(registry.BUNDLED_ROOT) and p.suffix == ".gz"


def test_every_file_not_bundled_has_a_source():
    for ds in D.DATASETS.values():
        for key, rel in ds.files.items():
            bundled = ds.redistributable and key not in ds.optional
            assert (rel in sources()) != bundled, rel
    for s in sources().values():
        assert len(s.sha256) == 64 and s.size > 0
        assert (s.url or "").startswith("https://raw.githubusercontent.com/") or s.derived


def test_research_sets_are_never_shipped():
    for ds in D.DATASETS.values():
        if ds.redistributable:
            continue
        for rel in ds.files.values():
            for cand in (rel, rel + ".gz", rel.removesuffix(".gz")):
                assert not (registry.BUNDLED_ROOT / cand).exists(), cand


def test_shipped_size_is_small():
    total = sum(p.stat().st_size for p in registry.BUNDLED_ROOT.rglob("*") if p.is_file())
    assert total < 12 * 2**20, total


@pytest.mark.data()
def test_bundled_bytes_equal_upstream_bytes(research_root):
    """Each bundled .gz decompresses to exactly the upstream file (or is the same .gz)."""
    for name in SHIPPED_SETS:
        ds = D.DATASETS[name]
        for key, rel in ds.files.items():
            shipped = registry.BUNDLED_ROOT / (rel if rel.endswith(".gz") else rel + ".gz")
            if key in ds.optional:
                assert not shipped.exists()
                continue
            shared = Path(research_root) / rel
            if rel.endswith(".gz"):
                assert shipped.read_bytes() == shared.read_bytes(), rel
            else:
                assert gzip.decompress(shipped.read_bytes()) == shared.read_bytes(), rel


def test_kexue_data_comes_first(monkeypatch, tmp_path):
    (tmp_path / "sentiment").mkdir()
    (tmp_path / "sentiment" / "sentiment.valid.data").write_text("好\t1\n坏\t0\n", encoding="utf-8")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert D.data_roots()[0] == tmp_path
    assert D.data_roots()[1:] == [registry.BUNDLED_ROOT, D.user_data_dir()]
    assert D.path("sentiment", "valid") == tmp_path / "sentiment" / "sentiment.valid.data"
    assert D.load_sentiment("valid") == [("好", 1), ("坏", 0)]


def test_kexue_data_several_roots(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "sentiment").mkdir(parents=True)
    a.mkdir()
    (b / "sentiment" / "sentiment.test.data").write_text("x\t0\n", encoding="utf-8")
    monkeypatch.setenv("KEXUE_DATA", f"{a}{os.pathsep}{b}")
    assert D.data_roots()[:2] == [a, b]
    assert D.load_sentiment("test") == [("x", 0)]


def test_gz_and_plain_variants_are_both_found(monkeypatch, tmp_path, no_roots):
    # registered without .gz, stored gzipped
    (tmp_path / "sst2").mkdir()
    with gzip.open(tmp_path / "sst2" / "dev.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("label\tcontent\r\n1\tgood .\r\n")
    # registered as .gz, stored plain
    (tmp_path / "ptb-lm").mkdir()
    (tmp_path / "ptb-lm" / "ptb.valid.txt").write_text(" a b \n c \n", encoding="utf-8")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert D.path("sst2", "dev").name == "dev.tsv.gz"
    assert D.load_sst2("dev") == [("good .", 1)]
    assert D.path("ptb-lm", "valid").name == "ptb.valid.txt"
    assert D.load_ptb("valid") == [["a", "b", "<eos>"], ["c", "<eos>"]]


def test_missing_file_error_names_path_roots_and_variable(no_roots):
    with pytest.raises(FileNotFoundError) as err:
        D.path("sentiment", "train")
    msg = str(err.value)
    assert "sentiment/sentiment.train.data" in msg and "KEXUE_DATA" in msg
    assert str(registry.BUNDLED_ROOT) in msg and str(D.user_data_dir()) in msg
    assert "kexue data get sentiment" in msg
    assert D.find("sentiment", "train") is None
    assert not D.available("sentiment")
    with pytest.raises(FileNotFoundError, match="KEXUE_DATA"):
        D.load_sentiment("train")
    with pytest.raises(FileNotFoundError, match="poet.tang.0.json"):
        D.load_tang_poems()


def test_unknown_name_or_key():
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        D.path("nope", "train")
    with pytest.raises(ValueError, match="no file 'dev'.*'train', 'valid', 'test'"):
        D.path("sentiment", "dev")
    with pytest.raises(ValueError, match="unknown data set"):
        D.available("nope")


def test_describe_reports_sizes_and_roots(only_bundled):
    rows = {row["name"]: row for row in D.describe()}
    assert set(rows) == set(D.DATASETS)
    for name, row in rows.items():
        assert set(row) >= {"name", "files", "size", "source", "licence",
                            "redistributable", "present", "root"}
        assert row["present"] == D.available(name)
        expected = sum(p.stat().st_size for k in D.DATASETS[name].files
                       if (p := D.find(name, k)) is not None)
        assert row["size"] == expected
    assert rows["sst2"]["root"] == str(registry.BUNDLED_ROOT)
    assert rows["sst2"]["size"] > 1_000_000


def test_describe_when_nothing_is_present(no_roots):
    for row in D.describe():
        assert row["present"] is False and row["size"] == 0 and row["root"] is None


def test_tang_is_available_from_the_bundled_subset(only_bundled):
    assert D.available("chinese-poetry-tang")
    assert D.find("chinese-poetry-tang", "poet.tang.10000") is None


def test_open_text_splits_lines_only_at_newline(monkeypatch, tmp_path):
    (tmp_path / "lcsts-clge").mkdir()
    Path(tmp_path / "lcsts-clge" / "test.tsv").write_bytes(b"s\ta\rb\r\nt\tc\n")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with D.open_text("lcsts-clge", "test") as f:
        assert f.readlines() == ["s\ta\rb\r\n", "t\tc\n"]
    assert D.load_lcsts("test") == [("a\rb", "s"), ("c", "t")]
