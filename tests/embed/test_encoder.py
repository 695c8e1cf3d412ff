"""SentenceEncoder: batching by length, pooling, and parity with sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.data import load_stsb, minilm_path
from kexue.embed import ENCODER_POOLINGS, SentenceEncoder, pool

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SENTENCES = [
    "A plane is taking off.",
    "A man is playing a large flute.",
    "hi",
    "Three men are playing chess on a wooden table in the park while a crowd watches.",
    "A cat.",
    "The quick brown fox jumps over the lazy dog, twice, and then sleeps.",
    "",
]


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    return transformers.BertModel(config).eval()


def reference_vectors(model, tokenizer, sentences, pooling):
    """One sentence at a time, no padding at all (the file's tokenizer pads to 128: cut it)."""
    out = []
    for s in sentences:
        enc = tokenizer.encode(s)
        ids = torch.tensor([enc.ids[: sum(enc.attention_mask)]])
        with torch.no_grad():
            o = model(ids, output_hidden_states=True)
        out.append(o.pooler_output[0] if pooling == "pooler" else pool(o.hidden_states, None, pooling)[0])
    return torch.stack(out).numpy()


@pytest.mark.parametrize("pooling", ENCODER_POOLINGS)
def test_batched_encoding_equals_one_by_one(tiny_bert, tokenizer, pooling: str) -> None:
    encoder = SentenceEncoder(tiny_bert, tokenizer, pooling=pooling)
    got = encoder.encode(SENTENCES, batch_size=3, progress=False)
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 32)
    ref = reference_vectors(tiny_bert, tokenizer, SENTENCES, pooling)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_encode_poolings_normalize_and_output_types(tiny_bert, tokenizer) -> None:
    encoder = SentenceEncoder(tiny_bert, tokenizer, pooling="mean", normalize=True)
    many = encoder.encode_poolings(SENTENCES, batch_size=4, progress=False)
    assert set(many) == set(ENCODER_POOLINGS)
    for vectors in many.values():
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    single = encoder.encode(SENTENCES[1], progress=False)
    assert single.shape == (32,)
    np.testing.assert_allclose(single, many["mean"][1], atol=1e-6)
    as_tensor = encoder.encode(SENTENCES, convert_to_tensor=True, progress=False)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_allclose(as_tensor.numpy(), many["mean"], atol=1e-6)


def test_truncation_and_training_mode_restored(tiny_bert, tokenizer) -> None:
    encoder = SentenceEncoder(tiny_bert, tokenizer, max_length=6)
    long = "one two three four five six seven eight nine ten"
    assert encoder.tokenize([long])["input_ids"].shape == (1, 6)  # [CLS] + 4 words + [SEP]
    assert tokenizer.truncation["max_length"] == 128  # the caller's tokenizer is untouched
    assert encoder.tokenizer is tokenizer
    tiny_bert.train()
    a = encoder.encode([long, "one two three four"], progress=False)
    assert tiny_bert.training
    tiny_bert.eval()
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)  # same first four tokens after truncation


def test_padding_set_on_a_tokenizer_is_never_counted(tiny_bert, tokenizer) -> None:
    """Issue 13: enable_padding on enc.tokenizer made mean pooling average the padding."""
    encoder = SentenceEncoder(tiny_bert, tokenizer, pooling="mean")
    expected = reference_vectors(tiny_bert, tokenizer, SENTENCES[:6], "mean")
    from tokenizers import Tokenizer

    mine = Tokenizer.from_str(tokenizer.to_str())
    encoder = SentenceEncoder(tiny_bert, mine, pooling="mean")
    mine.enable_padding(length=40)  # after construction: the user's object, not the encoder's
    encoder.tokenizer.enable_padding(length=40)
    np.testing.assert_allclose(encoder.encode(SENTENCES[:6], progress=False), expected,
                               rtol=1e-4, atol=1e-5)
    # a padded tokenizer given at construction, and padded encodings reaching the batcher
    padded = SentenceEncoder(tiny_bert, mine, pooling="mean")
    np.testing.assert_allclose(padded.encode(SENTENCES[:6], progress=False), expected,
                               rtol=1e-4, atol=1e-5)
    batch = padded._pad(mine.encode_batch(SENTENCES[:2]))
    assert batch["attention_mask"].sum(1).tolist() == [
        len(tokenizer.encode(s).ids) - tokenizer.encode(s).attention_mask.count(0)
        for s in SENTENCES[:2]]


