"""SentenceEncoder: sentences -> pooled BERT vectors, batched by length; fine-tuning and saving.

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
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    """Encode sentences into fixed-size vectors with a BERT-style encoder; fine-tune and save it.

    Args:
        model: BERT-style ``nn.Module`` (see the module docstring for the call contract).
        tokenizer: a ``tokenizers.Tokenizer`` (e.g. ``Tokenizer.from_file("tokenizer.json")``),
            kept as ``self.tokenizer`` (and written by :meth:`save_pretrained`). Encoding uses
            a private copy configured here (truncation to ``max_length``, no padding), so
            what is done to either object later (``enable_padding``, ...) cannot change the
            vectors; padding is always told apart by the attention mask.
        pooling: ``"cls"``, ``"mean"``, ``"first-last-avg"``, ``"last-2-avg"`` or ``"pooler"``.
        normalize: L2-normalise the vectors (off by default: whitening wants the raw ones;
            cosine does not care).
        max_length: truncate to this many tokens, [CLS] and [SEP] included.
        projection: an optional ``nn.Module`` applied to the pooled vectors before the
            normalisation, e.g. BERT-whitening as a layer (:meth:`Whitening.to_linear
            <kexue.embed.Whitening.to_linear>`).

    Training: :meth:`fit` fine-tunes on sentence pairs (CoSENT, Sentence-BERT, cosine-MSE);
    :meth:`embed` is the differentiable forward for a loss of your own.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 512,
        projection: nn.Module | None = None,
    ) -> None:
        _check_pooling(pooling)
        if not hasattr(tokenizer, "encode_batch") or not hasattr(tokenizer, "to_str"):
            raise ValueError(f"expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.projection = projection
        self.source: Path | None = None  # the folder from_pretrained read, if any
        self.tokenizer = tokenizer
        self.max_length = max_length  # builds the private encoding tokenizer
        pad = tokenizer.padding
        if pad is not None:
            self.pad_id = pad["pad_id"]
        else:
            pad_id = tokenizer.token_to_id("[PAD]")
            self.pad_id = 0 if pad_id is None else pad_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"expected max_length >= 2 ([CLS] and [SEP]), got {value!r}")
        from tokenizers import Tokenizer

        self._max_length = value
        self._encoding_tokenizer = Tokenizer.from_str(self.tokenizer.to_str())  # private copy
        self._encoding_tokenizer.no_padding()  # batches are padded here, after sorting by length
        self._encoding_tokenizer.enable_truncation(value)

    @property
    def dim(self) -> int:
        """Size of the vectors: the projection's output, else the model's hidden size."""
        if isinstance(self.projection, nn.Linear):
            return self.projection.out_features
        if self.projection is None and hasattr(getattr(self.model, "config", None),
                                                "hidden_size"):
            return int(self.model.config.hidden_size)
        with torch.no_grad():
            return self.embed(["a"]).shape[-1]

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        backend: str = "auto",
        recompute: bool = False,
    ) -> SentenceEncoder:
        """Load a local Hugging Face BERT folder (default: the embedded all-MiniLM-L6-v2).

        A folder written by :meth:`save_pretrained` comes back as it was saved (pooling,
        normalisation, projection); arguments given here override it.

        Args:
            folder: a folder with ``config.json``, weights and ``tokenizer.json``.
            pooling: default ``"mean"`` (or the saved one).
            normalize: default False (or the saved one).
            max_length: default the saved one, else ``max_seq_length`` of
                ``sentence_bert_config.json`` when present (256 for MiniLM), else
                ``max_position_embeddings`` of ``config.json``.
            backend: ``"kexue"`` (``kexue.models.Bert``), ``"transformers"`` (``BertModel``)
                or ``"auto"``: kexue's Bert when it is importable, else transformers.
            recompute: recompute each block's activations in the backward pass (saves
                memory when fine-tuning; kexue backend only).
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
        saved = _read_json(folder / ENCODER_CONFIG) if (folder / ENCODER_CONFIG).is_file() else {}
        if max_length is None:
            max_length = saved.get("max_length") or _default_max_length(folder)
        model = _load_bert(folder, backend, recompute)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        projection = _load_projection(folder / saved["projection"]) if saved.get(
            "projection") else None
        encoder = cls(model, tokenizer,
                      pooling=pooling if pooling is not None else saved.get("pooling", "mean"),
                      normalize=normalize if normalize is not None else saved.get(
                          "normalize", False),
                      max_length=max_length, projection=projection)
        encoder.source = folder
        return encoder

    # ------------------------------------------------------------------ encoding

    def tokenize(self, sentences: Sequence[str]) -> dict[str, Tensor]:
        """``input_ids``, ``token_type_ids``, ``attention_mask``: (batch, longest) int64 tensors
        on the model's device, padded to the longest sentence of ``sentences``."""
        _check_sentences(sentences)
        return self._pad(self._encoding_tokenizer.encode_batch(list(sentences)))

    def embed(self, batch: Mapping[str, Tensor] | Sequence[str]) -> Tensor:
        """Differentiable sentence vectors (batch, dim) of a :meth:`tokenize` batch (or of a
        list of sentences): the model in its current mode, pooled with the attention mask,
        projected and normalised as configured. For a loss of your own::

            u, v = encoder.embed(a_sentences), encoder.embed(b_sentences)
            loss = my_loss(u, v, labels); loss.backward()
        """
        if not isinstance(batch, Mapping):
            batch = self.tokenize(batch)
        return self._vectors(batch, (self.pooling,))[self.pooling]

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 64,
        progress: bool | None = None,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | Tensor:
        """Vectors of ``sentences``: float32 (n, dim) numpy array, or a tensor if asked.

        Sentences are sorted by token count and batched so that each batch is padded only to
        its own longest sentence; the output is in the input order. A single string gives
        a (dim,) vector. ``progress`` shows a tqdm bar (default: only on a terminal,
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
        """Like :meth:`encode` for several poolings from one forward pass: {pooling: (n, dim)}."""
        _check_sentences(sentences)
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
        for p in poolings:
            _check_pooling(p)
        encodings = self._encoding_tokenizer.encode_batch(list(sentences))
        order = np.argsort([-sum(e.attention_mask) for e in encodings], kind="stable")
        chunks: dict[str, list[Tensor]] = {p: [] for p in poolings}
        batches = range(0, len(order), batch_size)
        if _show_progress(progress):
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encode", unit="batch")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in batches:
                    batch = self._pad([encodings[i] for i in order[start : start + batch_size]])
                    vectors = self._vectors(batch, poolings)
                    for p in poolings:
                        chunks[p].append(vectors[p].float().cpu())
        finally:
            self.model.train(was_training)
        inverse = torch.from_numpy(np.argsort(order))  # sorted position of each input
        out = {}
        for p in poolings:
            vectors = torch.cat(chunks[p])[inverse]  # (n, dim), input order
            out[p] = vectors if convert_to_tensor else vectors.numpy()
        return out

    def _pad(self, encodings: list) -> dict[str, Tensor]:
        """Pad encodings to their longest; each one's tokens are those its attention mask
        marks, so padding a tokenizer was set to add is never counted."""
        rows = []
        for e in encodings:
            keep = [i for i, m in enumerate(e.attention_mask) if m]
            rows.append(([e.ids[i] for i in keep], [e.type_ids[i] for i in keep]))
        length = max(len(ids) for ids, _ in rows)
        input_ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        type_ids = np.zeros((len(rows), length), dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for row, (ids, types) in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            type_ids[row, : len(ids)] = types
            mask[row, : len(ids)] = 1
        device = next(self.model.parameters()).device
        return {"input_ids": torch.from_numpy(input_ids).to(device),
                "token_type_ids": torch.from_numpy(type_ids).to(device),
                "attention_mask": torch.from_numpy(mask).to(device)}

    def _vectors(self, batch: Mapping[str, Tensor], poolings: Sequence[str]) -> dict[str, Tensor]:
        """{pooling: (batch, dim)} of one padded batch, in the model's current mode."""
        attention_mask = batch["attention_mask"]  # (batch, seq)
        needs_layers = any(p in ("first-last-avg", "last-2-avg") for p in poolings)
        output = self.model(
            batch["input_ids"],
            attention_mask=attention_mask,
            token_type_ids=batch.get("token_type_ids"),
            output_hidden_states=needs_layers,
        )
        hidden_states = output.hidden_states if needs_layers else (output.last_hidden_state,)
        vectors = {}
        for p in poolings:
            if p == "pooler":
                v = output.pooler_output  # (batch, hidden)
            else:
                v = pool(hidden_states, attention_mask, pooling=p)  # (batch, hidden)
            if self.projection is not None:
                v = self.projection(v)  # (batch, dim)
            if self.normalize:
                v = torch.nn.functional.normalize(v.float(), dim=-1)
            vectors[p] = v
        return vectors

    # ------------------------------------------------------------------ training

    def evaluate(self, pairs: Sequence[tuple[str, str, float]], batch_size: int = 64
                 ) -> dict[str, float]:
        """``{"spearman": x100}`` of ``cos(u, v)`` against the gold scores of ``pairs``
        ``(sentence_a, sentence_b, score)`` (the STS metric of posts 8069 and 8847)."""
        from kexue.embed.finetune import pair_rows
        from kexue.embed.sts import sts_spearman

        rows = pair_rows(pairs, "pairs")
        n = len(rows)
        vectors = self.encode([r[0] for r in rows] + [r[1] for r in rows], batch_size=batch_size,
                              progress=False)
        gold = np.array([r[2] for r in rows], dtype=np.float64)
        return {"spearman": 100 * sts_spearman(vectors[:n], vectors[n:], gold)}

    def fit(self, train, loss: str = "cosent", **kwargs):
        """Fine-tune the model on sentence pairs; see :func:`kexue.embed.finetune.fit_pairs`
        for the arguments (``epochs=``, ``batch_size=``, ``lr=``, ``evaluator=``, ``step=``,
        ...). Returns the :class:`kexue.train.TrainResult`."""
        from kexue.embed.finetune import fit_pairs

        return fit_pairs(self, train, loss, **kwargs)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write a folder that both :meth:`from_pretrained` and sentence-transformers load.

        ``config.json`` and ``model.safetensors`` (the model's own ``save_pretrained``),
        ``tokenizer.json`` (plus ``tokenizer_config.json``, ``special_tokens_map.json`` and
        ``vocab.txt`` copied from the folder the encoder was loaded from, or a minimal
        ``tokenizer_config.json``), kexue's ``kexue_encoder.json`` (pooling, normalisation,
        ``max_length``) and, for ``"cls"`` / ``"mean"`` pooling (the ones sentence-transformers
        has), its module files: ``modules.json``, ``sentence_bert_config.json``,
        ``1_Pooling/config.json``, ``2_Dense/`` for a linear projection and
        ``3_Normalize`` when normalising.
        """
        folder = Path(folder)
        if not hasattr(self.model, "save_pretrained"):
            raise ValueError(f"the model ({type(self.model).__name__}) has no save_pretrained")
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.save_tokenizer(folder)
        config = {"pooling": self.pooling, "normalize": self.normalize,
                  "max_length": self.max_length, "projection": None}
        if self.projection is not None:
            config["projection"] = _save_projection(self.projection, folder / "2_Dense")
        _write_json(folder / ENCODER_CONFIG, config)
        if self.pooling in ("cls", "mean"):
            self._save_sentence_transformers_modules(folder)

    def save_tokenizer(self, folder: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` and copy ``tokenizer_config.json``,
        ``special_tokens_map.json`` and ``vocab.txt`` from the folder the encoder was loaded
        from (or write a minimal ``tokenizer_config.json``): what ``transformers`` needs."""
        folder = Path(folder)
        (folder / "tokenizer.json").write_text(self.tokenizer.to_str(), encoding="utf-8")
        source = self.source
        for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if source is not None and (source / name).is_file() and source != folder:
                shutil.copyfile(source / name, folder / name)
        if not (folder / "tokenizer_config.json").is_file():
            _write_json(folder / "tokenizer_config.json", _tokenizer_config(self.tokenizer,
                                                                            self.max_length))

    def _save_sentence_transformers_modules(self, folder: Path) -> None:
        modules = [{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"}]
        if self.projection is not None:
            modules.append({"idx": 2, "name": "2", "path": "2_Dense",
                            "type": "sentence_transformers.models.Dense"})
        if self.normalize:
            modules.append({"idx": len(modules), "name": str(len(modules)), "path": "3_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
            (folder / "3_Normalize").mkdir(exist_ok=True)
        _write_json(folder / "modules.json", modules)
        _write_json(folder / "sentence_bert_config.json",
                    {"max_seq_length": self.max_length, "do_lower_case": False})
        hidden = _hidden_size(self.model)
        (folder / "1_Pooling").mkdir(exist_ok=True)
        _write_json(folder / "1_Pooling" / "config.json", {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        })


ENCODER_CONFIG = "kexue_encoder.json"


def _check_sentences(sentences: Sequence[str]) -> None:
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise ValueError("expected a sequence of strings")
    if len(sentences) == 0:
        raise ValueError("expected at least one sentence, got an empty sequence")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _default_max_length(folder: Path) -> int:
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        return _read_json(st_config)["max_seq_length"]
    return _read_json(folder / "config.json")["max_position_embeddings"]


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "hidden_size"):
        raise ValueError("the model has no config.hidden_size to describe its pooling with")
    return int(config.hidden_size)


def _tokenizer_config(tokenizer, max_length: int) -> dict[str, Any]:
    """A tokenizer_config.json for a tokenizer.json alone: the fast tokenizer class and the
    BERT special tokens it has."""
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast",
                              "model_max_length": max_length}
    for key, token in (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                       ("unk_token", "[UNK]"), ("mask_token", "[MASK]")):
        if tokenizer.token_to_id(token) is not None:
            config[key] = token
    return config


def _save_projection(projection: nn.Module, folder: Path) -> str:
    """A linear projection as a sentence-transformers ``Dense`` module folder."""
    from safetensors.torch import save_file

    if not isinstance(projection, nn.Linear):
        raise TypeError(f"save_pretrained can write an nn.Linear projection, got "
                         f"{type(projection).__name__}")
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", {
        "in_features": projection.in_features, "out_features": projection.out_features,
        "bias": projection.bias is not None,
        "activation_function": "torch.nn.modules.linear.Identity"})
    state = {f"linear.{k}": v.detach().contiguous().cpu() for k, v in projection.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder.name


def _load_projection(folder: Path) -> nn.Linear:
    from safetensors.torch import load_file

    config = _read_json(folder / "config.json")
    layer = nn.Linear(config["in_features"], config["out_features"], bias=config["bias"])
    state = load_file(folder / "model.safetensors")
    layer.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return layer.requires_grad_(False)


def _load_bert(folder: Path, backend: str, recompute: bool = False) -> nn.Module:
    """kexue's Bert when asked for (or, for "auto", when it is importable), else transformers."""
    if backend in ("auto", "kexue"):
        try:
            from kexue.models import Bert
        except ImportError:
            if backend == "kexue":
                raise
        else:
            return Bert.from_pretrained(folder, recompute=recompute)
    from transformers import BertModel

    model = BertModel.from_pretrained(str(folder))
    if recompute:
        model.gradient_checkpointing_enable()
    return model
