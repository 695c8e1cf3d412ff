"""Hugging Face interop: configs read from / written to ``config.json``, explicit key maps
between Hugging Face parameter names and kexue's, and checkpoint reading and writing.

Checkpoints are read from ``model.safetensors`` (or a sharded
``model.safetensors.index.json``) first; ``pytorch_model.bin`` only with
``torch.load(weights_only=True)``. A key map is written out name by name (no regular
expressions); an entry may gather several Hugging Face tensors into one kexue tensor
(BERT's separate query/key/value -> the fused ``qkv``) and transpose (GPT-2's Conv1D
stores ``(in, out)``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from kexue.nn.rope import ROPE_OPTIONS

SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)


# --------------------------------------------------------------------------- configs


@dataclass
class _Config:
    model_type: ClassVar[str] = ""
    hf_names: ClassVar[dict[str, str]] = {}  # kexue field -> config.json key, where they differ

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Config:
        """Build from a ``config.json`` dict; raise if it describes another architecture."""
        got = d.get("model_type")
        if got is not None and got != cls.model_type:
            raise ValueError(f"expected a {cls.model_type!r} checkpoint, config.json says {got!r}")
        kw = {}
        for f in dataclasses.fields(cls):
            key = cls.hf_names.get(f.name, f.name)
            if key in d:
                kw[f.name] = d[key]
            elif f.name in d:
                kw[f.name] = d[f.name]
        cfg = cls(**kw)
        cfg.check(d)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = {"model_type": self.model_type}
        for f in dataclasses.fields(self):
            d[self.hf_names.get(f.name, f.name)] = getattr(self, f.name)
        return d

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> _Config:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json at {path}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a valid JSON config ({e})") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")  # noqa: TRY004  (a bad file, not a bad argument)
        try:
            return cls.from_dict(raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    def to_json(self, path: str | os.PathLike, **extra: Any) -> None:
        path = Path(path)
        path = path / "config.json" if path.is_dir() else path
        path.write_text(json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=True) + "\n")

    def check(self, d: dict[str, Any] | None = None) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class BertConfig(_Config):
    """BERT hyper-parameters, named as in Hugging Face's ``config.json``.

    kexue extras: ``position_embedding_type`` also takes ``"sinusoidal"`` and
    ``"rope"`` (with ``rope_theta`` and ``rope_options``, keyword options of
    :class:`~kexue.nn.RoPE` such as ``{"variant": "rerope", "window": 64}``), and
    ``attention`` holds :class:`~kexue.nn.MultiHeadAttention` options (``key_size``,
    ``talking_heads``, ``scale``); a checkpoint using them is not loadable by
    ``transformers``.
    """

    model_type: ClassVar[str] = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    rope_theta: float = 10000.0
    rope_options: dict[str, Any] = field(default_factory=dict)
    attention: dict[str, Any] = field(default_factory=dict)

    def check(self, d: dict[str, Any] | None = None) -> None:
        super().check(d)
        _check_positions(self, ("absolute", "sinusoidal", "rope"))
        if d and d.get("is_decoder") or d and d.get("add_cross_attention"):
            raise ValueError("decoder / cross-attention BERT checkpoints are not supported")


@dataclass
class GPT2Config(_Config):
    """GPT-2 hyper-parameters with BERT-style field names; ``config.json`` uses GPT-2's
    (``n_embd``, ``n_layer``, ``n_head``, ``n_inner``, ``n_positions``, ...).

    kexue extras, as in :class:`BertConfig`: ``position_embedding_type="rope"`` (rotary
    positions instead of the learned table, with ``rope_theta`` and ``rope_options``)
    and ``attention`` options; a checkpoint using them is not loadable by
    ``transformers``."""

    model_type: ClassVar[str] = "gpt2"
    hf_names: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "intermediate_size": "n_inner",
        "max_position_embeddings": "n_positions",
        "hidden_act": "activation_function",
        "layer_norm_eps": "layer_norm_epsilon",
        "hidden_dropout_prob": "resid_pdrop",
        "embedding_dropout_prob": "embd_pdrop",
        "attention_probs_dropout_prob": "attn_pdrop",
    }
    vocab_size: int = 50257
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None  # None: 4 * hidden_size
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.1
    embedding_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    position_embedding_type: str = "absolute"
    rope_theta: float = 10000.0
    rope_options: dict[str, Any] = field(default_factory=dict)
    attention: dict[str, Any] = field(default_factory=dict)

    @property
    def inner_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    def check(self, d: dict[str, Any] | None = None) -> None:
        super().check(d)
        _check_positions(self, ("absolute", "rope"))
        d = d or {}
        unsupported = {
            "scale_attn_weights": (d.get("scale_attn_weights", True), True),
            "scale_attn_by_inverse_layer_idx": (
                d.get("scale_attn_by_inverse_layer_idx", False),
                False,
            ),
            "add_cross_attention": (d.get("add_cross_attention", False), False),
            "tie_word_embeddings": (d.get("tie_word_embeddings", True), True),
        }
        for key, (got, want) in unsupported.items():
            if got != want:
                raise ValueError(f"GPT-2 option {key}={got!r} is not supported (expected {want!r})")


def _check_positions(config: BertConfig | GPT2Config, kinds: tuple[str, ...]) -> None:
    if config.position_embedding_type not in kinds:
        raise ValueError(
            f"position_embedding_type must be one of {kinds}, got {config.position_embedding_type!r}"
        )
    if not isinstance(config.rope_options, dict):
        raise ValueError(f"rope_options must be a dict of RoPE options, got {config.rope_options!r}")  # noqa: TRY004
    if config.rope_options and config.position_embedding_type != "rope":
        raise ValueError(
            f"rope_options {config.rope_options} need position_embedding_type='rope', "
            f"got {config.position_embedding_type!r}"
        )
    unknown = sorted(set(config.rope_options) - set(ROPE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown rope_options {unknown}; expected some of {ROPE_OPTIONS}")


# --------------------------------------------------------------------------- key maps


@dataclass(frozen=True)
class HFKey:
    """Where one kexue tensor lives in a Hugging Face checkpoint."""

    names: tuple[str, ...]  # several names: concatenated along dim 0 (split back on save)
    sizes: tuple[int, ...] | None = None  # dim-0 sizes of the parts when len(names) > 1
    transpose: bool = False  # Conv1D layout (in, out)


def bert_key_map(config: BertConfig, *, pooler: bool, mlm: bool) -> dict[str, HFKey]:
    """kexue :class:`~kexue.models.Bert` name -> Hugging Face ``BertModel`` name(s).

    MLM head names are those of ``BertForMaskedLM`` without its ``bert.`` prefix."""
    m = {
        "embeddings.word.weight": HFKey(("embeddings.word_embeddings.weight",)),
        "embeddings.token_type.weight": HFKey(("embeddings.token_type_embeddings.weight",)),
        "embeddings.norm.weight": HFKey(("embeddings.LayerNorm.weight",)),
        "embeddings.norm.bias": HFKey(("embeddings.LayerNorm.bias",)),
    }
    if config.position_embedding_type == "absolute":
        m["embeddings.position.weight"] = HFKey(("embeddings.position_embeddings.weight",))
    heads = config.num_attention_heads
    head_size = config.attention.get("head_size", config.hidden_size // heads)
    key_size = config.attention.get("key_size") or head_size
    qkv_sizes = (heads * key_size, heads * key_size, heads * head_size)
    for i in range(config.num_hidden_layers):
        k, h = f"encoder.layers.{i}.", f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            m[k + f"attn.qkv.{p}"] = HFKey(
                tuple(h + f"attention.self.{n}.{p}" for n in ("query", "key", "value")), qkv_sizes
            )
            m[k + f"attn.out.{p}"] = HFKey((h + f"attention.output.dense.{p}",))
            m[k + f"ln1.{p}"] = HFKey((h + f"attention.output.LayerNorm.{p}",))
            m[k + f"ffn.up.{p}"] = HFKey((h + f"intermediate.dense.{p}",))
            m[k + f"ffn.down.{p}"] = HFKey((h + f"output.dense.{p}",))
            m[k + f"ln2.{p}"] = HFKey((h + f"output.LayerNorm.{p}",))
        if config.attention.get("talking_heads"):  # kexue-only tensors
            m[k + "attn.pre_mix"] = HFKey((h + "attention.self.talking_heads_pre_mix",))
            m[k + "attn.post_mix"] = HFKey((h + "attention.self.talking_heads_post_mix",))
    if pooler:
        m["pooler.weight"] = HFKey(("pooler.dense.weight",))
        m["pooler.bias"] = HFKey(("pooler.dense.bias",))
    if mlm:
        m["mlm.dense.weight"] = HFKey(("cls.predictions.transform.dense.weight",))
        m["mlm.dense.bias"] = HFKey(("cls.predictions.transform.dense.bias",))
        m["mlm.norm.weight"] = HFKey(("cls.predictions.transform.LayerNorm.weight",))
        m["mlm.norm.bias"] = HFKey(("cls.predictions.transform.LayerNorm.bias",))
        m["mlm.bias"] = HFKey(("cls.predictions.bias",))
    return m


# Hugging Face tensors that kexue recomputes or ties, so they are dropped on load.
BERT_IGNORED = (
    "embeddings.position_ids",
    "cls.predictions.decoder.weight",  # tied to the word embeddings
    "cls.predictions.decoder.bias",  # tied to cls.predictions.bias
)


def gpt2_key_map(config: GPT2Config) -> dict[str, HFKey]:
    """kexue :class:`~kexue.models.GPT2` name -> Hugging Face ``GPT2Model`` name."""
    m = {
        "wte.weight": HFKey(("wte.weight",)),
        "ln_f.weight": HFKey(("ln_f.weight",)),
        "ln_f.bias": HFKey(("ln_f.bias",)),
    }
    if config.position_embedding_type == "absolute":
        m["wpe.weight"] = HFKey(("wpe.weight",))
    for i in range(config.num_hidden_layers):
        k, h = f"blocks.layers.{i}.", f"h.{i}."
        m[k + "attn.qkv.weight"] = HFKey((h + "attn.c_attn.weight",), transpose=True)
        m[k + "attn.qkv.bias"] = HFKey((h + "attn.c_attn.bias",))
        m[k + "attn.out.weight"] = HFKey((h + "attn.c_proj.weight",), transpose=True)
        m[k + "attn.out.bias"] = HFKey((h + "attn.c_proj.bias",))
        m[k + "ffn.up.weight"] = HFKey((h + "mlp.c_fc.weight",), transpose=True)
        m[k + "ffn.up.bias"] = HFKey((h + "mlp.c_fc.bias",))
        m[k + "ffn.down.weight"] = HFKey((h + "mlp.c_proj.weight",), transpose=True)
        m[k + "ffn.down.bias"] = HFKey((h + "mlp.c_proj.bias",))
        for p in ("weight", "bias"):
            m[k + f"ln1.{p}"] = HFKey((h + f"ln_1.{p}",))
            m[k + f"ln2.{p}"] = HFKey((h + f"ln_2.{p}",))
        if config.attention.get("talking_heads"):
            m[k + "attn.pre_mix"] = HFKey((h + "attn.talking_heads_pre_mix",))
            m[k + "attn.post_mix"] = HFKey((h + "attn.talking_heads_post_mix",))
    return m


GPT2_IGNORED = ("lm_head.weight",)  # tied to wte
GPT2_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # old causal-mask buffers


# --------------------------------------------------------------------------- conversion


def _describe(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def from_hf_state_dict(
    hf: dict[str, Tensor],
    key_map: dict[str, HFKey],
    *,
    ignored: tuple[str, ...] = (),
    ignored_prefixes: tuple[str, ...] = (),
    ignored_suffixes: tuple[str, ...] = (),
    strict: bool = True,
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Convert a Hugging Face state dict (prefix already removed) with ``key_map``.

    Names in ``ignored`` (or with one of the prefixes / suffixes) are tensors kexue
    recomputes, ties or does not model. Returns ``(state_dict, missing, unexpected)``; with ``strict`` a non-empty
    ``missing`` or ``unexpected`` raises ``ValueError`` listing them."""
    # TF-era BERT checkpoints name LayerNorm parameters gamma / beta
    renamed = {}
    for name, t in hf.items():
        if name.endswith((".gamma", ".beta")):
            name = name.rsplit(".", 1)[0] + (".weight" if name.endswith(".gamma") else ".bias")
        renamed[name] = t
    out, missing, used = {}, [], set()
    for kx_name, entry in key_map.items():
        absent = [n for n in entry.names if n not in renamed]
        if absent:
            missing.extend(absent)
            continue
        parts = [renamed[n] for n in entry.names]
        t = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        out[kx_name] = t.t() if entry.transpose else t
        used.update(entry.names)
    unexpected = [
        n for n in renamed
        if n not in used and n not in ignored
        and not n.startswith(ignored_prefixes) and not n.endswith(ignored_suffixes)
    ]  # fmt: skip
    if strict and (missing or unexpected):
        raise ValueError(
            "checkpoint does not match the model: "
            f"missing keys [{_describe(missing)}]; unexpected keys [{_describe(unexpected)}]"
        )
    return out, missing, unexpected


