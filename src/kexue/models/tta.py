"""T-TA: a masked LM that predicts every token from all the others in one pass.

修改Transformer结构，设计一个更快更好的MLM模型 (2020-08-07, https://kexue.fm/archives/7661),
after Shin et al., "Fast and Accurate Deep Bidirectional Language Representations for
Unsupervised Learning" (ACL 2020). A BERT predicts ``p(x_i | x \\ x_i)`` only where it
put a ``[MASK]``, so a pseudo-log-likelihood ``PLL(x) = Σ_i log p(x_i | x \\ x_i)`` costs
``n`` forward passes. T-TA gets all ``n`` terms from one pass::

    BERT:  Q_0 = E + P,  Q_k = Attn(Q_{k-1}, Q_{k-1}, Q_{k-1})
    T-TA:  Q_0 = P,      Q_k = Attn(Q_{k-1}, E + P, E + P),  key i hidden from query i

Queries start from positions only, keys and values are the *input* embeddings in every
layer (a previous layer's output at ``j`` would already hold ``x_i``), and the diagonal
of the attention is masked, so output ``i`` never depends on token ``i``. Residuals,
LayerNorms (post-LN, as BERT) and feed-forward layers act on the query stream only; the
MLM head is BERT's, tied to the word embeddings.

:func:`masked_pseudo_log_likelihood` is the ``n``-pass reference for any BERT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue.models.bert import Bert, MLMHead, check_input_ids
from kexue.models.hf import BertConfig
from kexue.nn.init import normal_init_
from kexue.nn.position import LearnedPositionEmbedding
from kexue.nn.transformer import FeedForward


@dataclass
class TTAOutput:
    logits: Tensor  # (batch, seq, vocab): position i predicts x_i from the other tokens
    last_hidden_state: Tensor  # (batch, seq, hidden)


class TTABlock(nn.Module):
    """``h = LN(h + Attn(q=h, k=v=x))``, ``h = LN(h + FFN(h))``; ``x`` is the fixed input."""

    def __init__(self, config: BertConfig):
        super().__init__()
        h, heads = config.hidden_size, config.num_attention_heads
        if h % heads:
            raise ValueError(f"hidden_size ({h}) must be divisible by num_attention_heads ({heads})")
        self.heads, self.head_size = heads, h // heads
        self.query = nn.Linear(h, h)
        self.key_value = nn.Linear(h, 2 * h)
        self.out = nn.Linear(h, h)
        self.ln1 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.ffn = FeedForward(h, config.intermediate_size, config.hidden_act)
        self.ln2 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(self, h: Tensor, x: Tensor, mask: Tensor, visible: Tensor) -> Tensor:
        """``h`` query stream, ``x`` input embeddings ``(batch, seq, hidden)``; ``mask``
        ``(batch, 1, seq, seq)`` True = may attend; ``visible`` ``(batch, 1, seq, 1)``
        False for a query that may see no key (its attention output is 0)."""
        b, t, _ = h.shape
        q = self.query(h).view(b, t, self.heads, self.head_size).transpose(1, 2)
        k, v = self.key_value(x).view(b, t, 2, self.heads, self.head_size).permute(2, 0, 3, 1, 4)
        p = self.attention_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (b, heads, t, hs)
        a = (a * visible).transpose(1, 2).reshape(b, t, -1)
        h = self.ln1(h + self.dropout(self.out(a)))
        return self.ln2(h + self.dropout(self.ffn(h)))


class TTA(nn.Module):
    """T-TA (Transformer-based Text Autoencoder), sized by a :class:`BertConfig`.

    Args:
        config: a :class:`BertConfig` (or keyword overrides of the default one); the
            attention options, token types and position kinds other than learned
            absolute positions do not apply.
        diagonal_mask: hide key ``i`` from query ``i`` (pre-training, scoring); turn off
            for fine-tuning on a downstream task.
    """

    def __init__(self, config: BertConfig | None = None, *, diagonal_mask: bool = True,
                 **overrides: Any):
        super().__init__()
        config = dataclasses.replace(config or BertConfig(), **overrides)
        config.check()
        self.config, self.diagonal_mask = config, diagonal_mask
        h = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, h)
        self.position = LearnedPositionEmbedding(config.max_position_embeddings, h)
        self.norm_input = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.norm_query = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(TTABlock(config) for _ in range(config.num_hidden_layers))
        self.mlm = MLMHead(config)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        normal_init_(module, self.config.initializer_range)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> TTAOutput:
        """``input_ids`` ``(batch, seq)``, ``attention_mask`` 0/1 ``(batch, seq)`` (0 = padding)."""
        check_input_ids(input_ids, self.config.vocab_size)
        b, t = input_ids.shape
        if attention_mask is not None and attention_mask.shape != (b, t):
            raise ValueError(f"attention_mask must be (batch, seq) = {(b, t)}, got {tuple(attention_mask.shape)}")
        positions = self.position(torch.arange(t, device=input_ids.device).expand(b, t))
        x = self.dropout(self.norm_input(self.word(input_ids) + positions))  # keys / values: E + P
        h = self.dropout(self.norm_query(positions))  # queries: P only
        keys = torch.ones(b, t, dtype=torch.bool, device=input_ids.device)
        if attention_mask is not None:
            keys = attention_mask != 0
        mask = keys[:, None, None, :].expand(b, 1, t, t)
        if self.diagonal_mask:
            mask = mask & ~torch.eye(t, dtype=torch.bool, device=input_ids.device)
        visible = mask.any(dim=-1, keepdim=True)  # a length-1 row sees nothing: output 0, not NaN
        mask = mask | ~visible
        for layer in self.layers:
            h = layer(h, x, mask, visible)
        return TTAOutput(self.mlm(h, self.word.weight), h)

    def pseudo_log_likelihood(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """``Σ_i log p(x_i | x \\ x_i)`` over the real tokens of each row, one pass: ``(batch,)``."""
        logp = self(input_ids, attention_mask).logits.float().log_softmax(dim=-1)
        token = logp.gather(2, input_ids[..., None]).squeeze(2)  # (batch, seq)
        if attention_mask is not None:
            token = token * (attention_mask != 0)
        return token.sum(dim=1)


def masked_pseudo_log_likelihood(model: Bert, input_ids: Tensor, mask_token_id: int,
                                 attention_mask: Tensor | None = None,
                                 batch_size: int = 256) -> Tensor:
    """``Σ_i log p(x_i | x with [MASK] at i)`` with a masked LM (``Bert(mlm=True)``): one
    masked copy per real token, ``n`` passes per row, ``batch_size`` copies at a time; the
    MLM head runs at the masked position of each copy only. Returns ``(batch,)``."""
    check_input_ids(input_ids, model.config.vocab_size)
    b = input_ids.shape[0]
    keys = torch.ones_like(input_ids) if attention_mask is None else (attention_mask != 0).long()
    row, pos = keys.nonzero(as_tuple=True)  # one copy per real token
    out = torch.zeros(b, dtype=torch.float32, device=input_ids.device)
    for i in range(0, len(row), batch_size):
        r, p = row[i : i + batch_size], pos[i : i + batch_size]
        ids = input_ids[r].clone()
        ids[torch.arange(len(r)), p] = mask_token_id
        at = torch.zeros_like(ids, dtype=torch.bool)
        at[torch.arange(len(r)), p] = True
        logits = model(ids, keys[r], mlm_positions=at).logits.float()  # (copies, vocab)
        token = logits.log_softmax(dim=-1).gather(1, input_ids[r, p][:, None]).squeeze(1)
        out.index_add_(0, r, token)
    return out
