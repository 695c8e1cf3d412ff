"""SentenceEncoder.fit (CoSENT, Sentence-BERT, cosine-MSE) and save_pretrained, also read
by sentence-transformers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kexue.data import load_stsb, minilm_path
from kexue.embed import PairModel, SentenceEncoder, Whitening, pair_rows
from kexue.models import Bert, BertConfig

tokenizers = pytest.importorskip("tokenizers")

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A woman cuts an onion.", 4.2),
    ("A dog runs in the park.", "A cat sleeps on the sofa.", 0.6),
    ("Three boys play football.", "Kids are playing soccer.", 3.5),
    ("The stock market fell today.", "A child is eating cake.", 0.0),
    ("A plane is taking off.", "An airplane departs.", 4.6),
    ("A man is cooking.", "Someone prepares food.", 3.8),
    ("The sky is blue.", "Rain falls on the city.", 1.0),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))


def tiny_encoder(tokenizer, seed=0, **kw) -> SentenceEncoder:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16,
                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return SentenceEncoder(Bert(config, pooler=False), tokenizer, max_length=32, **kw)


def batch_of(encoder, pairs):
    a = encoder.tokenize([p[0] for p in pairs])
    b = encoder.tokenize([p[1] for p in pairs])
    return a, b, torch.tensor([p[2] for p in pairs])


# ----------------------------------------------------------------------------- losses


def test_cosent_loss_matches_brute_force_over_ordered_pairs(tokenizer):
    encoder = tiny_encoder(tokenizer)
    model = PairModel(encoder, "cosent").eval()
    a, b, y = batch_of(encoder, PAIRS)
    cos = F.cosine_similarity(encoder.embed(a), encoder.embed(b))
    terms = [20 * (cos[j] - cos[i]) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j]]
    expected = torch.logsumexp(torch.stack([torch.tensor(0.0), *terms]), 0)
    torch.testing.assert_close(model.loss((a, b, y)), expected)


def test_cosine_mse_regresses_on_label_over_label_max(tokenizer):
    encoder = tiny_encoder(tokenizer)
    model = PairModel(encoder, "cosine-mse", label_max=5.0).eval()
    a, b, y = batch_of(encoder, PAIRS)
    u, v = model((a, b, y))
    expected = ((F.cosine_similarity(u, v) - y / 5.0) ** 2).mean()
    torch.testing.assert_close(model.loss((a, b, y)), expected)


def test_sbert_binarises_at_half_label_max(tokenizer):
    encoder = tiny_encoder(tokenizer)
    model = PairModel(encoder, "sbert", label_max=5.0).eval()
    a, b, y = batch_of(encoder, PAIRS)
    u, v = model((a, b, y))
    logits = model.head.classifier(torch.cat([u, v, (u - v).abs()], -1))
    torch.testing.assert_close(model.loss((a, b, y)), F.cross_entropy(logits, (y > 2.5).long()))
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"model", "head"}


def test_padding_does_not_change_the_vectors(tokenizer):
    encoder = tiny_encoder(tokenizer)
    alone = encoder.embed([PAIRS[0][0]])
    with_longer = encoder.embed([PAIRS[0][0], PAIRS[3][0] + " and more words here"])[:1]
    torch.testing.assert_close(alone, with_longer, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- fit


@pytest.mark.parametrize("loss", ["cosent", "sbert", "cosine-mse"])
def test_fit_learns_the_training_pairs(tokenizer, loss):
    encoder = tiny_encoder(tokenizer)
    before = encoder.evaluate(PAIRS)["spearman"]
    result = encoder.fit(PAIRS, loss=loss, epochs=12, batch_size=4, lr=3e-3, warmup=0.0,
                         evaluator=PAIRS)
    evals = [r["eval_spearman"] for r in result.history if "eval_spearman" in r]
    assert result.step == 24 and len(evals) == 12  # two steps an epoch, one evaluation each
    assert evals[-1] > before + 20 and evals[-1] > 60


def test_fit_takes_a_dataloader_input_examples_and_a_step(tokenizer):
    from kexue.train import FGM

    examples = [SimpleNamespace(texts=[a, b], label=s) for a, b, s in PAIRS]
    loader = torch.utils.data.DataLoader(examples, batch_size=4, shuffle=True)
    encoder = tiny_encoder(tokenizer)
    seen = []
    result = encoder.fit(loader, epochs=1, step=FGM(encoder.model, 0.1),
                         evaluator=lambda enc: seen.append(enc) or 0.5)
    assert result.step == 2 and seen == [encoder]
    assert result.last_eval == {"score": 0.5}


def test_fit_length_window_batches_pairs_of_similar_length(tokenizer):
    from kexue.train import plain_step

    encoder = tiny_encoder(tokenizer)
    seen = []

    def recording_step(model, batch, loss_fn):
        seen.append(sorted((int(x) for x in (batch[0]["attention_mask"].sum(1)
                                            + batch[1]["attention_mask"].sum(1))), reverse=True))
        return plain_step(model, batch, loss_fn)

    encoder.fit(PAIRS, epochs=1, batch_size=2, length_window=4, step=recording_step)
    ranked = sorted(seen, reverse=True)  # one window = the epoch: batches are sorted runs
    assert [n for b in ranked for n in b] == sorted((n for b in seen for n in b), reverse=True)


def test_fit_bad_input(tokenizer):
    encoder = tiny_encoder(tokenizer)
    with pytest.raises(ValueError, match="loss in"):
        encoder.fit(PAIRS, loss="triplet")
    with pytest.raises(ValueError, match=r"train\[1\]: the score must be a number, got 'high'"):
        encoder.fit([PAIRS[0], ("a", "b", "high")])
    with pytest.raises(ValueError, match=r"train\[0\] must be \(sentence_a"):
        encoder.fit([("a", "b")])
    with pytest.raises(ValueError, match="no sentence pair"):
        encoder.fit([])
    with pytest.raises(ValueError, match="label_max > 0"):
        encoder.fit(PAIRS, loss="cosine-mse", label_max=0.0)
    assert pair_rows([{"sentence1": "a", "sentence2": "b", "score": "2"}]) == [("a", "b", 2.0)]


# ----------------------------------------------------------------------------- saving


def _sentences():
    rows = load_stsb("test", lang="en")[:12]
    return [r[0] for r in rows] + [r[1] for r in rows]


@pytest.mark.parametrize("pooling,normalize,whiten", [("mean", True, False), ("cls", False, False),
                                                      ("mean", False, True)])
def test_saved_folder_loads_in_kexue_and_sentence_transformers(tokenizer, tmp_path, pooling,
                                                               normalize, whiten):
    st = pytest.importorskip("sentence_transformers")
    encoder = tiny_encoder(tokenizer, pooling=pooling, normalize=normalize)
    sentences = _sentences()
    if whiten:
        w = Whitening(n_components=8).fit(encoder.encode(sentences, progress=False))
        encoder.projection = w.to_linear()
    expected = encoder.encode(sentences, progress=False)
    encoder.save_pretrained(tmp_path)
    again = SentenceEncoder.from_pretrained(tmp_path)
    assert (again.pooling, again.normalize, again.max_length) == (pooling, normalize, 32)
    np.testing.assert_allclose(again.encode(sentences, progress=False), expected, atol=1e-5)
    theirs = st.SentenceTransformer(str(tmp_path), device="cpu").encode(sentences)
    assert theirs.shape == expected.shape == (24, 8 if whiten else 16)
    np.testing.assert_allclose(theirs, expected, atol=1e-5)


@pytest.mark.slow  # MiniLM fine-tuned, saved, read by sentence-transformers (~6 s)
def test_fine_tuned_minilm_round_trips(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    encoder = SentenceEncoder.from_pretrained(normalize=True, max_length=32)
    encoder.fit(PAIRS, epochs=1, batch_size=8, lr=1e-4)
    sentences = _sentences()
    expected = encoder.encode(sentences, progress=False)
    encoder.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == \
        "BertTokenizer"  # copied from the folder MiniLM was loaded from
    np.testing.assert_allclose(SentenceEncoder.from_pretrained(tmp_path).encode(
        sentences, progress=False), expected, atol=1e-5)
    theirs = st.SentenceTransformer(str(tmp_path), device="cpu").encode(sentences)
    np.testing.assert_allclose(theirs, expected, atol=1e-5)
    untuned = SentenceEncoder.from_pretrained(normalize=True, max_length=32)
    assert np.abs(untuned.encode(sentences, progress=False) - expected).max() > 1e-4
