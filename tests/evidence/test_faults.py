"""Faults and hostile input: nothing measured is lost, nothing untrusted is believed.

Each test reproduces one way the suite used to lose or trust the wrong thing: an
unwritable or full cache, several runs into one report folder (one after another and at
once), a user's files in the report folder, a kill during a weight-cache write, and a
forged results file or cache entry.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from kexue import cli
from kexue.evidence import registry, suite
from kexue.evidence.base import Claim, Experiment, Run
from kexue.evidence.cache import atomic_write, cached_state
from kexue.evidence.records import RecordError, load_results

CLAIM = Claim("a post", "2020-01-01", "https://kexue.fm/archives/1", "a beats b", "a > b")


class Alpha(Experiment):
    name, techniques, claim, seeds, deterministic = "fake-alpha", ("T90",), CLAIM, 1, True

    def run(self, ctx):
        (ctx.workdir / "alpha.png").write_bytes(b"png")
        return Run({"a": 2.0, "b": 1.0}, figures=["alpha.png"])

    def checks(self, stats):
        return [stats.greater("a", "b")]


class Beta(Alpha):
    name, techniques = "fake-beta", ("T91",)


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "load_all", lambda: {"fake-alpha": Alpha, "fake-beta": Beta})
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _names(out) -> list[str]:
    return sorted(r["name"] for r in load_results(out)[1])


# --- 1. the cache never costs a result ---------------------------------------------


def test_cache_path_is_a_file(fakes, monkeypatch, capsys):
    blocker = fakes / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("KEXUE_CACHE", str(blocker))
    assert cli.main(["reproduce", "fake-alpha", "fake-beta", "--out", str(fakes / "out")]) == 0
    assert _names(fakes / "out") == ["fake-alpha", "fake-beta"]  # both ran, both kept
    assert "warning: could not cache the result" in capsys.readouterr().out


def test_full_disk_while_caching(fakes, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(suite, "atomic_write", full)
    assert cli.main(["reproduce", "fake-alpha", "--out", str(fakes / "out")]) == 0
    assert _names(fakes / "out") == ["fake-alpha"]
    assert "No space left on device" in capsys.readouterr().out


# --- 2. a report folder accumulates -------------------------------------------------


def test_sequential_runs_into_one_folder_keep_both(fakes):
    out = fakes / "r"
    assert cli.main(["reproduce", "fake-alpha", "--out", str(out)]) == 0
    assert cli.main(["reproduce", "fake-beta", "--out", str(out)]) == 0
    assert _names(out) == ["fake-alpha", "fake-beta"]
    md = (out / "index.md").read_text()
    assert "fake-alpha" in md and "fake-beta" in md


def _run_one(exp_name: str, out: str, cache: str) -> None:
    os.environ["KEXUE_CACHE"] = cache
    exp = {"fake-alpha": Alpha, "fake-beta": Beta}[exp_name]
    suite.reproduce([exp], "quick", None, out, use_cache=False, log=lambda s: None)


def test_concurrent_runs_into_one_folder_keep_both(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(4):
        out = str(tmp_path / f"r{round_}")
        procs = [ctx.Process(target=_run_one, args=(n, out, str(tmp_path / "cache")))
                 for n in ("fake-alpha", "fake-beta")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert _names(out) == ["fake-alpha", "fake-beta"], round_


# --- 3. never delete what kexue did not write ---------------------------------------


def test_a_users_folder_is_never_deleted(fakes, capsys):
    out = fakes / "d"
    (out / "fake-alpha").mkdir(parents=True)
    (out / "fake-alpha" / "thesis.tex").write_text("years of work")
    assert cli.main(["reproduce", "fake-alpha", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out / "fake-alpha") in err and "not written by kexue" in err
    assert (out / "fake-alpha" / "thesis.tex").read_text() == "years of work"


def test_kexues_own_folder_is_replaced_on_a_cached_rerun(fakes):
    out = fakes / "d"
    assert cli.main(["reproduce", "fake-alpha", "--out", str(out)]) == 0
    (out / "fake-alpha" / "stale.png").write_bytes(b"old")
    assert cli.main(["reproduce", "fake-alpha", "--out", str(out)]) == 0  # cached
    assert not (out / "fake-alpha" / "stale.png").exists()
    assert (out / "fake-alpha" / "alpha.png").exists()


# --- 5. weight caches: atomic, unreadable entries discarded -------------------------


def test_a_kill_during_a_cache_write_leaves_no_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, torch
        from kexue.evidence import cache
        real = os.fsync
        def die(fd):
            os.kill(os.getpid(), signal.SIGKILL)  # as if the machine went down mid-write
        cache.os.fsync = die
        cache.cached_state({str(tmp_path)!r}, "lm", {{"k": 1}},
                           lambda: {{"w": torch.zeros(1000, 1000)}}, log=lambda s: None)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          check=False)
    assert proc.returncode == -signal.SIGKILL
    assert list(tmp_path.glob("lm-*.pt")) == []  # only a hidden temporary file, if anything


def test_an_empty_or_corrupt_weight_file_is_discarded_and_rebuilt(tmp_path):
    built = []

    def build():
        built.append(1)
        return {"w": torch.ones(3)}

    state = cached_state(tmp_path, "lm", {"k": 1}, build, log=lambda s: None)
    (path,) = tmp_path.glob("lm-*.pt")
    path.write_bytes(b"")  # what a non-atomic write killed at the wrong time leaves
    with pytest.warns(UserWarning, match=f"discarding unreadable weight cache {path}"):
        again = cached_state(tmp_path, "lm", {"k": 1}, build, log=lambda s: None)
    assert len(built) == 2 and torch.equal(again["w"], state["w"])
    assert torch.equal(cached_state(tmp_path, "lm", {"k": 1}, build, log=lambda s: None)["w"],
                       state["w"]) and len(built) == 2  # the rebuilt file is used


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "results.json"]


# --- 6. hostile results files and cache entries -------------------------------------


def _write_results(folder, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"run": {"scale": "quick"},
                                                     "experiments": [record]}))


GOOD = {"name": "fake-alpha", "techniques": ["T90"], "claim": CLAIM.to_dict(), "scale": "quick",
        "seeds": [0], "status": "skipped", "verdict": "skipped", "reason": "no data"}


@pytest.mark.parametrize("change, field", [
    ({"name": "../../X"}, "'name'"),
    ({"name": "/etc/passwd"}, "'name'"),
    ({"status": "ok", "metrics": {}, "checks": [], "wall_time": 1.0, "figures": ["/tmp/x.png"],
      "tables": [], "notes": [], "samples": []}, "'figures'"),
    ({"verdict": "proven"}, "'verdict'"),
    ({"seeds": "0"}, "'seeds'"),
])
def test_kexue_report_rejects_a_hostile_record_in_one_line(tmp_path, capsys, change, field):
    out = tmp_path / "r"
    _write_results(out, {**GOOD, **change})
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(out / "results.json") in err and field in err
    assert not (tmp_path / "X").exists()


def test_a_record_missing_a_field_is_named(tmp_path):
    out = tmp_path / "r"
    _write_results(out, {k: v for k, v in GOOD.items() if k != "claim"})
    with pytest.raises(RecordError, match="has no field 'claim'"):
        load_results(out)


def test_forged_and_partial_cache_entries_are_not_believed(fakes):
    out = fakes / "r"
    assert cli.main(["reproduce", "fake-alpha", "--out", str(out)]) == 0
    (entry,) = (fakes / "cache" / "results").glob("*/*/result.json")
    record = json.loads(entry.read_text())
    record["verdict"] = "not reproduced"  # forged, checksum left as it was
    entry.write_text(json.dumps(record))
    lines = []
    suite.reproduce([Alpha], "quick", None, fakes / "r2", log=lines.append)
    assert load_results(fakes / "r2")[1][0]["verdict"] == "reproduced"
    assert any("checksum does not match" in line for line in lines)
    # partial: the cache entry lost its checksum (written by an older kexue, or cut short)
    (entry,) = (fakes / "cache" / "results").glob("*/*/result.json")
    record = json.loads(entry.read_text())
    del record["checksum"]
    entry.write_text(json.dumps(record))
    lines.clear()
    suite.reproduce([Alpha], "quick", None, fakes / "r3", log=lines.append)
    assert any("discarding unreadable cache entry" in line for line in lines)


def test_huge_seed_counts_are_one_line(fakes, capsys):
    assert cli.main(["reproduce", "fake-alpha", "--seeds", "99999999999999999999"]) == 2
    assert "between 1 and 1000" in capsys.readouterr().err
