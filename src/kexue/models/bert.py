"""BERT: a post-LN Transformer encoder with an MLM head and a pooler.

Loads and saves Hugging Face ``BertModel`` / ``BertForMaskedLM`` folders through the
explicit key map of :mod:`kexue.models.hf`. Beyond Hugging Face, the attention takes
kexue options (``key_size``, ``talking_heads``, ``scale="entropy"``), positions may be
RoPE or sinusoidal, ``attention_mask`` may be any boolean ``(batch, q, k)`` mask, and
the same model does UniLM seq2seq (从语言模型到Seq2Seq：Transformer如戏，全靠Mask,
2019-09-18, https://kexue.fm/archives/6933): see :mod:`kexue.models.unilm`.

Padded batches run unpadded (``unpad=True``, the default): when the attention mask
marks padding, every token-wise layer sees only the real tokens (:class:`~kexue.nn.Packing`)
and attention alone runs in the padded layout; the outputs are scattered back, with
zeros at the padding positions. The real tokens' outputs and all gradients equal the
padded computation's (``tests/models/test_bert.py``, ``test_gpt2.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kexue.models.hf import (
    BERT_IGNORED,
    BertConfig,
    bert_key_map,
    from_hf_state_dict,
    load_checked,
    load_hf_state_dict,
    save_hf_state_dict,
    strip_prefix,
    to_hf_state_dict,
)
from kexue.nn.attention import KVCache
from kexue.nn.init import normal_init_
from kexue.nn.packing import real_tokens
from kexue.nn.position import LearnedPositionEmbedding, sinusoidal_embedding
from kexue.nn.rope import RoPE
from kexue.nn.transformer import Transformer, get_activation

TASK_HEADS = ("classifier.", "qa_outputs.")  # heads of Hugging Face's BERT task models


def check_input_ids(input_ids: Tensor, vocab_size: int | None = None) -> None:
    """Raise ``ValueError`` unless ``input_ids`` is a non-empty integer ``(batch, seq)``
    tensor with every id in ``[0, vocab_size)``."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        got = (tuple(input_ids.shape), input_ids.dtype) if isinstance(input_ids, Tensor) else input_ids
        raise ValueError(f"input_ids must be an integer (batch, seq) tensor, got {got}")
    if input_ids.numel() == 0:
        raise ValueError(f"input_ids must hold at least one token, got shape {tuple(input_ids.shape)}")
    if vocab_size is not None:
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"input_ids must lie in [0, {vocab_size}) (the vocabulary), got {bad}")


@dataclass
class BertOutput:
    last_hidden_state: Tensor  # (batch, seq, hidden)
    pooler_output: Tensor | None = None  # (batch, hidden): tanh(W h_[CLS] + b)
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings, then each layer
    logits: Tensor | None = None  # (batch, seq, vocab) with an MLM head
    past_key_values: tuple[KVCache, ...] | None = None


class BertEmbeddings(nn.Module):
    """``LN(word + position + token_type)`` then dropout (no position table with RoPE)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.kind = config.position_embedding_type
        self.word = nn.Embedding(config.vocab_size, config.hidden_size)
        if self.kind == "absolute":
            self.position = LearnedPositionEmbedding(
                config.max_position_embeddings, config.hidden_size
            )
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word(input_ids) + self.token_type(token_type_ids)  # (batch, seq, hidden)
        if self.kind == "absolute":
            x = x + self.position(position_ids)
        elif self.kind == "sinusoidal":
            x = x + sinusoidal_embedding(position_ids, x.shape[-1]).to(x.dtype)
        return self.dropout(self.norm(x))


class MLMHead(nn.Module):
    """``logits = LN(act(W h + b)) Eᵀ + bias`` with ``E`` the (tied) word embeddings."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: Tensor, word_embeddings: Tensor) -> Tensor:
        return nn.functional.linear(self.norm(self.act(self.dense(h))), word_embeddings, self.bias)


