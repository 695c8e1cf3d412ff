"""Adapters that turn kexue models into :class:`~kexue.generate.decoding.NextTokenModel`:
given ids and a cache, next-token logits and the new cache.

- :class:`CausalLM`: a decoder such as :class:`~kexue.models.GPT2` whose forward takes
  ``past_key_values`` / ``use_cache`` / ``attention_mask`` and returns ``.logits`` and
  ``.past_key_values`` (left-padded prompts: pass their 0/1 ``attention_mask``).
- :class:`UniLM`: a :class:`~kexue.models.Bert` with an MLM head trained as a UniLM
  seq2seq model (从语言模型到Seq2Seq：Transformer如戏，全靠Mask, 2019-09-18,
  https://kexue.fm/archives/6933). The prompt ``[CLS] source [SEP] (target prefix)`` is
  right-padded; ``token_type_ids`` 0 on the source and 1 on a target prefix. Under the
  UniLM mask the source never sees the target and a target token only sees earlier
  tokens, so caching keys and values is exact: each step encodes one new target token
  (segment 1, position = tokens so far) against the padding-masked cache.

Both are ``nn.Module`` s wrapping the model (``generate`` puts them in eval mode while
decoding). ``use_cache=False`` re-encodes the whole sequence at every step: the
reference the cached path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from kexue.models import Bert
from kexue.nn import unilm_mask


def _take(value: Any, index: Tensor) -> Any:
    """Rows ``index`` of every tensor in a (nested tuple of) tensors; None stays None."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    return tuple(_take(v, index) for v in value)


class _Adapter(nn.Module):
    def __init__(self, model: nn.Module, use_cache: bool):
        super().__init__()
        self.model = model
        self.use_cache = use_cache
        self.vocab_size = int(model.config.vocab_size)
        self.train(model.training)

    def reorder_cache(self, cache: Any, index: Tensor) -> Any:
        """Keep rows ``index`` ``(rows,)`` of every tensor in the cache."""
        return replace(cache, **{f.name: _take(getattr(cache, f.name), index) for f in fields(cache)})


@dataclass
class CausalLMCache:
    past_key_values: tuple | None  # per layer (keys, values), or None without caching
    ids: Tensor | None  # (batch, seq) everything so far, kept only without caching
    attention_mask: Tensor | None  # (batch, seq) 0/1 over all tokens so far


class CausalLM(_Adapter):
    """Adapter for a causal LM: ``forward(ids, past_key_values, use_cache, attention_mask)``
    returning ``.logits`` ``(batch, seq, vocab)`` and ``.past_key_values``."""

    def __init__(self, model: nn.Module, *, use_cache: bool = True):
        super().__init__(model, use_cache)

    def forward(self, input_ids: Tensor, cache: CausalLMCache | None,
                attention_mask: Tensor | None = None) -> tuple[Tensor, CausalLMCache]:
        if cache is None:
            mask, ids, past = attention_mask, input_ids, None
        else:
            mask = cache.attention_mask
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            ids, past = input_ids, cache.past_key_values
            if not self.use_cache:
                ids = torch.cat([cache.ids, input_ids], dim=1)
        out = self.model(ids, past, use_cache=self.use_cache, attention_mask=mask)
        new = CausalLMCache(out.past_key_values if self.use_cache else None,
                            None if self.use_cache else ids, mask)
        return out.logits[:, -1], new


@dataclass
class UniLMCache:
    past_key_values: tuple | None  # per layer (keys, values), or None without caching
    keys: Tensor  # (batch, seq) bool: real (non-padding) positions so far
    lengths: Tensor  # (batch,) real tokens so far = the next token's position
    ids: Tensor | None  # (batch, seq) everything so far, kept only without caching
    segments: Tensor | None  # (batch, seq) segment ids so far, kept only without caching
    positions: Tensor | None  # (batch, seq) position ids so far, kept only without caching


class UniLM(_Adapter):
    """Adapter for UniLM seq2seq decoding with a :class:`~kexue.models.Bert` (``mlm=True``).

    The prompt call takes ``attention_mask`` (0 = right padding) and ``token_type_ids``
    (default all 0: the whole prompt is the source)."""

    def __init__(self, model: Bert, *, use_cache: bool = True):
        if not isinstance(model, Bert) or model.mlm is None:
            raise ValueError("UniLM needs a kexue Bert with an MLM head (Bert(..., mlm=True))")
        super().__init__(model, use_cache)

    def forward(self, input_ids: Tensor, cache: UniLMCache | None,
                attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, UniLMCache]:
        if cache is None:
            return self._prompt(input_ids, attention_mask, token_type_ids)
        b = input_ids.shape[0]
        keys = torch.cat([cache.keys, torch.ones(b, 1, dtype=torch.bool, device=cache.keys.device)], 1)
        new_seg = torch.ones_like(input_ids)
        new_pos = cache.lengths[:, None]  # (batch, 1)
        if self.use_cache:
            out = self.model(input_ids, keys, token_type_ids=new_seg, position_ids=new_pos,
                             past_key_values=cache.past_key_values, use_cache=True)
            return out.logits[:, -1], UniLMCache(out.past_key_values, keys, cache.lengths + 1,
                                                 None, None, None)
        ids = torch.cat([cache.ids, input_ids], dim=1)
        seg = torch.cat([cache.segments, new_seg], dim=1)
        pos = torch.cat([cache.positions, new_pos], dim=1)
        out = self.model(ids, unilm_mask(seg, keys.long()), token_type_ids=seg, position_ids=pos)
        return out.logits[:, -1], UniLMCache(None, keys, cache.lengths + 1, ids, seg, pos)

    def _prompt(self, ids: Tensor, attention_mask: Tensor | None,
                token_type_ids: Tensor | None) -> tuple[Tensor, UniLMCache]:
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask
        seg = torch.zeros_like(ids) if token_type_ids is None else token_type_ids
        for name, t in (("attention_mask", mask), ("token_type_ids", seg)):
            if t.shape != ids.shape:
                raise ValueError(f"{name} must be {tuple(ids.shape)}, got {tuple(t.shape)}")
        lengths = mask.long().sum(dim=1)  # (batch,)
        if bool((lengths == 0).any()):
            raise ValueError("attention_mask has a row with no tokens")
        positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        out = self.model(ids, unilm_mask(seg, mask), token_type_ids=seg, position_ids=positions,
                         use_cache=self.use_cache)
        rows = torch.arange(ids.shape[0], device=ids.device)
        logits = out.logits[rows, lengths - 1]  # after the last real token, (batch, vocab)
        keys = mask != 0
        if self.use_cache:
            return logits, UniLMCache(out.past_key_values, keys, lengths, None, None, None)
        return logits, UniLMCache(None, keys, lengths, ids, seg, positions)