def test_embed_is_differentiable_and_equals_encode(tiny_bert, tokenizer) -> None:
    encoder = SentenceEncoder(tiny_bert, tokenizer, pooling="mean", normalize=True)
    vectors = encoder.embed(SENTENCES[:4])  # (4, 32)
    assert vectors.requires_grad and vectors.shape == (4, 32)
    np.testing.assert_allclose(vectors.detach().numpy(),
                               encoder.encode(SENTENCES[:4], progress=False), atol=1e-5)
    vectors.sum().backward()
    assert tiny_bert.embeddings.word_embeddings.weight.grad is not None
    tiny_bert.zero_grad(set_to_none=True)
    assert encoder.dim == 32


def test_bad_input(tiny_bert, tokenizer) -> None:
    with pytest.raises(ValueError, match="expected pooling in"):
        SentenceEncoder(tiny_bert, tokenizer, pooling="max")
    encoder = SentenceEncoder(tiny_bert, tokenizer)
    with pytest.raises(ValueError, match="at least one sentence"):
        encoder.encode([])
    with pytest.raises(ValueError, match="sequence of strings"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="batch_size >= 1, got 0"):
        encoder.encode(["ok"], batch_size=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        SentenceEncoder.from_pretrained("/nonexistent/folder")
    with pytest.raises(ValueError, match="backend"):
        SentenceEncoder.from_pretrained(backend="keras")
    with pytest.raises(ValueError, match="max_length >= 2"):
        SentenceEncoder(tiny_bert, tokenizer, max_length=1)
    with pytest.raises(ValueError, match="tokenizers.Tokenizer"):
        SentenceEncoder(tiny_bert, "bert-base-uncased")


@pytest.fixture(scope="module")
def stsb_sentences() -> list[str]:
    rows = load_stsb("test", lang="en")[:25]
    return [r[0] for r in rows] + [r[1] for r in rows]


@pytest.mark.parametrize("backend", ["auto", "transformers"])
def test_minilm_matches_sentence_transformers(stsb_sentences, backend: str) -> None:
    """Mean-pooled, L2-normalised MiniLM vectors equal SentenceTransformer.encode (1e-4).

    "auto" loads kexue.models.Bert (falling back to transformers if it is not importable)."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_path()), device="cpu")
    expected = model.encode(stsb_sentences, batch_size=16)
    encoder = SentenceEncoder.from_pretrained(pooling="mean", normalize=True, backend=backend)
    assert encoder.max_length == 256  # from sentence_bert_config.json
    module = type(encoder.model).__module__
    assert module.startswith("kexue." if backend == "auto" else "transformers."), module
    got = encoder.encode(stsb_sentences, batch_size=16, progress=False)
    assert got.shape == expected.shape == (50, 384)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_kexue_bert_equals_transformers_for_every_pooling(stsb_sentences) -> None:
    pytest.importorskip("kexue.models", exc_type=ImportError)
    ours = SentenceEncoder.from_pretrained(backend="kexue")
    ref = SentenceEncoder.from_pretrained(backend="transformers")
    a = ours.encode_poolings(stsb_sentences[:20], batch_size=8, progress=False)
    b = ref.encode_poolings(stsb_sentences[:20], batch_size=8, progress=False)
    for pooling in ENCODER_POOLINGS:
        np.testing.assert_allclose(a[pooling], b[pooling], atol=1e-4, err_msg=pooling)
