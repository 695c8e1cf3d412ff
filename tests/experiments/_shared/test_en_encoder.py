import torch

from kexue.experiments._shared.en_encoder import (
    EnEncoderConfig,
    _encode,
    en_sentence_encoder,
    first_ordinary_id,
    pretrain_en_encoder,
    wordpiece_tokenizer,
)

TINY = EnEncoderConfig(hidden_size=16, num_heads=2, max_length=16, steps=2, batch_size=4,
                       max_sentences=40)


def test_first_ordinary_id_is_past_every_bracketed_token():
    tok = wordpiece_tokenizer()
    first = first_ordinary_id(tok)
    assert first == 999 and tok.id_to_token(first) == "!"
    assert all(tok.id_to_token(i).startswith("[") for i in (0, 100, 101, 102, 103, first - 1))


def test_encode_adds_cls_sep_truncates_and_pads():
    tok = wordpiece_tokenizer()
    ids, mask = _encode(tok, ["a b", "one two three four five six seven eight nine ten"], 8)
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0].tolist()[:4] == [101, tok.token_to_id("a"), tok.token_to_id("b"), 102]
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and ids[0, 4:].eq(0).all()
    assert mask[1].all() and ids[1, 0] == 101 and ids[1, -1] == 102


def test_pretrain_is_cached_by_config_and_seed(tmp_path, monkeypatch):
    logs = []
    encoder = pretrain_en_encoder(TINY, tmp_path, log=logs.append)
    assert encoder.mlm is None and not encoder.training
    assert any("pretraining" in m for m in logs)

    import kexue.train

    def no_training(*args, **kwargs):
        raise AssertionError("a cached configuration must not be trained again")

    monkeypatch.setattr(kexue.train, "fit", no_training)
    again = pretrain_en_encoder(TINY, tmp_path, log=lambda s: None)
    for (name, a), (_, b) in zip(encoder.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    monkeypatch.undo()
    other = pretrain_en_encoder(EnEncoderConfig(**{**TINY.__dict__, "seed": 1}), tmp_path,
                                log=lambda s: None)
    assert not torch.equal(other.embeddings.word.weight, encoder.embeddings.word.weight)
    vectors = en_sentence_encoder(encoder, max_length=16).encode_poolings(
        ["a small test", "another one"], ("cls", "first-last-avg"), progress=False)
    assert vectors["first-last-avg"].shape == (2, 16)
