"""Autoregressive decoding for any model that gives next-token logits: greedy, sampling
(temperature, top-k, top-p), beam search (length penalty, early stopping), batched, with
a KV cache, logits processors and prefix-tree constraints.

One loop serves every model through a small adapter (:class:`NextTokenModel`): *given
ids and a cache, return next-token logits and the new cache*. :class:`~kexue.generate.CausalLM`
adapts GPT-2 (and CPM-LM), :class:`~kexue.generate.UniLM` a BERT trained as a UniLM
seq2seq model (从语言模型到Seq2Seq：Transformer如戏，全靠Mask, 2019-09-18,
https://kexue.fm/archives/6933)::

    new = generate(CausalLM(gpt2), prompt, 32, do_sample=True, top_p=0.95)
    new = generate(UniLM(bert), source, 32, num_beams=4, eos_token_id=sep,
                   attention_mask=source_mask)

Beam search follows ``transformers``' vectorised beam search (its outputs agree with
``GPT2LMHeadModel.generate`` on the same weights): ``2·num_beams`` candidates per step so
that ``num_beams`` unfinished ones always remain, a finished hypothesis scores
``Σ log p / length ** length_penalty`` (length = generated tokens, eos included), and
``early_stopping`` is ``True`` (stop once ``num_beams`` hypotheses are finished),
``False`` (stop when the best running beam, at its current length, cannot beat the worst
finished one) or ``"never"`` (the same test at the longest length when
``length_penalty > 0``).

A constraint (:class:`Constraint`, e.g. :class:`~kexue.generate.Trie`) keeps a state per
row — for a trie the node reached — and masks the scores of every row in one tensor
step; under beam search the masked log-probabilities are renormalised, as in
Seq2Seq+前缀树 (2021-12-17, https://kexue.fm/archives/8802).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

LogitsProcessor = Callable[[Tensor, Tensor], Tensor]  # (generated (batch, t), scores (batch, vocab))
_NEG = -1.0e9  # the "impossible" score of transformers' beam search (finite, so sums stay finite)


@runtime_checkable
class NextTokenModel(Protocol):
    """The adapter protocol: given ids and a cache, return next-token logits and the new cache.

    ``model(input_ids, None, **prompt)`` encodes the prompt ``(batch, prompt)`` (``prompt``
    holds per-row tensors such as ``attention_mask``) and returns the logits for the
    first new token ``(batch, vocab)`` and a cache; ``model(next_ids (batch, 1), cache)``
    returns the logits for the token after ``next_ids``. ``reorder_cache(cache, index)``
    keeps rows ``index`` (beam search). The cache is opaque to the loop.
    """

    vocab_size: int

    def __call__(self, input_ids: Tensor, cache: Any | None, **prompt: Tensor) -> tuple[Tensor, Any]: ...

    def reorder_cache(self, cache: Any, index: Tensor) -> Any: ...


@runtime_checkable
class Constraint(Protocol):
    """A per-row decoding constraint, advanced one token at a time.

    ``start(batch_size, num_beams)`` returns the initial state, a tensor with one row per
    hypothesis ``(batch * num_beams, ...)`` (reordered with the beams by the loop);
    ``mask(state, scores)`` returns ``scores`` ``(rows, vocab)`` with forbidden tokens at
    ``-inf``; ``advance(state, tokens)`` returns the state after ``tokens`` ``(rows,)``.
    """

    def start(self, batch_size: int, num_beams: int) -> Tensor: ...

    def mask(self, state: Tensor, scores: Tensor) -> Tensor: ...

    def advance(self, state: Tensor, tokens: Tensor) -> Tensor: ...


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to ``-inf`` all logits ``(batch, vocab)`` outside the ``top_k`` largest and
    outside the nucleus: the smallest set of most likely tokens whose probability sum
    reaches ``top_p`` (the most likely token is always kept)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability mass of strictly better tokens
        drop_sorted = before >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: NextTokenModel,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    logits_processor: LogitsProcessor | Sequence[LogitsProcessor] | None = None,
    constraint: Constraint | None = None,
    generator: torch.Generator | None = None,
    **prompt: Tensor,
) -> Tensor:
    """Continue each row of ``input_ids`` ``(batch, prompt)`` by up to ``max_new_tokens``.

    Args:
        model: an adapter (:class:`NextTokenModel`), e.g. ``CausalLM(gpt2)``.
        do_sample: sample (``temperature``, ``top_k``, ``top_p`` as in
            :func:`filter_logits`) instead of taking the argmax; not with beams.
        num_beams: beam width; ``> 1`` runs beam search (``length_penalty``,
            ``early_stopping`` as in the module docstring) and returns the best beam.
        eos_token_id: a row that produced it is finished; later positions hold
            ``pad_token_id`` (default ``eos_token_id``); decoding stops when every row is.
        logits_processor: ``f(generated (batch, t), scores (batch, vocab)) -> scores``,
            applied in order before the constraint (to logits; to log-probabilities
            under beam search).
        constraint: e.g. a :class:`~kexue.generate.Trie`; its ``mask`` step runs every step.
        generator: the random generator for sampling.
        **prompt: per-row tensors for the adapter's first call (``attention_mask``, ...).

    Returns the new tokens ``(batch, n)``, ``n <= max_new_tokens``.
    """
    _check_arguments(model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                     num_beams, length_penalty, early_stopping, eos_token_id)
    processors = _as_list(logits_processor)
    pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()  # adapters are modules wrapping the model: no dropout while decoding
    try:
        if num_beams == 1:
            return _greedy_or_sample(model, input_ids, max_new_tokens, do_sample, temperature,
                                     top_k, top_p, eos_token_id, pad, processors, constraint,
                                     generator, prompt)
        return _beam_search(model, input_ids, max_new_tokens, num_beams, length_penalty,
                            early_stopping, eos_token_id, pad, processors, constraint, prompt)
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)


def _greedy_or_sample(model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                      eos, pad, processors, constraint, generator, prompt) -> Tensor:
    b = input_ids.shape[0]
    logits, cache = model(input_ids, None, **prompt)
    state = constraint.start(b, 1) if constraint is not None else None
    finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    generated = input_ids.new_zeros(b, 0)
    for step in range(max_new_tokens):
        scores = logits.float()  # (batch, vocab)
        for process in processors:
            scores = process(generated, scores)
        if state is not None:
            scores = constraint.mask(state, scores)
        if do_sample:
            probs = filter_logits(scores / temperature, top_k, top_p).softmax(dim=-1)
            next_ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_ids = scores.argmax(dim=-1)
        if eos is not None:
            next_ids = next_ids.masked_fill(finished, pad)
            finished |= next_ids == eos
        generated = torch.cat([generated, next_ids[:, None]], dim=1)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        if state is not None:
            state = constraint.advance(state, next_ids)
        logits, cache = model(next_ids[:, None], cache)
    return generated


def _beams(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` ``(batch, m)`` of ``x`` ``(batch, n, ...)`` along the beam axis."""
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


