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


# --- kexue train ---------------------------------------------------------------------


@pytest.fixture
def tiny_model(tmp_path):
    import shutil

    import torch

    from kexue.data import minilm_path
    from kexue.models import Bert, BertConfig

    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    Bert(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        shutil.copyfile(minilm_path() / name, folder / name)
    return folder


def test_train_similarity_end_to_end(tmp_path, tiny_model, capsys, one_thread):
    from kexue.embed import SentenceEncoder

    data = tmp_path / "train.tsv"
    data.write_text("A man plays.\tA man is playing.\t4.5\nA cat.\tThe stock fell.\t0.2\n"
                    "Kids run.\tChildren are running.\t4.0\nRain.\tA sunny day.\t1.0\n")
    out = tmp_path / "out"
    code = cli.main(["train", "similarity", "--data", str(data), "--valid", str(data),
                     "--model", str(tiny_model), "--out", str(out), "--epochs", "2",
                     "--batch-size", "4", "--lr", "1e-3", "--flooding", "0.01"])
    assert code == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert "epoch 2: valid spearman" in printed and "best epoch" in printed
    assert SentenceEncoder.from_pretrained(out).encode("A man.", progress=False).shape == (16,)


def test_train_bad_input_is_one_line_naming_the_problem(tmp_path, tiny_model, capsys):
    data = tmp_path / "train.tsv"
    data.write_text("A man plays.\tA man is playing.\t4.5\nA cat.\tThe stock fell.\n")
    args = ["--data", str(data), "--model", str(tiny_model), "--out", str(tmp_path / "o")]
    assert cli.main(["train", "similarity", *args]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.tsv:2: expected 3 tab-separated columns" in err
    data.write_text("good film\t1\nbad film\tnegative\n")
    assert cli.main(["train", "classify", *args]) == cli.EXIT_USAGE
    assert "train.tsv:2: the label must be a class id" in capsys.readouterr().err
    assert cli.main(["train", "classify", *args, "--loss", "cosent"]) == cli.EXIT_USAGE
    assert ("expected one of cross-entropy, focal, multilabel, logit-adjusted"
            in capsys.readouterr().err)


@pytest.mark.parametrize("flags,allowed", [
    (["--loss", "hinge"], "choose from"),
    (["--pooling", "max"], "choose from"),
    (["--fgm", "0.5", "--gp", "1"], "not allowed with argument"),
])
def test_train_unknown_flag_values_list_the_allowed_ones(tmp_path, capsys, flags, allowed):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "similarity", "--data", "x", "--out", str(tmp_path), *flags])
    assert exit_info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert allowed in err
    if flags[0] == "--loss":
        assert "'cosent'" in err and "'logit-adjusted'" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "rank", "--data", "x", "--out", str(tmp_path)])
    assert "'similarity', 'classify'" in capsys.readouterr().err


def test_the_demo_needs_only_bundled_data():
    """`kexue demo` must run in a fresh clone or an installed wheel: shipped sets only."""
    from kexue.data import DATASETS
    from kexue.evidence.registry import load_all

    experiments = load_all()
    for name in cli.DEMO:
        needs = experiments[name].datasets
        assert all(DATASETS[d].redistributable for d in needs), (name, needs)


def test_the_readme_cell_shows_the_fidelity_beside_the_verdict():
    record = {"verdict": "reproduced", "claim": {"fidelity": "substituted"}}
    assert cli._verdict_cell(record) == "reproduced (substituted)"
    assert cli._verdict_cell({"verdict": "skipped", "claim": {}}) == "skipped"
