"""SentenceEncoder: sentences -> pooled BERT vectors, batched by length.

Works with any model that follows the Hugging Face ``BertModel`` call contract,
``model(input_ids, attention_mask=..., token_type_ids=..., output_hidden_states=...)``
returning an object with ``.last_hidden_state``, ``.hidden_states`` and ``.pooler_output``
(``kexue.models.Bert`` and ``transformers.BertModel`` both do), and a Hugging Face
``tokenizers.Tokenizer``. Pooling strategies are those of :mod:`kexue.embed.pooling`
(kexue.fm/archives/8069) plus ``"pooler"`` (the tanh pooler over [CLS], the post's P2).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from kexue.embed.pooling import POOLING_STRATEGIES, pool

__all__ = ["ENCODER_POOLINGS", "SentenceEncoder"]

ENCODER_POOLINGS = (*POOLING_STRATEGIES, "pooler")


def _check_pooling(pooling: str) -> None:
    if pooling not in ENCODER_POOLINGS:
        raise ValueError(f"expected pooling in {ENCODER_POOLINGS}, got {pooling!r}")


def _show_progress(progress: bool | None) -> bool:
    """Explicit choice, else on only for an interactive terminal outside CI."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and not os.environ.get("CI")


class SentenceEncoder:
    """Encode sentences into fixed-size vectors with a BERT-style encoder.

    Args:
        model: BERT-style ``nn.Module`` (see the module docstring for the call contract).
        tokenizer: a ``tokenizers.Tokenizer`` (e.g. ``Tokenizer.from_file("tokenizer.json")``);
            a configured copy is kept (truncation to ``max_length``, no fixed padding), the
            caller's object is not modified.
        pooling: ``"cls"``, ``"mean"``, ``"first-last-avg"``, ``"last-2-avg"`` or ``"pooler"``.
        normalize: L2-normalise the vectors (off by default: whitening wants the raw ones;
            cosine does not care).
        max_length: truncate to this many tokens, [CLS] and [SEP] included.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 512,
    ) -> None:
        _check_pooling(pooling)
        if max_length < 2:
            raise ValueError(f"expected max_length >= 2 ([CLS] and [SEP]), got {max_length}")
        from tokenizers import Tokenizer

        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # private, reconfigurable copy
        self.tokenizer.no_padding()  # batches are padded here, after sorting by length
        self.tokenizer.enable_truncation(max_length)
        pad = tokenizer.padding
        if pad is not None:
            self.pad_id = pad["pad_id"]
        else:
            pad_id = self.tokenizer.token_to_id("[PAD]")
            self.pad_id = 0 if pad_id is None else pad_id

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike | None = None,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int | None = None,
        backend: str = "auto",
    ) -> SentenceEncoder:
        """Load a local Hugging Face BERT folder (default: the embedded all-MiniLM-L6-v2).

        Args:
            folder: a folder with ``config.json``, weights and ``tokenizer.json``.
            max_length: default ``max_seq_length`` of ``sentence_bert_config.json`` when
                present (256 for MiniLM), else ``max_position_embeddings`` of ``config.json``.
            backend: ``"kexue"`` (``kexue.models.Bert``), ``"transformers"`` (``BertModel``)
                or ``"auto"``: kexue's Bert when it is importable, else transformers.
        """
        if backend not in ("auto", "kexue", "transformers"):
            raise ValueError(f"expected backend 'auto', 'kexue' or 'transformers', got {backend!r}")
        if folder is None:
            from kexue.data import minilm_path

            folder = minilm_path()
        folder = Path(folder)
        for name in ("config.json", "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"expected {name} in the model folder {folder}, not found")
        if max_length is None:
            st_config = folder / "sentence_bert_config.json"
            if st_config.is_file():
                max_length = json.loads(st_config.read_text())["max_seq_length"]
            else:
                max_length = json.loads((folder / "config.json").read_text())[
                    "max_position_embeddings"
                ]
        model = _load_bert(folder, backend)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return cls(model, tokenizer, pooling=pooling, normalize=normalize, max_length=max_length)

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 64,
        progress: bool | None = None,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | Tensor:
        """Vectors of ``sentences``: float32 (n, hidden) numpy array, or a tensor if asked.

        Sentences are sorted by token count and batched so that each batch is padded only to
        its own longest sentence; the output is in the input order. A single string gives
        a (hidden,) vector. ``progress`` shows a tqdm bar (default: only on a terminal,
        never when ``CI`` is set).
        """
        single = isinstance(sentences, str)
        out = self.encode_poolings(
            [sentences] if single else sentences,
            (self.pooling,),
            batch_size=batch_size,
            progress=progress,
            convert_to_tensor=convert_to_tensor,
        )[self.pooling]
        return out[0] if single else out

    def encode_poolings(
        self,
        sentences: Sequence[str],
        poolings: Sequence[str] = ENCODER_POOLINGS,
        batch_size: int = 64,
        progress: bool | None = None,
        convert_to_tensor: bool = False,
    ) -> dict[str, np.ndarray | Tensor]:
        """Like :meth:`encode` for several poolings from one forward pass: {pooling: (n, hidden)}."""
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise ValueError("expected a sequence of strings")
        if len(sentences) == 0:
            raise ValueError("expected at least one sentence, got an empty sequence")
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        for p in poolings:
            _check_pooling(p)
        encodings = self.tokenizer.encode_batch(list(sentences))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")  # longest first
        chunks: dict[str, list[Tensor]] = {p: [] for p in poolings}
        device = next(self.model.parameters()).device
        batches = range(0, len(order), batch_size)
        if _show_progress(progress):
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in batches:
                    batch = [encodings[i] for i in order[start : start + batch_size]]
                    vectors = self._encode_batch(batch, poolings, device)
                    for p in poolings:
                        chunks[p].append(vectors[p].float().cpu())
        finally:
            self.model.train(was_training)
        inverse = torch.from_numpy(np.argsort(order))  # sorted position of each input
        out = {}
        for p in poolings:
            vectors = torch.cat(chunks[p])[inverse]  # (n, hidden), input order
            out[p] = vectors if convert_to_tensor else vectors.numpy()
        return out

    def _encode_batch(self, batch: list, poolings: Sequence[str], device: torch.device) -> dict:
        length = len(batch[0].ids)  # sorted longest first
        input_ids = np.full((len(batch), length), self.pad_id, dtype=np.int64)
        type_ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.int64)
        for row, e in enumerate(batch):
            n = len(e.ids)
            input_ids[row, :n] = e.ids
            type_ids[row, :n] = e.type_ids
            mask[row, :n] = 1
        attention_mask = torch.from_numpy(mask).to(device)  # (batch, seq)
        needs_layers = any(p in ("first-last-avg", "last-2-avg") for p in poolings)
        output = self.model(
            torch.from_numpy(input_ids).to(device),
            attention_mask=attention_mask,
            token_type_ids=torch.from_numpy(type_ids).to(device),
            output_hidden_states=needs_layers,
        )
        hidden_states = output.hidden_states if needs_layers else (output.last_hidden_state,)
        vectors = {}
        for p in poolings:
            if p == "pooler":
                v = output.pooler_output  # (batch, hidden)
            else:
                v = pool(hidden_states, attention_mask, pooling=p)  # (batch, hidden)
            if self.normalize:
                v = torch.nn.functional.normalize(v.float(), dim=-1)
            vectors[p] = v
        return vectors


def _load_bert(folder: Path, backend: str) -> nn.Module:
    """kexue's Bert when asked for (or, for "auto", when it is importable), else transformers."""
    if backend in ("auto", "kexue"):
        try:
            from kexue.models import Bert
        except ImportError:
            if backend == "kexue":
                raise
        else:
            return Bert.from_pretrained(folder)
    from transformers import BertModel

    return BertModel.from_pretrained(str(folder))
