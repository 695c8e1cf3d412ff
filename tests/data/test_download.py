"""``kexue data get``: downloads from a real local HTTP server, checksums, failures."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

import kexue.data as D
from kexue.data import download
from kexue.data.download import DownloadError, Source

FILES = {  # stsb-zh's three files, with made-up contents
    "stsb-zh/STS-B.train.data": "一架飞机要起飞了。\t一架飞机正在起飞。\t5\n",
    "stsb-zh/STS-B.valid.data": "一个男人在吹大笛子。\t一个人在吹长笛。\t3\n",
    "stsb-zh/STS-B.test.data": "一个女孩在给她的头发做发型。\t一个女孩在梳头。\t2\n",
}


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate: set[str] = set()  # paths whose body is cut short (Content-Length kept)

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        if rel in self.truncate:
            body = (Path(self.directory) / rel).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A real HTTP server in a thread serving ``tmp_path / "www"``; yields its base URL."""
    www = tmp_path / "www"
    for rel, text in FILES.items():
        (www / rel).parent.mkdir(parents=True, exist_ok=True)
        (www / rel).write_text(text, encoding="utf-8")

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(www), **kwargs)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    _Handler.truncate = set()


@pytest.fixture
def table(monkeypatch, server, tmp_path):
    """Point the download table of stsb-zh at the local server; hide every data root."""
    entries = {rel: Source(rel, hashlib.sha256(text.encode()).hexdigest(), len(text.encode()),
                           url=f"{server}/{rel}") for rel, text in FILES.items()}
    monkeypatch.setattr(download, "sources", lambda: entries)
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.delenv("KEXUE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    return entries


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix == ".part"]


def test_get_downloads_verifies_and_makes_the_set_available(table, tmp_path):
    assert not D.available("stsb-zh")
    lines = []
    root = D.get("stsb-zh", progress=False, log=lines.append)
    assert root == D.user_data_dir() == tmp_path / "cache" / "data"
    assert D.available("stsb-zh")
    assert D.load_stsb("train", lang="zh") == [("一架飞机要起飞了。", "一架飞机正在起飞。", 5.0)]
    assert "research use" in lines[0]  # the licence is said
    assert not _leftovers(root)
    # a second call downloads nothing
    lines.clear()
    D.get("stsb-zh", progress=False, log=lines.append)
    assert not any("fetching" in line for line in lines)


def test_wrong_checksum_saves_nothing(table, monkeypatch, tmp_path):
    rel = "stsb-zh/STS-B.valid.data"
    bad = dict(table)
    bad[rel] = Source(rel, "0" * 64, table[rel].size, table[rel].url)
    monkeypatch.setattr(download, "sources", lambda: bad)
    with pytest.raises(DownloadError, match="SHA-256 .* does not match"):
        D.get("stsb-zh", progress=False, log=lambda s: None)
    root = tmp_path / "cache" / "data"
    assert not (root / rel).exists() and not _leftovers(root)


def test_404_names_the_url(table, monkeypatch, server):
    rel = "stsb-zh/STS-B.test.data"
    missing = dict(table)
    missing[rel] = Source(rel, table[rel].sha256, table[rel].size, f"{server}/nowhere/{rel}")
    monkeypatch.setattr(download, "sources", lambda: missing)
    with pytest.raises(DownloadError, match=r"nowhere/stsb-zh/STS-B\.test\.data: HTTP 404"):
        D.get("stsb-zh", progress=False, log=lambda s: None)


def test_interrupted_download_leaves_no_half_file(table, tmp_path):
    rel = "stsb-zh/STS-B.train.data"
    _Handler.truncate = {rel}
    with pytest.raises(DownloadError, match="nothing was saved|interrupted"):
        D.get("stsb-zh", progress=False, log=lambda s: None)
    root = tmp_path / "cache" / "data"
    assert not (root / rel).exists() and not _leftovers(root)


def test_mirror_with_the_data_layout(table, monkeypatch, server, tmp_path):
    far = {rel: Source(rel, s.sha256, s.size, url="http://127.0.0.1:9/unreachable")
           for rel, s in table.items()}
    monkeypatch.setattr(download, "sources", lambda: far)
    monkeypatch.setenv("KEXUE_DATA_MIRROR", server)
    D.get("stsb-zh", root=tmp_path / "elsewhere", progress=False, log=lambda s: None)
    assert (tmp_path / "elsewhere" / "stsb-zh" / "STS-B.test.data").read_text(
        encoding="utf-8") == FILES["stsb-zh/STS-B.test.data"]


def test_bad_names():
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        D.get("nope")
    with pytest.raises(ValueError, match="bundled"):
        D.get("sst2")


def test_the_kgclue_kb_is_derived_from_the_answers(monkeypatch, tmp_path):
    kg = tmp_path / "kgclue"
    kg.mkdir()
    rows = {"train": ["甲（人） ||| 出生地 ||| 乙", "甲（人） ||| 出生地 ||| 乙"],
            "dev": ["丙 ||| 作者 ||| 丁"], "test_public": ["戊 ||| 类型 ||| 己"], "test": []}
    for split, answers in rows.items():
        (kg / f"{split}.json").write_text(
            "".join(json.dumps({"id": i, "question": "?", "answer": a}, ensure_ascii=False) + "\n"
                    for i, a in enumerate(answers)), encoding="utf-8")
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    assert download.derive_kgclue_kb() == "甲（人）\t出生地\t乙\n丙\t作者\t丁\n戊\t类型\t己\n"


@pytest.mark.data("kgclue")
def test_the_derived_kb_matches_the_recorded_checksum():
    recorded = download.sources()["kgclue/knowledge_from_answers.txt"].sha256
    assert hashlib.sha256(download.derive_kgclue_kb().encode()).hexdigest() == recorded
