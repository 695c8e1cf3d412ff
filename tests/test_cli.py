"""The ``kexue`` command: exit codes, demo, data, list (with fake experiments)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kexue import cli
from kexue.evidence import registry, suite
from kexue.evidence.base import Claim, Experiment, Run, Skip

CLAIM = Claim("a post", "2020-01-01", "https://kexue.fm/archives/1", "a beats b", "a > b")


class Fine(Experiment):
    name, techniques, claim, seeds, deterministic = "fake-fine", ("T98",), CLAIM, 1, True

    def run(self, ctx):
        return Run({"a": 2.0, "b": 1.0})

    def checks(self, stats):
        return [stats.greater("a", "b")]


class NeedsModel(Fine):
    name, techniques = "fake-needs-model", ("T97",)

    def run(self, ctx):
        from kexue.data import PretrainedModelMissing

        raise PretrainedModelMissing("install it with: pip install 'kexue[pretrained]'")


class Optional(Fine):
    name, techniques = "fake-optional", ("T96",)

    def run(self, ctx):
        raise Skip("scikit-learn is not installed (pip install scikit-learn)")


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    found = {e.name: e for e in (Fine, NeedsModel, Optional)}
    monkeypatch.setattr(registry, "load_all", lambda: found)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_all_ran_exits_0_and_a_skip_exits_3_saying_why(fakes, capsys):
    assert cli.main(["reproduce", "fake-fine", "--out", str(fakes / "a")]) == cli.EXIT_OK
    code = cli.main(["reproduce", "fake-fine", "fake-needs-model", "--out", str(fakes / "b")])
    assert code == cli.EXIT_SKIPPED == 3
    out = capsys.readouterr().out
    assert "skipped fake-needs-model: pretrained model not installed" in out
    assert "kexue[pretrained]" in out
    assert cli.main(["reproduce", "fake-optional", "--out", str(fakes / "c")]) == 3


def test_a_technique_without_an_experiment_says_so(fakes, capsys):
    assert cli.main(["reproduce", "T30"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "T30" in err and "has no experiment yet" in err


def test_demo_runs_the_demo_list(fakes, monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEMO", ("fake-fine",))
    assert cli.main(["demo", "--out", str(fakes / "demo")]) == 0
    out = capsys.readouterr().out
    assert (fakes / "demo" / "index.html").is_file()
    assert "demo: 1 experiments in" in out and str(fakes / "demo" / "index.html") in out


def test_list_shows_the_minutes_measured_here(fakes, capsys):
    cli.main(["list"])
    assert "last run here" not in capsys.readouterr().out
    cli.main(["reproduce", "fake-fine", "--out", str(fakes / "a")])
    capsys.readouterr()
    cli.main(["list"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("fake-fine"))
    assert "(last run here 0.0)" in line
    assert suite.measured_minutes()[("fake-fine", "quick")] >= 0


def test_scale_has_help_text(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--help"])
    out = capsys.readouterr().out
    assert "quick: minutes on a 2-core CPU" in out and "3 nothing failed" in out


def test_data_get_errors_are_one_line(capsys):
    assert cli.main(["data", "get", "sst2"]) == cli.EXIT_USAGE
    assert "bundled" in capsys.readouterr().err
    assert cli.main(["data", "get"]) == cli.EXIT_USAGE
    assert cli.main(["data", "stsb-zh"]) == cli.EXIT_USAGE
    assert "kexue data get" in capsys.readouterr().err


def test_versions_do_not_import_heavy_libraries():
    code = ("import sys; from kexue.evidence.suite import versions; v = versions(); "
            "print('transformers' in sys.modules, 'sentence_transformers' in sys.modules, "
            "'torch' in v)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_several_data_roots_are_accepted(fakes, tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("KEXUE_DATA", f"{a}:{b}")
    assert cli.main(["reproduce", "fake-fine", "--out", str(fakes / "r")]) == 0
    monkeypatch.setenv("KEXUE_DATA", f"{a}:{tmp_path / 'missing'}")
    assert cli.main(["reproduce", "fake-fine", "--out", str(fakes / "r")]) == 2
    assert "missing is not a directory" in capsys.readouterr().err
