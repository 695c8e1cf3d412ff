"""kexue.recipes (``kexue train``): TSV reading, the two recipes end to end on a tiny BERT
folder, the kept best model, resuming, and what the output folder loads in."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from kexue.data import load_stsb, minilm_path
from kexue.embed import SentenceEncoder
from kexue.models import Bert, BertConfig
from kexue.recipes import RecipeConfig, read_tsv, train


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny BERT folder (MiniLM's tokenizer) and TSVs for both tasks."""
    root = tmp_path_factory.mktemp("recipes")
    torch.manual_seed(0)
    Bert(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=64)).save_pretrained(
        root / "tiny")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt"):
        shutil.copyfile(minilm_path() / name, root / "tiny" / name)
    rows = load_stsb("train", "en")[:48]
    (root / "sim.tsv").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows))
    (root / "cls.tsv").write_text("".join(f"{a}\t{int(s > 2.5)}\n" for a, _, s in rows))
    (root / "ml.tsv").write_text("".join(
        f"{a}\t{'0,2' if s > 2.5 else ('1' if s > 1 else '')}\n" for a, _, s in rows))
    return root


def config(files, task, data, out, **kw) -> RecipeConfig:
    base = {"task": task, "data": files / data, "valid": files / data, "model": files / "tiny",
            "out": out, "epochs": 2, "batch_size": 16, "lr": 1e-3, "progress": False}
    return RecipeConfig(**{**base, **kw})


def test_similarity_keeps_the_best_epoch_and_loads_everywhere(files, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    logged = []
    summary = train(config(files, "similarity", "sim.tsv", tmp_path, fgm=0.1, whitening=8),
                    log=logged.append)
    scores = [json.loads(x)["eval_spearman"] for x in (tmp_path / "metrics.jsonl").read_text()
              .splitlines() if "eval_spearman" in x]
    assert len(scores) == 2 and summary["best"]["spearman"] == max(scores)
    assert summary["best"]["epoch"] == 1 + int(np.argmax(scores))
    assert any("whitening to 8 dimensions" in x for x in logged)
    encoder = SentenceEncoder.from_pretrained(tmp_path)
    sentences = ["A man plays a guitar.", "Two dogs run."]
    ours = encoder.encode(sentences, progress=False)
    assert ours.shape == (2, 8)  # whitened
    theirs = st.SentenceTransformer(str(tmp_path), device="cpu").encode(sentences)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    (tmp_path / "best.json").write_text('{"epoch": 1, "spearman": 100.0}')  # an older run's
    rerun = train(config(files, "similarity", "sim.tsv", tmp_path, epochs=1), log=print)
    assert rerun["best"]["spearman"] < 100  # a fresh run into the same folder starts afresh
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["config"]["epochs"] == 1 and "valid_whitened" not in saved
    assert summary["config"]["fgm"] == 0.1 and summary["valid_whitened"]["spearman"] == \
        pytest.approx(encoder.evaluate(read_tsv(files / "sim.tsv", "similarity"))["spearman"])


@pytest.mark.parametrize("loss,extra", [("cross-entropy", {"vat": 1.0, "flooding": 0.05}),
                                        ("focal", {"gp": 1.0}),
                                        ("logit-adjusted", {"recompute": True}),
                                        ("multilabel", {})])
def test_classify_output_is_a_transformers_classifier(files, tmp_path, loss, extra):
    transformers = pytest.importorskip("transformers")
    data = "ml.tsv" if loss == "multilabel" else "cls.tsv"
    summary = train(config(files, "classify", data, tmp_path, loss=loss, **extra),
                    log=lambda line: None)
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert theirs.config.num_labels == summary["num_labels"] == (3 if loss == "multilabel"
                                                                 else 2)
    ours = Bert.from_pretrained(tmp_path).eval()
    assert set(ours.task_head) == {"classifier.weight", "classifier.bias"}
    ids = torch.tensor([[101, 1037, 2158, 102]])
    with torch.no_grad():
        logits = theirs(ids).logits
        pooled = ours(ids).pooler_output
    expected = pooled @ ours.task_head["classifier.weight"].T + ours.task_head["classifier.bias"]
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert SentenceEncoder.from_pretrained(tmp_path).encode("a text", progress=False).shape == (16,)


def test_an_interrupted_run_resumes_to_the_same_weights(files, tmp_path):
    train(config(files, "classify", "cls.tsv", tmp_path / "whole"), log=lambda line: None)

    def interrupt(line: str) -> None:
        if line.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(files, "classify", "cls.tsv", tmp_path / "cut"), log=interrupt)
    logged = []
    train(config(files, "classify", "cls.tsv", tmp_path / "cut", resume=True), log=logged.append)
    assert any(line.startswith("epoch 2") for line in logged)
    assert not any(line.startswith("epoch 1") for line in logged)  # not trained again

    def final(folder):
        return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]

    whole, cut = final(tmp_path / "whole"), final(tmp_path / "cut")
    for name in whole:
        torch.testing.assert_close(cut[name], whole[name], rtol=0, atol=0)


def test_tsv_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t1.0\n\na\tb\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3: expected 3 tab-separated columns "
                                         r"\(sentence_a, sentence_b, score\), got 2"):
        read_tsv(bad, "similarity")
    bad.write_text("sentence1\tsentence2\tscore\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: the score must be a number, got 'score'"):
        read_tsv(bad, "similarity")
    bad.write_text("good\t1\nfine\tpositive\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: the label must be a class id .* "
                                         r"got 'positive'"):
        read_tsv(bad, "classify")
    bad.write_text("good\t0,x\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: the label must be a class id"):
        read_tsv(bad, "classify", multilabel=True)
    bad.write_text("good\t-1\n")
    with pytest.raises(ValueError, match="class ids start at 0"):
        read_tsv(bad, "classify")
    bad.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no example"):
        read_tsv(bad, "classify")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_tsv(tmp_path / "missing.tsv", "classify")
    bad.write_text("t\t0,2\nu\t\n")
    assert read_tsv(bad, "classify", multilabel=True) == [("t", (0, 2)), ("u", ())]


@pytest.mark.parametrize("kw,match", [
    ({"task": "rank"}, "unknown task 'rank'; expected one of similarity, classify"),
    ({"loss": "focal"}, ("--loss focal \\(a classify loss\\) is not a similarity loss; "
                         "expected one of cosent, sbert, cosine-mse")),
    ({"loss": "hinge"}, "expected one of cosent, sbert, cosine-mse"),
    ({"task": "classify", "whitening": 8}, "--whitening applies to similarity"),
    ({"fgm": 0.5, "vat": 1.0}, "--fgm and --vat are each a training step"),
    ({"fgm": -1.0}, "--fgm must be a finite number > 0, got -1.0"),
    ({"flooding": float("nan")}, "--flooding must be a finite number >= 0"),
    ({"batch_size": 0}, "--batch-size must be a whole number >= 1, got 0"),
    ({"pooling": "max"}, "unknown --pooling 'max'"),
])
def test_bad_settings_say_what_is_allowed(tmp_path, kw, match):
    base = {"task": "similarity", "data": tmp_path / "a.tsv", "out": tmp_path / "out"}
    with pytest.raises(ValueError, match=match):
        RecipeConfig(**{**base, **kw})
