"""A small Chinese BERT pretrained by masked-LM from scratch, for the sentence-embedding
experiments (``cosent-zh``, ``whitening-zh``).

No Chinese pretrained checkpoint ships with kexue, so the posts' Chinese BERT-base is
replaced by a character-level :class:`kexue.models.Bert` (hidden 128, 2 layers)
trained for a few minutes on CPU with BERT's masked-LM objective on the Chinese corpora
that are available: the sentiment reviews (all splits, labels unused) and the Tang poems.
The weights and the vocabulary are cached under ``cache_dir`` in a folder named by a hash
of the configuration (its ``seed`` included: each seed of an experiment pretrains its own
encoder, so the seed-to-seed spread includes the pretraining), and reused only while the
code that trained them is unchanged (the module hashes of
:func:`kexue.evidence.cache.module_hashes`), so every experiment that asks for the same
configuration and seed reuses one pretraining run.

Masking is BERT's 80/10/10 rule (:func:`kexue.data.mask_tokens`) over the real
characters; the loss is the cross-entropy of the MLM head on the chosen positions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kexue.data import CharTokenizer, mask_tokens

WEIGHTS_DONE = "pretrained.json"  # written last: a folder without it is incomplete


@dataclass(frozen=True)
class ZhEncoderConfig:
    """Size of the encoder and of its masked-LM pretraining."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_length: int = 64  # characters per pretraining chunk, [CLS] and [SEP] included
    vocab_size: int = 8000  # cap, special tokens included
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: float = 0.05
    mask_prob: float = 0.15
    max_poems: int | None = 20000  # Tang poems used (None = all present)
    max_reviews: int | None = None  # sentiment reviews used (None = all 21105)
    dropout: float = 0.1
    seed: int = 0

    def key(self) -> str:
        """A short, stable name of this configuration (folder name in the cache)."""
        raw = json.dumps(asdict(self), sort_keys=True)
        return "zh-mlm-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def pretraining_corpus(max_poems: int | None, chunk: int, max_reviews: int | None = None) -> list[str]:
    """Sentiment reviews (train, valid, test texts; the first ``max_reviews``) + the first
    ``max_poems`` Tang poems, cut into pieces of at most ``chunk`` characters (blank pieces
    dropped)."""
    from kexue.data import load_sentiment, load_tang_poems

    if chunk < 1:
        raise ValueError(f"expected chunk >= 1 characters, got {chunk}")
    texts = [t for split in ("train", "valid", "test") for t, _ in load_sentiment(split)]
    texts = texts[:max_reviews] + load_tang_poems(limit=max_poems)
    pieces = []
    for text in texts:
        text = text.strip()
        pieces += [text[i : i + chunk] for i in range(0, len(text), chunk)]
    return [p for p in pieces if p.strip()]


def mlm_loss(model: nn.Module, batch: Any, mask_prob: float = 0.15, *,
             mask_token_id: int = CharTokenizer.SPECIAL_TOKENS.index("[MASK]"),
             num_special: int = len(CharTokenizer.SPECIAL_TOKENS)) -> Tensor:
    """Masked-LM cross-entropy of a ``(input_ids, attention_mask)`` batch of a
    :class:`kexue.models.Bert` built with ``mlm=True``; logits only at the chosen positions.
    ``mask_token_id`` and ``num_special`` (ids below it are never chosen) default to
    :class:`~kexue.data.CharTokenizer`'s."""
    input_ids, attention_mask = batch[0], batch[1]
    length = int(attention_mask.sum(1).max())
    input_ids, attention_mask = input_ids[:, :length], attention_mask[:, :length]
    bert = getattr(model, "module", model)  # unwrap DistributedDataParallel
    inputs, labels = mask_tokens(
        input_ids, mask_token_id, bert.config.vocab_size, attention_mask=attention_mask,
        num_special=num_special, mask_prob=mask_prob,
    )
    if not (labels != -100).any():  # a batch without a chosen token: choose the first one
        labels[0, 1] = input_ids[0, 1]
    picked = labels != -100
    # the MLM head on the chosen positions only: (n_chosen, vocab)
    logits = model(inputs, attention_mask=attention_mask, mlm_positions=picked).logits
    return F.cross_entropy(logits, labels[picked])


