"""CPM-LM's tokenizer: jieba pre-segmentation over SentencePiece.

跟风玩玩目前最大的中文GPT2模型（bert4keras） (2020-11-20, https://kexue.fm/archives/7912).
SentencePiece drops spaces and newlines, so CPM-LM first cuts the text with jieba
(``cut_all=False``), replaces inside every word ``' '`` -> ``'▂'`` (U+2582) and
``'\\n'`` -> ``'▃'`` (U+2583), joins the words with spaces and encodes that. ``'▃'``
is not in CPM's SentencePiece vocabulary, so the piece ``'▃'`` is translated to the
token ``<cls>`` (id 3): a newline *is* ``<cls>``. Decoding joins the pieces, deletes
every space, and maps ``'▂'`` -> ``' '``, ``'▃'`` -> ``'\\n'``. No BOS/EOS is added.

Needs the ``zh`` extra (``jieba``, ``sentencepiece``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

SPACE, NEWLINE = "\u2582", "\u2583"
_TO_SYMBOLS = str.maketrans(" \n", SPACE + NEWLINE)


class CPMTokenizer:
    """Encode / decode text with CPM-LM's rules.

    Args:
        model: a SentencePiece model file, or its serialized bytes.
        newline_token: the vocabulary token standing for ``'▃'`` when ``'▃'`` itself is
            not a piece of the model (CPM: ``"<cls>"``).
    """

    def __init__(self, model: str | os.PathLike | bytes, *, newline_token: str = "<cls>"):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        if isinstance(model, bytes):
            self.sp.LoadFromSerializedProto(model)
        else:
            if not Path(model).is_file():
                raise FileNotFoundError(f"no SentencePiece model at {model}")
            self.sp.Load(str(model))
        self._translate: dict[str, str] = {}
        if self._is_unknown(NEWLINE):
            if self._is_unknown(newline_token):
                raise ValueError(
                    f"the model has neither {NEWLINE!r} nor newline_token {newline_token!r} "
                    "in its vocabulary; newlines could not be encoded"
                )
            self._translate[NEWLINE] = newline_token
        self._untranslate = {v: k for k, v in self._translate.items()}

    def _is_unknown(self, piece: str) -> bool:
        i = self.sp.piece_to_id(piece)
        return i == self.sp.unk_id() and piece != self.sp.id_to_piece(i)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def newline_id(self) -> int:
        """The id a newline encodes to (``<cls>`` = 3 for CPM)."""
        return self.sp.piece_to_id(self._translate.get(NEWLINE, NEWLINE))

    @staticmethod
    def pre_tokenize(text: str) -> str:
        """jieba words, ``' '`` -> ``'▂'`` and ``'\\n'`` -> ``'▃'`` in each, joined by spaces."""
        import jieba

        return " ".join(w.translate(_TO_SYMBOLS) for w in jieba.cut(text, cut_all=False))

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (after the ``'▃'`` -> newline-token translation)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")  # noqa: TRY004
        pieces = self.sp.encode(self.pre_tokenize(text), out_type=str)
        return [self._translate.get(p, p) for p in pieces]

    def encode(self, text: str) -> list[int]:
        return [self.sp.piece_to_id(p) for p in self.tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        n = self.vocab_size
        bad = [i for i in ids if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"token ids must be in [0, {n}), got {bad[:5]}")
        pieces = [self._untranslate.get(p, p) for p in map(self.sp.id_to_piece, map(int, ids))]
        text = "".join(pieces).replace("\u2581", " ")  # SentencePiece's word-boundary mark
        return text.replace(" ", "").replace(SPACE, " ").replace(NEWLINE, "\n")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, **options: object) -> CPMTokenizer:
        """Train a SentencePiece model in memory on ``texts`` pre-tokenized by the CPM
        rules, with ``<cls>`` (id 3) as the newline token and ``'▂'`` always a piece.
        ``options`` go to ``SentencePieceTrainer.train`` (e.g. ``model_type="bpe"``)."""
        import sentencepiece as spm

        lines = [cls.pre_tokenize(t) for t in texts]
        if not lines:
            raise ValueError("CPMTokenizer.train needs at least one text")
        buf = io.BytesIO()
        kw = {
            "vocab_size": vocab_size,
            "character_coverage": 1.0,
            "normalization_rule_name": "identity",
            "user_defined_symbols": ["<cls>", SPACE],
            "unk_id": 0,
            "bos_id": 1,
            "eos_id": 2,
            "pad_id": -1,
            "hard_vocab_limit": False,
            "minloglevel": 2,
            **options,
        }
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **kw)
        return cls(buf.getvalue())

    def save(self, path: str | os.PathLike) -> None:
        """Write the SentencePiece model to ``path``."""
        Path(path).write_bytes(self.sp.serialized_model_proto())