class Bert(nn.Module):
    """BERT encoder.

    Args:
        config: a :class:`BertConfig` (or keyword overrides of the default one).
        attention: extra attention options merged into ``config.attention``, e.g.
            ``dict(scale="entropy", key_size=64, talking_heads=True)``.
        pooler: add the ``[CLS]`` pooler.
        mlm: add the masked-LM head (tied to the word embeddings); outputs ``logits``.
        recompute: checkpoint each block while training (saves activation memory).
        unpad: run token-wise layers on the real tokens only when the mask marks
            padding (see :func:`kexue.nn.real_tokens`); ``False`` computes on the padding too.
    """

    def __init__(
        self,
        config: BertConfig | None = None,
        *,
        attention: dict[str, Any] | None = None,
        pooler: bool = True,
        mlm: bool = False,
        recompute: bool = False,
        unpad: bool = True,
        **overrides: Any,
    ):
        super().__init__()
        config = dataclasses.replace(config or BertConfig(), **overrides)
        config.attention = {**config.attention, **(attention or {})}
        config.check()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Transformer(
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            norm="post",
            activation=config.hidden_act,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            attention=config.attention,
            recompute=recompute,
        )
        self.rope = None  # any RoPE variant, see kexue.nn.RoPE and kexue.nn.apply_rope
        if config.position_embedding_type == "rope":
            key_size = self.encoder.layers[0].attn.key_size
            self.rope = RoPE(key_size, config.rope_theta, **config.rope_options)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if pooler else None
        self.mlm = MLMHead(config) if mlm else None
        self.task_head: dict[str, Tensor] = {}  # a task checkpoint's head, see from_pretrained
        self.unpad = unpad
        self.apply(self._init_weights)

    def get_input_embeddings(self) -> nn.Embedding:
        """The word-embedding table (the Hugging Face name; FGM and VAT perturb it)."""
        return self.embeddings.word

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """Masked-LM logits ``(..., vocab)`` of hidden states ``(..., hidden)``, e.g. of the
        chosen positions only (cheaper than the full ``(batch, seq, vocab)`` output)."""
        if self.mlm is None:
            raise ValueError("this Bert has no MLM head; build it with Bert(..., mlm=True)")
        return self.mlm(hidden, self.embeddings.word.weight)

    def _init_weights(self, module: nn.Module) -> None:
        normal_init_(module, self.config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        *,
        is_causal: bool = False,
        attn_bias: Tensor | None = None,
        past_key_values: tuple[KVCache, ...] | None = None,
        use_cache: bool = False,
        mlm_positions: Tensor | None = None,
    ) -> BertOutput:
        """Encode ``input_ids`` ``(batch, seq)``.

        ``attention_mask``: ``(batch, keys)`` 0/1 padding, or a boolean ``(batch, seq,
        keys)`` mask such as :func:`~kexue.nn.unilm_mask` (True = may attend); ``keys``
        includes cached positions. ``is_causal`` adds the LM mask; ``attn_bias`` is an
        additive logit bias ``(batch|1, heads|1, seq, keys)``. ``mlm_positions``, a
        boolean ``(batch, seq)`` mask, applies the MLM head only there: ``logits`` is then
        ``(selected, vocab)`` in row-major order (the head's cost is its vocabulary).
        With ``self.unpad`` and padding in the mask, the outputs (hidden states, logits)
        are zero at the padding positions (see :func:`real_tokens`).
        """
        check_input_ids(input_ids, self.config.vocab_size)
        b, t = input_ids.shape
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids must have the shape of input_ids {(b, t)}, got {tuple(token_type_ids.shape)}"
            )
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device).expand(b, t)
        elif position_ids.shape[-1] != t:
            raise ValueError(f"position_ids must be (batch, {t}), got {tuple(position_ids.shape)}")
        if mlm_positions is not None and mlm_positions.shape != (b, t):
            raise ValueError(f"mlm_positions must be (batch, seq) = {(b, t)}, got {tuple(mlm_positions.shape)}")
        mask = _attention_mask(attention_mask, b, t, past + t)
        packing = real_tokens(mask, b, t) if self.unpad else None

        # The embeddings run padded (a lookup and a LayerNorm): hooks on them (integrated
        # gradients, perturbations) see (batch, seq, hidden) either way.
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (batch, seq, hidden)
        x = x if packing is None else packing.pack(x)  # (n, hidden)
        rotary = None if self.rope is None else self.rope(position_ids, dtype=x.dtype)
        x, presents, hidden = self.encoder(
            x, mask, is_causal=is_causal, rotary=rotary, attn_bias=attn_bias,
            past_key_values=past_key_values, use_cache=use_cache,
            output_hidden_states=output_hidden_states, packing=packing,
        )  # fmt: skip
        logits = None
        if self.mlm is not None and mlm_positions is None:
            logits = self.mlm_logits(x)  # (batch, seq, vocab), or (n, vocab)
        if packing is not None:
            x, logits = packing.unpack(x), logits if logits is None else packing.unpack(logits)
            hidden = hidden if hidden is None else tuple(packing.unpack(h) for h in hidden)
        if self.mlm is not None and mlm_positions is not None:
            logits = self.mlm_logits(x[mlm_positions.bool()])  # (selected, vocab)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None
        return BertOutput(x, pooled, hidden, logits, presents)

    # ------------------------------------------------------------------ checkpoints

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        pooler: bool | None = None,
        mlm: bool | None = None,
        recompute: bool = False,
        strict: bool = True,
    ) -> Bert:
        """Load a Hugging Face BERT folder (``config.json`` + weights).

        ``pooler`` / ``mlm`` default to what the checkpoint contains. With ``strict``
        (default) any missing or unexpected tensor raises ``ValueError`` listing them.
        A task head (``BertForSequenceClassification`` / ``TokenClassification`` /
        ``MultipleChoice``'s ``classifier.*``, ``BertForQuestionAnswering``'s
        ``qa_outputs.*``) is not part of the encoder: its tensors are kept, under their
        checkpoint names, in ``model.task_head`` (``{}`` when there is none)."""
        config = BertConfig.from_json(folder)
        hf = strip_prefix(load_hf_state_dict(folder), "bert.")
        pooler = "pooler.dense.weight" in hf if pooler is None else pooler
        mlm = "cls.predictions.bias" in hf if mlm is None else mlm
        model = cls(config, pooler=pooler, mlm=mlm, recompute=recompute)
        key_map = bert_key_map(config, pooler=pooler, mlm=mlm)
        task_head = {k: v for k, v in hf.items() if k.startswith(TASK_HEADS)}
        skip = ("cls.seq_relationship.", *TASK_HEADS)  # next-sentence head: not modelled
        skip += () if pooler else ("pooler.",)
        skip += () if mlm else ("cls.predictions.",)
        state, _, _ = from_hf_state_dict(
            hf, key_map, ignored=BERT_IGNORED, ignored_prefixes=skip, strict=strict
        )
        load_checked(model, state, strict)
        model.task_head = task_head
        return model

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` in the Hugging Face layout
        (``BertModel``, or ``BertForMaskedLM`` names with an MLM head)."""
        key_map = bert_key_map(
            self.config, pooler=self.pooler is not None, mlm=self.mlm is not None
        )
        hf = to_hf_state_dict(self.state_dict(), key_map)
        arch = "BertModel"
        if self.mlm is not None:
            hf = {k if k.startswith("cls.") else "bert." + k: v for k, v in hf.items()}
            arch = "BertForMaskedLM"
        save_hf_state_dict(hf, folder)
        self.config.to_json(folder, architectures=[arch])


def _attention_mask(mask: Tensor | None, b: int, t: int, k: int) -> Tensor | None:
    """2-D padding -> ``(batch, 1, 1, keys)``; 3-D -> ``(batch, 1, seq, keys)``; all-True -> None."""
    if mask is None:
        return None
    if mask.dim() == 2:
        if mask.shape != (b, k):
            raise ValueError(
                f"a 2-D attention_mask must be (batch, keys) = {(b, k)}, got {tuple(mask.shape)}"
            )
        mask = (mask != 0)[:, None, None, :]
    elif mask.dim() == 3:
        if mask.shape != (b, t, k):
            raise ValueError(
                f"a 3-D attention_mask must be (batch, seq, keys) = {(b, t, k)}, got {tuple(mask.shape)}"
            )
        mask = (mask != 0)[:, None]
    else:
        raise ValueError(
            f"attention_mask must be (batch, keys) or (batch, seq, keys), got {tuple(mask.shape)}"
        )
    return None if bool(mask.all()) else mask