def pretrain_zh_encoder(
    config: ZhEncoderConfig,
    cache_dir: str | os.PathLike,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, CharTokenizer]:
    """The masked-LM pretrained encoder of ``config`` and its tokenizer, trained once and
    cached in ``cache_dir / config.key()`` (Hugging Face layout + ``vocab.json``).

    Returns the encoder without the MLM head (a :class:`kexue.models.Bert`, no pooler:
    MLM alone does not train one), in eval mode.
    """
    from kexue.evidence.cache import module_hashes
    from kexue.models import Bert, BertConfig
    from kexue.train import TrainConfig, fit, seed_everything

    folder = Path(cache_dir) / config.key()
    if not _cached(folder):
        corpus = pretraining_corpus(config.max_poems, config.max_length - 2, config.max_reviews)
        tokenizer = CharTokenizer.fit(corpus, max_size=config.vocab_size)
        enc = tokenizer.batch_encode(corpus, max_length=config.max_length,
                                     add_special_tokens=True, padding="max_length")
        data = TensorDataset(enc["input_ids"], enc["attention_mask"])
        log(f"    pretraining {config.key()}: {len(corpus)} chunks, vocab {tokenizer.vocab_size}, "
            f"{config.steps} steps of {config.batch_size}")
        seed_everything(config.seed)
        bert_config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size, max_position_embeddings=config.max_length,
            hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        model = Bert(bert_config, mlm=True, pooler=False)
        train = TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                            warmup=config.warmup, seed=config.seed, progress=False,
                            log_every=max(1, config.steps // 10))
        result = fit(model, lambda m, b: mlm_loss(m, b, config.mask_prob), data, train)
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        tokenizer.save(tmp / "vocab.json")
        summary = {"config": asdict(config), "chunks": len(corpus),
                   "final_mlm_loss": result.history[-1]["loss"],
                   "modules": module_hashes(__name__)}
        (tmp / WEIGHTS_DONE).write_text(json.dumps(summary, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    encoder = Bert.from_pretrained(folder, mlm=False, pooler=False)
    return encoder.eval(), CharTokenizer.load(folder / "vocab.json")


def _cached(folder: Path) -> bool:
    """A complete pretraining folder made by the code loaded now."""
    from kexue.evidence.cache import unchanged

    done = folder / WEIGHTS_DONE
    if not done.is_file():
        return False
    modules = json.loads(done.read_text()).get("modules")
    return modules is not None and unchanged(modules)


def pretraining_summary(config: ZhEncoderConfig, cache_dir: str | os.PathLike) -> dict[str, Any]:
    """What :func:`pretrain_zh_encoder` recorded (chunks, final MLM loss) for a cached config."""
    return json.loads((Path(cache_dir) / config.key() / WEIGHTS_DONE).read_text())


def char_hf_tokenizer(tokenizer: CharTokenizer):
    """A Hugging Face ``tokenizers.Tokenizer`` giving the same ids as
    ``tokenizer.encode(text, add_special_tokens=True)``, for :class:`kexue.embed.SentenceEncoder`."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    vocab = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}
    hf = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every char
    hf.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.cls_token_id), ("[SEP]", tokenizer.sep_token_id)],
    )
    return hf


def zh_sentence_encoder(model: nn.Module, tokenizer: CharTokenizer, pooling: str = "mean",
                        max_length: int = 64):
    """:class:`kexue.embed.SentenceEncoder` over the character-level encoder."""
    from kexue.embed import SentenceEncoder

    return SentenceEncoder(model, char_hf_tokenizer(tokenizer), pooling=pooling,
                           max_length=max_length)


def zh_encoder_config(ctx) -> ZhEncoderConfig:
    """The pretraining configuration shared by ``cosent-zh`` and ``whitening-zh``; seeded by
    the run's seed (one encoder per seed)."""
    return ctx.pick(
        quick=ZhEncoderConfig(steps=600, seed=ctx.seed),
        full=ZhEncoderConfig(steps=8000, batch_size=64, max_poems=None, seed=ctx.seed),
        smoke=ZhEncoderConfig(hidden_size=32, num_heads=2, max_length=32, vocab_size=800,
                              steps=4, batch_size=8, max_poems=200, max_reviews=300,
                              seed=ctx.seed),
    )