@dataclass
class _Finished:
    """The best ``k`` finished hypotheses of each example."""

    tokens: Tensor  # (batch, k, max_new_tokens)
    scores: Tensor  # (batch, k) length-penalised; -1e9 for an empty slot
    lengths: Tensor  # (batch, k)
    full: Tensor  # (batch, k) bool: the slot holds a hypothesis

    def merge(self, tokens: Tensor, scores: Tensor, length: int, ended: Tensor) -> _Finished:
        """Keep the best ``k`` of the current ones and candidates ``tokens`` / ``scores``."""
        all_scores = torch.cat([self.scores, scores], dim=1)
        best = all_scores.topk(self.scores.shape[1], dim=-1).indices
        lengths = torch.cat([self.lengths, torch.full_like(ended, length, dtype=torch.long)], dim=1)
        return _Finished(_beams(torch.cat([self.tokens, tokens], dim=1), best), all_scores.gather(1, best),
                         lengths.gather(1, best), torch.cat([self.full, ended], dim=1).gather(1, best))


def _beam_search(model, input_ids, max_new_tokens, k, length_penalty, early_stopping, eos, pad,
                 processors, constraint, prompt) -> Tensor:
    b, device = input_ids.shape[0], input_ids.device
    expand = {name: t.repeat_interleave(k, dim=0) for name, t in prompt.items()}
    logits, cache = model(input_ids.repeat_interleave(k, dim=0), None, **expand)
    state = constraint.start(b, k) if constraint is not None else None
    keep = 2 * k  # candidates per step: num_beams unfinished ones always remain
    top_k_mask = torch.arange(keep, device=device) < k  # only the best k may finish
    offset = torch.arange(b, device=device)[:, None] * k  # (batch, 1) flat row of beam 0
    running = torch.full((b, k, max_new_tokens), pad, dtype=torch.long, device=device)
    running_scores = torch.full((b, k), _NEG, device=device)
    running_scores[:, 0] = 0.0  # one live beam at first, so the beams differ
    finished = _Finished(running.clone(), torch.full((b, k), _NEG, device=device),
                         torch.zeros(b, k, dtype=torch.long, device=device),
                         torch.zeros(b, k, dtype=torch.bool, device=device))
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        logp = logits.float().log_softmax(dim=-1)  # (batch * k, vocab)
        for process in processors:
            logp = process(running[:, :, :t].reshape(b * k, t), logp)
        if state is not None:
            logp = constraint.mask(state, logp).log_softmax(dim=-1)  # renormalised (post 8802)
        vocab = logp.shape[-1]
        total = (logp.view(b, k, vocab) + running_scores[:, :, None]).view(b, k * vocab)
        cand_scores, cand = total.topk(keep, dim=-1)  # (batch, 2k)
        origin, token = cand // vocab, cand % vocab
        cand_seqs = _beams(running, origin).clone()
        cand_seqs[:, :, t] = token
        ends = token == eos if eos is not None else torch.zeros_like(token, dtype=torch.bool)
        if t == max_new_tokens - 1:
            ends = torch.ones_like(ends)
        # the best k unfinished candidates continue
        live_scores = cand_scores + ends.float() * _NEG
        live = live_scores.topk(k, dim=-1).indices  # (batch, k)
        running, running_scores = _beams(cand_seqs, live), live_scores.gather(1, live)
        parent = (origin.gather(1, live) + offset).view(-1)  # (batch * k,) flat rows kept
        # ended candidates among the best k join the finished ones if they score higher
        final = cand_scores / float(t + 1) ** length_penalty
        blocked = (finished.full.all(-1, keepdim=True) & (early_stopping is True)) | ~improvable
        final = final + (blocked | ~(ends & top_k_mask)).float() * _NEG
        finished = finished.merge(cand_seqs, final, t + 1, ends & top_k_mask)
        # can the best running beam still beat the worst finished one?
        longest = max_new_tokens if early_stopping == "never" and length_penalty > 0 else t + 1
        best_running = running_scores[:, :1] / float(longest) ** length_penalty
        worst = torch.where(finished.full, finished.scores.min(dim=-1, keepdim=True).values,
                            torch.full_like(finished.scores, _NEG))
        improvable = improvable & (best_running > worst).any(dim=-1, keepdim=True)
        if not bool(improvable.any()) or bool(ends.all()) or (
                bool(finished.full.all()) and early_stopping is True):
            break
        next_ids = running[:, :, t].reshape(-1)
        cache = model.reorder_cache(cache, parent)
        if state is not None:
            state = constraint.advance(state[parent], next_ids)
        logits, cache = model(next_ids[:, None], cache)
    return finished.tokens[:, 0, : int(finished.lengths[:, 0].max())]


