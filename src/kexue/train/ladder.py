"""Ladder Side-Tuning: train a small side network on a frozen backbone's hidden states.

Post: Ladder Side-Tuning：预训练模型的"过墙梯" (2022-06-20, https://kexue.fm/archives/9138);
paper: Sung, Cho and Bansal, "LST: Ladder Side-Tuning for Parameter and Memory Efficient
Transfer Learning" (NeurIPS 2022).

Backpropagation goes as deep as the trainable parameter nearest the input, so Adapters
and P-tuning, though they train few parameters, still backpropagate through the whole
model. LST puts every trainable parameter in a side network ("ladder") that *reads* the
backbone's hidden states: the backbone runs under ``torch.no_grad()`` in eval mode, keeps
no activation for backward and gets no gradient.

With backbone hidden states ``h_0`` (embeddings), ``h_1 .. h_N`` (layers), side width
``d_s = d / reduction`` and ``L`` side layers reading backbone layers
``k_i = floor(i N / L)`` (the author's ``3, 6, 9, 12`` for ``N = 12``, ``L = 4``)::

    x_0 = h_0 W_0                                   # down-projection d -> d_s, no bias
    x_i = Block_i(mu_i h_{k_i} W_i + (1 - mu_i) x_{i-1}),   mu_i = sigmoid(alpha_i / T)

``Block`` is a post-LN Transformer block of width ``d_s`` with an FFN of ``4 d_s`` (the
author's "Attention + FFN" ladder; the paper uses Adapter-style MLPs), ``mu_i`` the paper's
gate (``alpha_i = 0``, ``T = 0.1``). Weights are drawn from the author's truncated normal
``1.1368 / sqrt(fan_in) / sqrt(L)`` (his "DeepNorm idea"); the paper initialises by pruning
the backbone instead. Trainable parameters (:func:`ladder_parameter_count`)::

    (L + 1) d d_s  +  L (12 d_s^2 + 13 d_s)  +  L

about 1.3M for BERT-base with ``d_s = 128``, ``L = 4``: the post's "about 1.2% of base".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from kexue.nn.masks import padding_mask
from kexue.nn.transformer import TransformerBlock

FFN_RATIO = 4


def ladder_parameter_count(hidden_size: int, side_hidden: int, num_layers: int) -> int:
    """Trainable parameters of a :class:`LadderSideNetwork`: ``num_layers + 1``
    down-projections ``hidden_size x side_hidden``, ``num_layers`` blocks of
    ``12 d_s^2 + 13 d_s`` (attention ``4 d_s^2 + 4 d_s``, FFN ``8 d_s^2 + 5 d_s``, two
    LayerNorms ``4 d_s``) and one gate per layer."""
    d_s = side_hidden
    return (num_layers + 1) * hidden_size * d_s + num_layers * (12 * d_s**2 + 13 * d_s + 1)


class LadderSideNetwork(nn.Module):
    """A side network on a frozen backbone (see the module doc).

    Args:
        backbone: any encoder called as ``backbone(input_ids, attention_mask=...,
            output_hidden_states=True)`` whose output has ``hidden_states`` (embeddings
            first, then each layer), e.g. :class:`kexue.models.Bert` or transformers'
            ``BertModel``. It is frozen and kept in eval mode.
        reduction: ``d / d_s``, the backbone width over the side width (paper: 8).
        num_layers: side layers ``L`` (default: one per backbone layer, as in the paper).
        num_heads: attention heads of the side blocks.
        dropout: dropout inside the side blocks.
        temperature: ``T`` of the gates ``sigmoid(alpha / T)``.

    ``forward(input_ids, attention_mask=None, **backbone_kwargs)`` -> side hidden states
    ``(batch, seq, d_s)``; put a task head on them.
    """

    def __init__(self, backbone: nn.Module, reduction: int = 8, num_layers: int | None = None,
                 num_heads: int = 4, dropout: float = 0.1, temperature: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        n_states, hidden = self._probe()
        if reduction < 1 or hidden % reduction:
            raise ValueError(f"reduction must be a positive divisor of the backbone width "
                             f"{hidden}, got {reduction}")
        num_layers = n_states - 1 if num_layers is None else num_layers
        if not 1 <= num_layers <= n_states - 1:
            raise ValueError(f"num_layers must lie in [1, {n_states - 1}] (the backbone's "
                             f"layers), got {num_layers}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        side = hidden // reduction
        if side % num_heads:
            raise ValueError(f"num_heads must divide the side width {side}, got {num_heads}")
        self.hidden_size, self.temperature = side, temperature
        # backbone states read: embeddings, then floor(i N / L) for i = 1..L
        taps = [0] + [i * (n_states - 1) // num_layers for i in range(1, num_layers + 1)]
        self.register_buffer("taps", torch.tensor(taps), persistent=False)
        self.down = nn.Parameter(torch.empty(num_layers + 1, hidden, side))  # (L+1, d, d_s)
        self.gates = nn.Parameter(torch.zeros(num_layers))  # alpha_i; mu_i = sigmoid(alpha_i / T)
        self.layers = nn.ModuleList(
            TransformerBlock(side, num_heads, FFN_RATIO * side, norm="post", dropout=dropout,
                             attention_dropout=dropout) for _ in range(num_layers))
        self._init_weights(num_layers)

    def _probe(self) -> tuple[int, int]:
        """Number and width of the backbone's hidden states, from a one-token forward."""
        device = next(self.backbone.parameters()).device
        ids = torch.zeros(1, 1, dtype=torch.long, device=device)
        states = self.backbone_states(ids, torch.ones_like(ids))
        return len(states), states[0].shape[-1]

    def _init_weights(self, num_layers: int) -> None:
        """The author's truncated normal, std ``1.1368 / sqrt(fan_in) / sqrt(L)`` (1.1368
        undoes the truncation at two standard deviations); biases zero."""
        def init(weight: Tensor, fan_in: int) -> None:
            std = 1.13684723 / math.sqrt(fan_in) / math.sqrt(num_layers)
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)

        init(self.down, self.down.shape[1])
        for module in self.layers.modules():
            if isinstance(module, nn.Linear):
                init(module.weight, module.in_features)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> LadderSideNetwork:
        """Set the side network's mode; the backbone stays in eval mode (no dropout)."""
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def backbone_states(self, input_ids: Tensor, attention_mask: Tensor,
                        **kwargs: Any) -> tuple[Tensor, ...]:
        """The backbone's hidden states, without autograd: ``N + 1`` of ``(batch, seq, d)``."""
        out = self.backbone(input_ids, attention_mask=attention_mask, output_hidden_states=True,
                            **kwargs)
        states = getattr(out, "hidden_states", None)
        if not states:
            raise ValueError(f"the backbone must return hidden_states (embeddings, then each "
                             f"layer) when called with output_hidden_states=True, got "
                             f"{type(out).__name__} without them")
        return tuple(states)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                **backbone_kwargs: Any) -> Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.backbone_states(input_ids, attention_mask, **backbone_kwargs)
        h = torch.stack([states[i] for i in self.taps.tolist()])  # (L+1, batch, seq, d)
        ladder = torch.einsum("lbtd,lds->lbts", h, self.down)  # (L+1, batch, seq, d_s)
        mu = torch.sigmoid(self.gates / self.temperature)  # (L,)
        mask = padding_mask(attention_mask)  # (batch, 1, seq)
        x = ladder[0]  # (batch, seq, d_s)
        for i, block in enumerate(self.layers):
            x, _ = block(mu[i] * ladder[i + 1] + (1 - mu[i]) * x, mask)
        return x


__all__ = ["LadderSideNetwork", "ladder_parameter_count"]
