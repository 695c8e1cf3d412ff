"""The evidence suite: verdict logic, writing as it goes, caching, CLI errors."""

import json
import math

import pytest

from kexue import cli
from kexue.evidence import base, registry, suite
from kexue.evidence.base import Check, Claim, Experiment, Run, Stat, Stats, verdict

CLAIM = Claim("a post", "2020-01-01", "https://kexue.fm/archives/1", "a beats b", "a > b")
CALLS = {"n": 0}


class Good(Experiment):
    name, techniques, claim, seeds = "fake-good", ("T99",), CLAIM, 3

    def run(self, ctx):
        CALLS["n"] += 1
        path = ctx.figure("plot.png")
        path.write_bytes(b"png")
        return Run({"a": 10.0 + ctx.seed * 0.1, "b": 1.0 - ctx.seed * 0.1}, figures=["plot.png"])

    def checks(self, stats):
        return [stats.greater("a", "b")]


class Broken(Experiment):
    name, techniques, claim = "fake-broken", ("T98",), CLAIM

    def run(self, ctx):
        raise RuntimeError("boom")

    def checks(self, stats):
        return []


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "load_all", lambda: {"fake-good": Good, "fake-broken": Broken})
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    CALLS["n"] = 0
    return tmp_path


def test_stat_matches_direct_formula():
    s = Stat([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))


def test_difference_within_noise_is_inconclusive():
    stats = Stats(a=Stat([1.0, 3.0, 2.0]), b=Stat([1.5, 2.5, 1.9]))
    check = stats.greater("a", "b")
    assert check.holds is None and "within noise" in check.detail
    assert verdict([check]) == base.INCONCLUSIVE


def test_difference_beyond_noise_decides_both_ways():
    stats = Stats(a=Stat([10.0, 10.1, 9.9]), b=Stat([1.0, 1.1, 0.9]))
    assert stats.greater("a", "b").holds is True
    assert stats.greater("b", "a").holds is False
    assert verdict([stats.greater("a", "b"), stats.greater("b", "a")]) == base.NOT_REPRODUCED


def test_one_seed_needs_determinism_to_decide():
    stats = Stats(a=Stat([2.0]), b=Stat([1.0]))
    assert stats.greater("a", "b").holds is None
    stats.deterministic = True
    assert stats.greater("a", "b").holds is True
    assert stats.above("a", 1.5).holds is True and stats.below("a", 1.5).holds is False


def test_within_and_not_worse():
    stats = Stats(a=Stat([1.0]), b=Stat([1.4]))
    stats.deterministic = True
    assert stats.within("a", "b", 0.5).holds is True
    assert stats.within("a", "b", 0.3).holds is False
    assert stats.not_worse("a", "b", 0.5).holds is True
    assert stats.not_worse("a", "b", 0.3).holds is False


def test_verdict_needs_checks():
    with pytest.raises(ValueError):
        verdict([])
    assert verdict([Check("x", True, "")]) == base.REPRODUCED


def test_reproduce_writes_report_keeps_results_and_caches(fakes):
    out = fakes / "report"
    _, records = suite.reproduce([Good, Broken], "quick", None, out)
    assert [r["verdict"] for r in records] == ["reproduced", "error"]
    assert CALLS["n"] == 3
    blob = json.loads((out / "results.json").read_text())
    good = blob["experiments"][0]
    assert good["metrics"]["a"]["values"] == pytest.approx([10.0, 10.1, 10.2])
    assert "boom" in blob["experiments"][1]["reason"]
    assert (out / "fake-good" / "plot.png").exists()
    md = (out / "index.md").read_text()
    assert "[fake-good](fake-good/index.md)" in md and "reproduced" in md
    assert "a beats b" in (out / "fake-good" / "index.md").read_text()
    assert '<table id="summary">' in (out / "index.html").read_text()
    assert "a beats b" in (out / "fake-good" / "index.html").read_text()
    # second run: served from the cache, figures restored
    out2 = fakes / "report2"
    _, again = suite.reproduce([Good], "quick", None, out2)
    assert CALLS["n"] == 3 and again[0]["cached"] and (out2 / "fake-good" / "plot.png").exists()
    # a different number of seeds is a different cache entry
    suite.reproduce([Good], "quick", 2, fakes / "report3")
    assert CALLS["n"] == 5