def _as_list(processors) -> list[LogitsProcessor]:
    if processors is None:
        return []
    if callable(processors):
        return [processors]
    out = list(processors)
    if not all(callable(p) for p in out):
        raise ValueError("logits_processor must be a callable or a sequence of callables")
    return out


def _check_arguments(model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                     num_beams, length_penalty, early_stopping, eos_token_id) -> None:
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        got = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be an integer (batch, prompt) tensor, got {got}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must have at least one row and one token, got {tuple(input_ids.shape)}")
    vocab = model.vocab_size
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= vocab:
        raise ValueError(f"input_ids must be in [0, {vocab}) (the vocabulary), got values in [{lo}, {hi}]")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be an int > 0, got {max_new_tokens!r}")
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams <= 0:
        raise ValueError(f"num_beams must be an int > 0, got {num_beams!r}")
    if do_sample and num_beams > 1:
        raise ValueError(f"sampling with beams is not supported: do_sample=True, num_beams={num_beams}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if not isinstance(length_penalty, (int, float)):
        raise ValueError(f"length_penalty must be a number, got {length_penalty!r}")  # noqa: TRY004
    if eos_token_id is not None and not 0 <= eos_token_id < vocab:
        raise ValueError(f"eos_token_id must be in [0, {vocab}), got {eos_token_id}")
