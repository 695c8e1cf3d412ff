"""GPT-2 (and CPM-LM, which is GPT-2): a pre-LN decoder with learned positions, a tied
output head, a KV cache; with ``position_embedding_type="rope"``, the same decoder
with rotary positions (any :class:`~kexue.nn.RoPE` variant, swappable at inference
time). Decoding (greedy, sampling, beam search) is :func:`kexue.generate.generate`
with the :class:`kexue.generate.CausalLM` adapter.

跟风玩玩目前最大的中文GPT2模型（bert4keras） (2020-11-20, https://kexue.fm/archives/7912):
CPM-LM is OpenAI's GPT-2 architecture — pre-LayerNorm blocks and a final LayerNorm,
learned absolute positions, input and output embeddings tied, tanh-GELU. Its
tokenizer is :class:`kexue.data.CPMTokenizer`.

Padded batches (a 0/1 ``attention_mask``) run unpadded as in :class:`~kexue.models.Bert`:
embeddings, blocks and the head on the real tokens, attention in the padded layout,
logits zero at the padding positions (``unpad=False`` computes on the padding too).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.models.bert import check_input_ids
from kexue.models.hf import (
    GPT2_IGNORED,
    GPT2_IGNORED_SUFFIXES,
    GPT2Config,
    from_hf_state_dict,
    gpt2_key_map,
    load_checked,
    load_hf_state_dict,
    save_hf_state_dict,
    strip_prefix,
    to_hf_state_dict,
)
from kexue.nn.attention import KVCache
from kexue.nn.init import normal_init_
from kexue.nn.packing import real_tokens
from kexue.nn.position import LearnedPositionEmbedding
from kexue.nn.rope import RoPE
from kexue.nn.transformer import Transformer

Cache = tuple[KVCache, ...]


@dataclass
class GPT2Output:
    logits: Tensor  # (batch, seq, vocab)
    past_key_values: Cache | None = None  # per layer (keys, values) when use_cache


class GPT2(nn.Module):
    """GPT-2 language model: ``logits = LN_f(blocks(wte[x] + wpe[p])) wteᵀ``.

    With ``position_embedding_type="rope"`` there is no ``wpe`` table: every attention
    layer rotates q and k by ``self.rope`` (a :class:`~kexue.nn.RoPE` of
    ``config.rope_theta`` and ``config.rope_options``), and ``forward(..., rope=...)``
    takes another variant for one call (length extrapolation without retraining).

    Args:
        config: a :class:`GPT2Config` (or keyword overrides of the default one).
        attention: extra attention options (``key_size``, ``talking_heads``, ``scale``).
        recompute: checkpoint each block while training.
        unpad: run token-wise layers on the real tokens only when the mask marks
            padding (see :func:`kexue.nn.real_tokens`).
    """

    def __init__(
        self,
        config: GPT2Config | None = None,
        *,
        attention: dict[str, Any] | None = None,
        recompute: bool = False,
        unpad: bool = True,
        **overrides: Any,
    ):
        super().__init__()
        config = dataclasses.replace(config or GPT2Config(), **overrides)
        config.attention = {**config.attention, **(attention or {})}
        config.check()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = None
        if config.position_embedding_type == "absolute":
            self.wpe = LearnedPositionEmbedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embedding_dropout_prob)
        self.blocks = Transformer(
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.inner_size,
            norm="pre",
            activation=config.hidden_act,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            attention=config.attention,
            recompute=recompute,
        )
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.rope = None
        if config.position_embedding_type == "rope":
            key_size = self.blocks.layers[0].attn.key_size
            self.rope = RoPE(key_size, config.rope_theta, **config.rope_options)
        self.unpad = unpad
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        normal_init_(module, self.config.initializer_range)

    def forward(
        self,
        input_ids: Tensor,
        past_key_values: Cache | None = None,
        use_cache: bool = False,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        rope: RoPE | None = None,
        is_causal: bool = True,
    ) -> GPT2Output:
        """``input_ids`` ``(batch, seq)`` -> :class:`GPT2Output` with the logits ``(batch,
        seq, vocab)`` and, when ``use_cache``, the updated cache.

        ``attention_mask``: ``(batch, past + seq)`` 0/1 marks padding keys (for
        left-padded batches; positions then count real tokens only), or a boolean
        ``(batch|1, seq, past + seq)`` mask, True = may attend (e.g.
        ``kexue.nn.window_mask(n, w)[None]``), combined with the causal mask.
        ``rope``: with RoPE positions, a :class:`~kexue.nn.RoPE` to use instead of
        ``self.rope`` for this call (e.g. ``RoPE(d, variant="ntk", train_length=L)``).
        ``is_causal=False`` lets every position see every other (the same stack as a
        bidirectional masked LM). With ``self.unpad`` and padding in the mask, the logits
        are zero at the padding positions."""
        check_input_ids(input_ids, self.config.vocab_size)
        b, t = input_ids.shape
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if rope is not None and self.rope is None:
            raise ValueError("rope= needs a model with position_embedding_type='rope'")
        mask = None
        if attention_mask is not None and attention_mask.dim() == 3:
            mask = _boolean_mask(attention_mask, b, t, past + t)
        elif attention_mask is not None:
            if attention_mask.shape != (b, past + t):
                raise ValueError(
                    f"attention_mask must be (batch, past + seq) = {(b, past + t)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            keep = attention_mask != 0
            if position_ids is None:  # count real tokens only (left padding)
                position_ids = (keep.long().cumsum(dim=1) - 1).clamp(min=0)[:, past:]
            mask = None if bool(keep.all()) else keep[:, None, None, :]  # (batch, 1, 1, keys)
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device)[None]  # (1, seq)
        packing = real_tokens(mask, b, t) if self.unpad else None
        x = self.wte(input_ids)  # (batch, seq, hidden): padded, so hooks see the usual shape
        rotary = None
        if self.rope is None:
            x = x + self.wpe(position_ids)
        else:
            rotary = (rope or self.rope)(position_ids, x.dtype)
        x = self.drop(x if packing is None else packing.pack(x))  # (n, hidden) when packed
        x, presents, _ = self.blocks(
            x, mask, is_causal=is_causal, rotary=rotary,
            past_key_values=past_key_values, use_cache=use_cache, packing=packing,
        )  # fmt: skip
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head, (batch, seq, vocab)
        if packing is not None:
            logits = packing.unpack(logits)  # zeros at the padding
        return GPT2Output(logits, presents)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, *, recompute: bool = False, strict: bool = True
    ) -> GPT2:
        """Load a Hugging Face ``GPT2LMHeadModel`` / ``GPT2Model`` folder."""
        config = GPT2Config.from_json(folder)
        hf = strip_prefix(load_hf_state_dict(folder), "transformer.")
        model = cls(config, recompute=recompute)
        state, _, _ = from_hf_state_dict(
            hf,
            gpt2_key_map(config),
            ignored=GPT2_IGNORED,
            ignored_suffixes=GPT2_IGNORED_SUFFIXES,
            strict=strict,
        )
        load_checked(model, state, strict)
        return model

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` as ``GPT2LMHeadModel`` does."""
        hf = to_hf_state_dict(self.state_dict(), gpt2_key_map(self.config))
        save_hf_state_dict({"transformer." + k: v for k, v in hf.items()}, folder)
        self.config.to_json(folder, architectures=["GPT2LMHeadModel"])


def _boolean_mask(mask: Tensor, b: int, t: int, k: int) -> Tensor:
    """A boolean ``(batch|1, seq, keys)`` mask -> ``(batch|1, 1, seq, keys)``."""
    if mask.dtype != torch.bool or mask.shape[0] not in (1, b) or mask.shape[1:] != (t, k):
        raise ValueError(
            f"a 3-D attention_mask must be boolean (batch|1, seq, past + seq) = ({b}|1, {t}, {k}), "
            f"got {tuple(mask.shape)} {mask.dtype}"
        )
    return mask[:, None]