def to_hf_state_dict(state: dict[str, Tensor], key_map: dict[str, HFKey]) -> dict[str, Tensor]:
    """Inverse of :func:`from_hf_state_dict`: kexue tensors -> Hugging Face names."""
    out = {}
    for kx_name, entry in key_map.items():
        t = state[kx_name]
        t = t.t() if entry.transpose else t
        parts = t.split(list(entry.sizes), dim=0) if len(entry.names) > 1 else (t,)
        for n, p in zip(entry.names, parts):
            out[n] = p.contiguous()
    return out


def strip_prefix(hf: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Drop ``prefix`` (``"bert."``, ``"transformer."``) from the names that carry it."""
    return {k.removeprefix(prefix): v for k, v in hf.items()}


# --------------------------------------------------------------------------- files


def _read_weights(path: Path) -> dict[str, Tensor]:
    """One weights file, with an error that names it when it is damaged."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read weights from {path}: {type(e).__name__}: {e}") from e


def load_hf_state_dict(folder: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of the checkpoint in ``folder`` (safetensors first, then ``.bin``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if (folder / SAFETENSORS).is_file():
        return _read_weights(folder / SAFETENSORS)
    if (folder / SAFETENSORS_INDEX).is_file():
        try:
            index = json.loads((folder / SAFETENSORS_INDEX).read_text())
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{folder / SAFETENSORS_INDEX} is not a safetensors index ({e})") from e
        state = {}
        for shard in shards:
            state.update(_read_weights(folder / shard))
        return state
    if (folder / TORCH_BIN).is_file():
        return _read_weights(folder / TORCH_BIN)
    raise FileNotFoundError(
        f"no weights in {folder}: expected {SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN}"
    )


def save_hf_state_dict(state: dict[str, Tensor], folder: str | os.PathLike) -> None:
    """Write ``state`` as ``folder/model.safetensors`` (tensors made contiguous)."""
    from safetensors.torch import save_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, Path(folder) / SAFETENSORS,
              metadata={"format": "pt"})  # fmt: skip


def load_checked(model: torch.nn.Module, state: dict[str, Tensor], strict: bool) -> None:
    """``model.load_state_dict(state)`` after a shape check that names every mismatch."""
    own = model.state_dict()
    wrong = [f"{n}: checkpoint {tuple(v.shape)} vs model {tuple(own[n].shape)}"
             for n, v in state.items() if n in own and own[n].shape != v.shape]  # fmt: skip
    if wrong:
        raise ValueError("checkpoint shapes do not match the config: " + "; ".join(wrong[:10]))
    model.load_state_dict(state, strict=strict)
