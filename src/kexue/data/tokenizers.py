"""Tokenizers: a character-level one for Chinese corpora and a WordPiece one for BERT.

* :class:`CharTokenizer` — every character is a token (the usual choice for Chinese
  models trained from scratch in the blog, e.g. the Tang-poem and sentiment
  experiments). Special tokens ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``.
* :class:`WordPieceTokenizer` — a thin wrapper over Hugging Face ``tokenizers`` that
  loads a BERT folder (``tokenizer.json``, or ``vocab.txt`` alone) and returns padded
  tensors; its ids equal ``transformers.AutoTokenizer`` on the same folder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

__all__ = ["CharTokenizer", "WordPieceTokenizer"]

_PADDING = ("longest", "max_length")


def _check_texts(texts: Sequence[str], what: str = "texts") -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{what} must be a list of str, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError(f"{what} must be a non-empty list of str, got an empty list")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}")


def _check_max_length(max_length: int | None, minimum: int) -> None:
    if max_length is not None and (not isinstance(max_length, int) or max_length < minimum):
        raise ValueError(f"max_length must be an int >= {minimum} or None, got {max_length!r}")


def _ids_list(ids: Sequence[int] | torch.Tensor) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got a tensor of shape {tuple(ids.shape)}")
        return ids.tolist()
    return [int(i) for i in ids]


class CharTokenizer:
    """Character-level tokenizer: each character of the text is one token.

    Build it with :meth:`fit` on a corpus; ids ``0..4`` are ``[PAD] [UNK] [CLS] [SEP]
    [MASK]``, then the characters by decreasing frequency (ties by code point, so the
    vocabulary is deterministic). Characters never seen map to ``[UNK]``.
    """

    SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        n = len(self.SPECIAL_TOKENS)
        if tuple(tokens[:n]) != self.SPECIAL_TOKENS:
            raise ValueError(
                f"tokens must start with the special tokens {list(self.SPECIAL_TOKENS)}, "
                f"got {tokens[:n]}"
            )
        for t in tokens[n:]:
            if not isinstance(t, str) or len(t) != 1:
                raise ValueError(f"every non-special token must be one character, got {t!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be distinct; got {len(tokens) - len(set(tokens))} repeats")
        self._id_to_token = tokens
        self._token_to_id = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def fit(
        cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None
    ) -> CharTokenizer:
        """Build the vocabulary from ``texts``.

        Args:
            texts: the corpus (any iterable of str).
            min_count: keep characters seen at least this many times.
            max_size: cap on the vocabulary size *including* the 5 special tokens; the
                most frequent characters are kept.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of str, got a single str")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        n_special = len(cls.SPECIAL_TOKENS)
        if max_size is not None and (not isinstance(max_size, int) or max_size < n_special):
            raise ValueError(f"max_size must be an int >= {n_special} or None, got {max_size!r}")
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(t)
        chars = sorted((c for c, k in counts.items() if k >= min_count),
                       key=lambda c: (-counts[c], c))
        if max_size is not None:
            chars = chars[: max_size - n_special]
        return cls([*cls.SPECIAL_TOKENS, *chars])

    # -- vocabulary -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def pad_token_id(self) -> int:
        return 0

    @property
    def unk_token_id(self) -> int:
        return 1

    @property
    def cls_token_id(self) -> int:
        return 2

    @property
    def sep_token_id(self) -> int:
        return 3

    @property
    def mask_token_id(self) -> int:
        return 4

    def token_to_id(self, token: str) -> int:
        """The id of ``token`` (``[UNK]``'s id if unknown)."""
        return self._token_to_id.get(token, self.unk_token_id)

    def id_to_token(self, index: int) -> str:
        if not 0 <= index < self.vocab_size:
            raise ValueError(f"id must be in [0, {self.vocab_size}), got {index}")
        return self._id_to_token[index]

    # -- encoding ---------------------------------------------------------------------
    def encode(
        self, text: str, add_special_tokens: bool = False, max_length: int | None = None
    ) -> list[int]:
        """Ids of the characters of ``text``; with ``add_special_tokens``, ``[CLS] ... [SEP]``.
        ``max_length`` truncates (the ``[SEP]`` is kept)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        _check_max_length(max_length, 2 if add_special_tokens else 1)
        unk = self.unk_token_id
        ids = [self._token_to_id.get(c, unk) for c in text]
        if add_special_tokens:
            if max_length is not None:
                ids = ids[: max_length - 2]
            return [self.cls_token_id, *ids, self.sep_token_id]
        return ids if max_length is None else ids[:max_length]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """The text of ``ids``; special tokens (``[UNK]`` included) are dropped when
        ``skip_special_tokens``, else written as e.g. ``"[SEP]"``."""
        ids = _ids_list(ids)
        n_special = len(self.SPECIAL_TOKENS)
        out = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {i}")
            if skip_special_tokens and i < n_special:
                continue
            out.append(self._id_to_token[i])
        return "".join(out)

    def batch_encode(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        add_special_tokens: bool = False,
        padding: str = "longest",
    ) -> dict[str, torch.Tensor]:
        """Encode and right-pad a batch.

        Returns ``input_ids`` and ``attention_mask`` (1 = token, 0 = padding), both long
        tensors of shape ``(batch, seq)``; ``seq`` is the longest encoding
        (``padding="longest"``) or ``max_length`` (``padding="max_length"``).
        """
        _check_texts(texts)
        if padding not in _PADDING:
            raise ValueError(f"padding must be one of {list(_PADDING)}, got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length, got None")
        encoded = [self.encode(t, add_special_tokens, max_length) for t in texts]
        seq = max_length if padding == "max_length" else max(len(e) for e in encoded)
        input_ids = torch.full((len(texts), seq), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), seq), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # -- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (``{"type": "CharTokenizer", "tokens": [...]}``)."""
        Path(path).write_text(
            json.dumps({"type": "CharTokenizer", "tokens": self._id_to_token}, ensure_ascii=False),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no CharTokenizer file at {path}")
        obj = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(obj, dict) or obj.get("type") != "CharTokenizer":
            raise ValueError(f"{path} is not a CharTokenizer file (expected type 'CharTokenizer')")
        return cls(obj["tokens"])


class WordPieceTokenizer:
    """BERT WordPiece tokenization through Hugging Face ``tokenizers`` (Rust, batched).

    ``from_pretrained(folder)`` reads ``tokenizer.json`` if the folder has one, otherwise
    builds the BERT pipeline from ``vocab.txt`` (BertNormalizer with ``do_lower_case``
    from ``tokenizer_config.json``, BertPreTokenizer, WordPiece, ``[CLS] A [SEP] B [SEP]``).
    Truncation and padding stored in ``tokenizer.json`` are ignored: they are set per call.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        specials = {}
        for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
            index = tokenizer.token_to_id(name)
            if index is None:
                raise ValueError(f"the vocabulary has no {name} token; expected a BERT vocabulary")
            specials[name] = index
        self._specials = specials

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> WordPieceTokenizer:
        """Load from a Hugging Face model folder (``tokenizer.json`` or ``vocab.txt``)."""
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")))
        if not (folder / "vocab.txt").is_file():
            raise FileNotFoundError(
                f"expected tokenizer.json or vocab.txt in {folder}, found neither"
            )
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        return cls.from_vocab(
            folder / "vocab.txt",
            lowercase=config.get("do_lower_case", True),
            strip_accents=config.get("strip_accents"),
            handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        )

    @classmethod
    def from_vocab(
        cls,
        vocab_file: str | Path,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
    ) -> WordPieceTokenizer:
        """Build the BERT pipeline from a ``vocab.txt`` (one token per line)."""
        vocab = WordPiece.read_file(str(vocab_file))
        tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=handle_chinese_chars,
            strip_accents=strip_accents, lowercase=lowercase,
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        for name in ("[CLS]", "[SEP]"):
            if name not in vocab:
                raise ValueError(f"{vocab_file} has no {name} token; expected a BERT vocabulary")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        tok.decoder = decoders.WordPiece(prefix="##")
        # special tokens are matched whole in the input and dropped by decode(skip_special...)
        tok.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                                if t in vocab])
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def pad_token_id(self) -> int:
        return self._specials["[PAD]"]

    @property
    def unk_token_id(self) -> int:
        return self._specials["[UNK]"]

    @property
    def cls_token_id(self) -> int:
        return self._specials["[CLS]"]

    @property
    def sep_token_id(self) -> int:
        return self._specials["[SEP]"]

    @property
    def mask_token_id(self) -> int:
        return self._specials["[MASK]"]

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` without special tokens."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).tokens

    def encode(
        self,
        text: str,
        pair: str | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> list[int]:
        """Ids of ``text`` (and ``pair``): ``[CLS] text [SEP] (pair [SEP])`` by default."""
        return self.batch_encode(
            [text], max_length, None if pair is None else [pair], add_special_tokens
        )["input_ids"][0].tolist()

    def batch_encode(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        pairs: Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: str = "longest",
    ) -> dict[str, torch.Tensor]:
        """Encode a batch of texts (or text pairs), truncate and right-pad.

        Truncation to ``max_length`` is "longest first" for pairs (tokens are removed from
        the longer of the two), as in ``transformers`` with ``truncation=True``.

        Returns long tensors of shape ``(batch, seq)``: ``input_ids``, ``attention_mask``
        (1 = token) and ``token_type_ids`` (0 for the first segment, 1 for the second).
        """
        _check_texts(texts)
        if pairs is not None:
            _check_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise ValueError(
                    f"pairs must have one entry per text: {len(texts)} texts, {len(pairs)} pairs"
                )
        if padding not in _PADDING:
            raise ValueError(f"padding must be one of {list(_PADDING)}, got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length, got None")
        n_added = self._tok.num_special_tokens_to_add(pairs is not None) if add_special_tokens else 0
        _check_max_length(max_length, n_added + (2 if pairs is not None else 1))
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        try:
            if max_length is not None:
                self._tok.enable_truncation(max_length, strategy="longest_first")
            self._tok.enable_padding(
                direction="right", pad_id=self.pad_token_id, pad_type_id=0, pad_token="[PAD]",
                length=max_length if padding == "max_length" else None,
            )
            encodings = self._tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
            self._tok.no_padding()
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
            "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long),
        }

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text of ``ids`` (WordPiece pieces merged, special tokens dropped by default)."""
        ids = _ids_list(ids)
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {i}")
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
