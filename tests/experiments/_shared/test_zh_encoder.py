import math

import pytest
import torch

from kexue.data import CharTokenizer
from kexue.experiments._shared import zh_encoder
from kexue.experiments._shared.zh_encoder import (
    ZhEncoderConfig,
    char_hf_tokenizer,
    mlm_loss,
    pretrain_zh_encoder,
    pretraining_corpus,
)

TINY = ZhEncoderConfig(hidden_size=16, num_layers=2, num_heads=2, max_length=16, vocab_size=300,
                       steps=2, batch_size=4, max_poems=20, max_reviews=20)


def _batch(n=64, seq=40, vocab=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, seq), generator=g)
    lengths = torch.randint(3, seq + 1, (n,), generator=g)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids[:, 0] = 2  # [CLS]
    ids[torch.arange(n), lengths - 1] = 3  # [SEP]
    ids[mask == 0] = 0
    return ids, mask


def test_char_hf_tokenizer_matches_char_tokenizer():
    texts = ["你好 世界\n abc", "好的x  z", "  ", "😀a", "[CLS]a", "", "一架飞机要起飞了。"]
    tok = CharTokenizer.fit(texts[:2] + texts[-1:])
    hf = char_hf_tokenizer(tok)
    for t in texts:
        assert hf.encode(t).ids == tok.encode(t, add_special_tokens=True)


def test_config_key_is_stable_and_depends_on_every_field():
    assert ZhEncoderConfig().key() == ZhEncoderConfig().key()
    assert ZhEncoderConfig(steps=1).key() != ZhEncoderConfig().key()
    assert ZhEncoderConfig(max_reviews=10).key() != ZhEncoderConfig().key()


def test_pretraining_corpus_chunks():
    corpus = pretraining_corpus(max_poems=10, chunk=12, max_reviews=10)
    assert corpus and all(0 < len(c) <= 12 and c.strip() for c in corpus)
    with pytest.raises(ValueError, match="chunk"):
        pretraining_corpus(10, 0)


def test_mlm_loss_starts_near_uniform():
    from kexue.models import Bert, BertConfig

    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32,
                            max_position_embeddings=40), mlm=True, pooler=False)
    loss = mlm_loss(model, _batch(n=32))
    assert abs(loss.item() - math.log(100)) < 0.5
    loss.backward()
    assert model.embeddings.word.weight.grad.abs().sum() > 0


def test_pretrain_is_cached_by_config(tmp_path, monkeypatch):
    encoder, tok = pretrain_zh_encoder(TINY, tmp_path, log=lambda s: None)
    assert (tmp_path / TINY.key() / zh_encoder.WEIGHTS_DONE).is_file()
    assert encoder.mlm is None and encoder.pooler is None and not encoder.training
    assert encoder.config.vocab_size == tok.vocab_size <= TINY.vocab_size

    import kexue.train

    def no_training(*args, **kwargs):
        raise AssertionError("a cached configuration must not be trained again")

    monkeypatch.setattr(kexue.train, "fit", no_training)
    again, tok2 = pretrain_zh_encoder(TINY, tmp_path, log=lambda s: None)
    assert tok2.vocab_size == tok.vocab_size
    for (name, a), (_, b) in zip(encoder.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_pretraining_made_by_other_code_is_retrained(tmp_path, monkeypatch):
    import json

    pretrain_zh_encoder(TINY, tmp_path, log=lambda s: None)
    done = tmp_path / TINY.key() / zh_encoder.WEIGHTS_DONE
    summary = json.loads(done.read_text())
    assert "kexue.experiments._shared.zh_encoder" in summary["modules"]
    summary["modules"]["kexue.experiments._shared.zh_encoder"] = "0" * 64  # other source
    done.write_text(json.dumps(summary))
    calls = []
    import kexue.train

    real_fit = kexue.train.fit
    monkeypatch.setattr(kexue.train, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    pretrain_zh_encoder(TINY, tmp_path, log=lambda s: None)
    assert calls == [1]


def test_mlm_loss_takes_another_vocabularys_mask_id(monkeypatch):
    from kexue.models import Bert, BertConfig

    seen = []
    real = zh_encoder.mask_tokens

    def spy(ids, mask_id, vocab_size, *args, **kwargs):
        seen.append((mask_id, kwargs["num_special"]))
        return real(ids, mask_id, vocab_size, *args, **kwargs)

    monkeypatch.setattr(zh_encoder, "mask_tokens", spy)
    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32,
                            max_position_embeddings=40), mlm=True, pooler=False)
    loss = mlm_loss(model, _batch(n=8), mask_token_id=7, num_special=5)
    assert math.isfinite(loss.item()) and seen == [(7, 5)]
    mlm_loss(model, _batch(n=8))
    assert seen[-1] == (CharTokenizer.SPECIAL_TOKENS.index("[MASK]"), len(CharTokenizer.SPECIAL_TOKENS))