class MeasuredOnly(Experiment):
    name, techniques, claim, seeds, numerical_claim = "fake-measured", ("T97",), CLAIM, 2, False

    def run(self, ctx):
        return Run({"loss": 1.0 + ctx.seed})

    def checks(self, stats):
        return []


def test_experiment_without_a_numerical_claim_is_reported_as_measured(fakes):
    out = fakes / "report"
    _, (record,) = suite.reproduce([MeasuredOnly], "quick", None, out)
    assert record["verdict"] == "measured" and record["checks"] == []
    assert record["metrics"]["loss"]["values"] == [1.0, 2.0]
    assert "measured" in (out / "index.md").read_text()
    assert "Verdict: 📏 measured" in (out / "fake-measured" / "index.md").read_text()
    assert "measured" in (out / "fake-measured" / "index.html").read_text()


def test_corrupt_cache_is_discarded_and_recomputed(fakes):
    lines = []
    suite.reproduce([Good], "quick", 1, fakes / "r")
    (cache,) = (fakes / "cache" / "results").glob("*/*/result.json")
    cache.write_text("{not json")
    _, records = suite.reproduce([Good], "quick", 1, fakes / "r2", log=lines.append)
    assert records[0]["status"] == "ok" and not records[0].get("cached")
    assert any("discarding unreadable cache entry" in line and str(cache.parent) in line
               for line in lines)
    assert CALLS["n"] == 2


def test_skipped_when_data_missing(fakes, monkeypatch):
    monkeypatch.setattr(suite, "missing_data", lambda names: ["stsb-zh"])
    _, records = suite.reproduce([Good], "quick", 1, fakes / "r")
    assert records[0]["verdict"] == "skipped" and "KEXUE_DATA" in records[0]["reason"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["reproduce", "fake-good", "--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["report", "/nonexistent-dir"], "no results.json"),
    ],
)
def test_cli_bad_input_is_one_line(fakes, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_unwritable_out(fakes, capsys):
    blocker = fakes / "file"
    blocker.write_text("")
    assert cli.main(["reproduce", "fake-good", "--out", str(blocker / "sub")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err


def test_cli_missing_data_root(fakes, capsys, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(fakes / "nowhere"))
    assert cli.main(["reproduce", "fake-good"]) == 2
    assert "KEXUE_DATA" in capsys.readouterr().err


def test_cli_corrupt_cache_is_a_warning(fakes, capsys):
    assert cli.main(["reproduce", "fake-good", "--seeds", "1", "--out", str(fakes / "a")]) == 0
    (cache,) = (fakes / "cache" / "results").glob("*/*/result.json")
    cache.write_text("garbage")
    assert cli.main(["reproduce", "fake-good", "--seeds", "1", "--out", str(fakes / "b")]) == 0
    assert "discarding unreadable cache entry" in capsys.readouterr().out


def test_cli_reproduce_by_technique_and_report(fakes, capsys):
    assert cli.main(["reproduce", "T99", "--out", str(fakes / "r")]) == 0
    assert "fake-good" in capsys.readouterr().out
    (fakes / "r" / "index.md").unlink()
    assert cli.main(["report", str(fakes / "r")]) == 0
    assert (fakes / "r" / "index.md").exists()


def test_cli_exit_code_reports_errors(fakes):
    assert cli.main(["reproduce", "fake-broken", "--out", str(fakes / "r")]) == 1


def test_cli_readme_table_from_merged_reports(fakes, capsys):
    assert cli.main(["reproduce", "fake-good", "--out", str(fakes / "r1")]) == 0
    assert cli.main(["reproduce", "fake-broken", "--out", str(fakes / "r2")]) == 1
    readme = fakes / "README.md"
    readme.write_text(f"intro\n{cli.START}\nold\n{cli.END}\noutro\n")
    assert cli.main(["readme", "--readme", str(readme), "--report", str(fakes / "r1"),
                     "--report", str(fakes / "r2")]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.count("| T") >= 34 and "| T12 | BERT-whitening |" in text


def test_cli_readme_needs_markers(fakes, capsys):
    readme = fakes / "README.md"
    readme.write_text("no markers\n")
    assert cli.main(["readme", "--readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
