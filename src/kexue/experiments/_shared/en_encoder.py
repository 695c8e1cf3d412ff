"""A small English BERT pretrained by masked-LM from scratch: a *raw* encoder (never trained
for similarity), the stand-in for raw BERT in ``whitening``.

Post 8321 (无监督语义相似度哪家强？我们做了个比较全面的评测, 2021-04-11,
https://kexue.fm/archives/8321) finds that whitening raises the STS score of raw pretrained
encoders and lowers that of similarity-trained ones (SimBERT). The similarity-trained side is
all-MiniLM-L6-v2; this module makes the raw side: a :class:`kexue.models.Bert` (hidden 128,
2 layers, MiniLM's uncased WordPiece vocabulary) trained with BERT's masked-LM objective
(80/10/10 masking, :func:`kexue.experiments._shared.zh_encoder.mlm_loss`) on the English
text bundled with kexue: the 67,349 SST-2 train sentences and phrases (labels unused; no
STS-B text). The weights are cached by
:func:`kexue.evidence.cache.cached_state`, keyed by the configuration (seed included) and
the code that trained them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class EnEncoderConfig:
    """Size of the encoder and of its masked-LM pretraining."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_length: int = 48  # WordPiece tokens per sentence, [CLS] and [SEP] included
    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: float = 0.05
    mask_prob: float = 0.15
    max_sentences: int | None = None  # corpus sentences used (None = all 67,349)
    dropout: float = 0.1
    seed: int = 0


def wordpiece_tokenizer(folder: str | Path | None = None):
    """The uncased WordPiece ``tokenizers.Tokenizer`` of ``folder`` (default: the bundled
    all-MiniLM-L6-v2), no padding or truncation."""
    from tokenizers import Tokenizer

    from kexue.data import minilm_path

    tokenizer = Tokenizer.from_file(str(Path(folder or minilm_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def first_ordinary_id(tokenizer) -> int:
    """The smallest id that is not a bracketed special or unused token (999 in BERT's
    vocabulary): masking never chooses ids below it nor draws them as replacements."""
    specials = [i for token, i in tokenizer.get_vocab().items()
                if token.startswith("[") and token.endswith("]")]
    return max(specials) + 1


def pretraining_corpus(max_sentences: int | None = None) -> list[str]:
    """The first ``max_sentences`` SST-2 train sentences (non-blank)."""
    from kexue.data import load_sst2

    return [text for text, _ in load_sst2("train") if text.strip()][:max_sentences]


def pretrain_en_encoder(config: EnEncoderConfig, cache_dir: str | Path,
                        log: Callable[[str], None] = print) -> nn.Module:
    """The masked-LM pretrained encoder of ``config`` (a :class:`kexue.models.Bert` without
    MLM head or pooler, in eval mode), trained once and cached in ``cache_dir``."""
    from kexue.evidence.cache import cached_state
    from kexue.models import Bert, BertConfig

    tokenizer = wordpiece_tokenizer()
    bert_config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=4 * config.hidden_size, max_position_embeddings=config.max_length,
        hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
    )  # fmt: skip

    def build() -> dict[str, torch.Tensor]:
        from kexue.experiments._shared.zh_encoder import mlm_loss
        from kexue.train import TrainConfig, fit, seed_everything

        corpus = pretraining_corpus(config.max_sentences)
        ids, mask = _encode(tokenizer, corpus, config.max_length)
        log(f"    pretraining an English MLM encoder (seed {config.seed}): {len(corpus)} "
            f"sentences, {config.steps} steps of {config.batch_size}")
        seed_everything(config.seed)
        model = Bert(bert_config, mlm=True, pooler=False)
        special = first_ordinary_id(tokenizer)
        mask_id = tokenizer.token_to_id("[MASK]")
        train = TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                            warmup=config.warmup, seed=config.seed, progress=False,
                            log_every=max(1, config.steps // 10))
        result = fit(model, lambda m, b: mlm_loss(m, b, config.mask_prob, mask_token_id=mask_id,
                                                  num_special=special),
                     TensorDataset(ids, mask), train)
        log(f"    final MLM loss {result.history[-1]['loss']:.3f}")
        return {k: v for k, v in model.state_dict().items() if not k.startswith("mlm")}

    state = cached_state(cache_dir, "en-mlm", asdict(config), build, log)
    encoder = Bert(bert_config, mlm=False, pooler=False)
    encoder.load_state_dict(state)
    return encoder.eval()


def _encode(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[CLS] x [SEP]`` ids truncated and right-padded to ``max_length``: ``(n, max_length)``
    ids and 0/1 attention mask."""
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=tokenizer.token_to_id("[PAD]"))
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    return ids, torch.tensor([e.attention_mask for e in encodings])


def en_sentence_encoder(model: nn.Module, pooling: str = "first-last-avg", max_length: int = 48):
    """:class:`kexue.embed.SentenceEncoder` over the pretrained English encoder."""
    from kexue.embed import SentenceEncoder

    return SentenceEncoder(model, wordpiece_tokenizer(), pooling=pooling, max_length=max_length)
