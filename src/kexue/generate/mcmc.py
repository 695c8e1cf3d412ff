"""Constrained text generation by MCMC: Metropolis–Hastings with CGMH's replace / insert /
delete proposals drawn from a masked LM, and simulated annealing.

The series 【搜出来的文本】: （一）从文本生成到搜索采样 (2021-01-07,
https://kexue.fm/archives/8062), （二）从MCMC到模拟退火 (2021-01-14,
https://kexue.fm/archives/8084), （三）基于BERT的文本采样 (2021-01-22,
https://kexue.fm/archives/8119), （四）通过增、删、改来用词造句 (2021-02-25,
https://kexue.fm/archives/8194).

Write the goal as an unnormalised target ``ρ(x)`` — e.g. ``ρ(x) = p_LM(x)^γ · χ(x ⊇
keywords)`` — and sample from it (or, annealed, maximise it). One Metropolis–Hastings
step from sentence ``x`` of length ``l``:

1. pick an operation with probability ``P_op(x)`` (1/3 each by default, renormalised
   over the ones possible at ``x``: no insert at ``max_length``, no delete at
   ``min_length``, no replace / delete when every position is a protected keyword);
2. pick a position: one of the ``m(x)`` unprotected tokens (replace, delete) or one of
   the ``s(x)`` insertion slots (the ``l + 1`` gaps, minus those inside a keyword);
3. the masked LM reads the context ``z`` — ``x`` with ``[MASK]`` at the position
   (replace, delete) or inserted at the slot (insert) — and gives
   ``q(· | z)`` (optionally its ``top_k``); replace and insert draw the new token from it;
4. accept ``y`` with probability ``min(1, A)``, where at temperature ``τ``::

       A = (ρ(y) / ρ(x))^(1/τ) · q(x ← y) / q(y ← x)
       q_replace(y ← x) = P_rep(x) / m(x) · q(y_i | z)       reverse: the same with x_i
       q_insert(y ← x)  = P_ins(x) / s(x) · q(y_i | z)       reverse: P_del(y) / m(y)
       q_delete(y ← x)  = P_del(x) / m(x)                     reverse: P_ins(y) / s(y) · q(x_i | z)

   (the reverse of a delete re-inserts ``x_i`` into ``y`` at the same slot, whose context
   is again ``z``). Protected keyword tokens are never replaced or deleted and nothing is
   inserted inside a keyword, so every state keeps the keywords (``χ = 1`` throughout). With ``τ = 1`` the chain's stationary
   distribution is ``ρ`` normalised (detailed balance); lowering ``τ`` (simulated
   annealing) concentrates it on the maximum of ``ρ``.

All chains of a batch take one step together: one masked-LM call and one call of the
score for the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

REPLACE, INSERT, DELETE = 0, 1, 2
OPERATIONS = ("replace", "insert", "delete")

MaskedLM = Callable[[Tensor, Tensor], Tensor]  # (ids, attention_mask) (n, L) -> logits (n, L, V)
Score = Callable[[Tensor, Tensor], Tensor]  # (ids (n, L), lengths (n,)) -> log ρ (n,)


@dataclass
class Chains:
    """A batch of MCMC states: ``ids`` ``(n, max_length)`` (padding after ``lengths``),
    ``protected`` ``(n, max_length)`` keyword tokens, ``glued`` ``(n, max_length)`` tokens
    joined to the one before them (no insertion between: the inside of a keyword), and
    ``log_score`` = log ρ ``(n,)``."""

    ids: Tensor
    lengths: Tensor
    protected: Tensor
    glued: Tensor
    log_score: Tensor

    def texts(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.ids, self.lengths.tolist())]


def annealing_schedule(steps: int, start: float = 1.0, end: float = 0.01) -> Tensor:
    """Geometric cooling ``τ_t = start · (end / start)^(t / (steps - 1))``, ``(steps,)``."""
    if steps <= 0 or not 0 < end <= start:
        raise ValueError(f"need steps > 0 and 0 < end <= start, got {steps}, {start}, {end}")
    if steps == 1:
        return torch.tensor([float(start)])
    return start * (end / start) ** torch.linspace(0, 1, steps, dtype=torch.float64)


class CGMH:
    """Metropolis–Hastings over token sequences with masked-LM proposals (CGMH).

    Args:
        mlm: ``mlm(ids, attention_mask) -> logits (n, L, vocab)``, e.g.
            ``lambda ids, mask: bert(ids, mask).logits``.
        score: ``score(ids, lengths) -> log ρ (n,)``, e.g. ``γ ·`` :func:`sentence_log_prob`.
        mask_token_id: the ``[MASK]`` id the masked LM was trained with.
        pad_token_id: the id after each sequence's end.
        banned_token_ids: never proposed (special tokens).
        top_k: propose only among the ``top_k`` most likely tokens (renormalised).
        op_probs: base probabilities of replace, insert, delete.
        min_length, max_length: lengths a state may take.
    """

    def __init__(self, mlm: MaskedLM, score: Score, *, mask_token_id: int, pad_token_id: int,
                 banned_token_ids: Sequence[int] = (), top_k: int | None = None,
                 op_probs: Sequence[float] = (1 / 3, 1 / 3, 1 / 3), min_length: int = 1,
                 max_length: int = 32):
        if len(op_probs) != 3 or min(op_probs) < 0 or sum(op_probs) <= 0:
            raise ValueError(f"op_probs must be 3 non-negative numbers (replace, insert, delete), got {op_probs}")
        if not 1 <= min_length <= max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        self.mlm, self.score = mlm, score
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
        self.banned = torch.tensor(sorted({*banned_token_ids, mask_token_id, pad_token_id}))
        self.top_k = top_k
        self.op_probs = torch.tensor(op_probs, dtype=torch.float64)
        self.min_length, self.max_length = min_length, max_length

    # ------------------------------------------------------------------ states

    def init(self, sequences: Sequence[Sequence[int]], protected: Sequence[Sequence[bool]] | None = None,
             glued: Sequence[Sequence[bool]] | None = None, vocab_size: int | None = None) -> Chains:
        """Chains starting at ``sequences`` (e.g. the keywords in order), with ``protected``
        tokens (default: all of them) and ``glued`` tokens (default: none)."""
        if len(sequences) == 0:
            raise ValueError("sequences must hold at least one starting sequence")
        width, pad = self.max_length, self.pad_token_id
        for i, seq in enumerate(sequences):
            if not self.min_length <= len(seq) <= width:
                raise ValueError(f"sequences[{i}] has length {len(seq)}, expected "
                                 f"{self.min_length}..{width}")
        keep = [[True] * len(s) for s in sequences] if protected is None else protected
        joined = [[False] * len(s) for s in sequences] if glued is None else glued
        ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in sequences], dtype=torch.long)
        mask, join = (torch.tensor([list(map(bool, k)) + [False] * (width - len(k)) for k in flags])
                      for flags in (keep, joined))
        if mask.shape != ids.shape or join.shape != ids.shape:
            raise ValueError("protected and glued must give one flag per token of each sequence")
        if bool((join & ~mask).any()) or bool(join[:, 0].any()):
            raise ValueError("glued tokens must be protected and follow another token")
        stuck = (mask.sum(dim=1) == width).nonzero()
        if len(stuck):
            raise ValueError(f"sequences[{int(stuck[0])}] is all protected at max_length {width}: "
                             "no move is possible")
        if vocab_size is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
            raise ValueError(f"sequences must hold ids in [0, {vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        return Chains(ids, lengths, mask, join, self.score(ids, lengths).double())

    def init_keywords(self, keywords: Sequence[Sequence[str]], tokenizer) -> Chains:
        """Chains starting at each keyword set written in order (CGMH's start), every
        keyword protected and its tokens glued. ``tokenizer.encode(text) -> ids``; a keyword
        it cannot represent (empty, or holding ``tokenizer.unk_token_id``) raises."""
        sequences, protected, glued = [], [], []
        unk = tokenizer.unk_token_id
        for i, words in enumerate(keywords):
            if len(words) == 0:
                raise ValueError(f"keywords[{i}] is empty: give at least one keyword per chain")
            seq, join = [], []
            for word in words:
                ids = list(tokenizer.encode(word)) if isinstance(word, str) and word else []
                if not ids or unk in ids:
                    raise ValueError(f"keywords[{i}] holds {word!r}, which the tokenizer cannot "
                                     f"represent (ids {ids})")
                seq += ids
                join += [False] + [True] * (len(ids) - 1)
            sequences.append(seq)
            protected.append([True] * len(seq))
            glued.append(join)
        return self.init(sequences, protected, glued)
    def op_log_probs(self, lengths: Tensor, free: Tensor) -> Tensor:
        """``log P_op`` ``(n, 3)`` at states with ``lengths`` and ``free`` unprotected tokens."""
        possible = torch.stack([free >= 1, lengths < self.max_length,
                                (free >= 1) & (lengths > self.min_length)], dim=1)
        p = self.op_probs * possible
        return (p / p.sum(dim=1, keepdim=True)).log()

    # ------------------------------------------------------------------ one step

    @torch.no_grad()
    def step(self, chains: Chains, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> tuple[Chains, Tensor, Tensor]:
        """One MH step of every chain: ``(new chains, operation (n,), accepted (n,))``."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        ids, lengths, protected, glued = chains.ids, chains.lengths, chains.protected, chains.glued
        n, width = ids.shape
        rows, col = torch.arange(n), torch.arange(width)
        real = col < lengths[:, None]
        free_mask = real & ~protected
        free = free_mask.sum(dim=1)
        op_logp = self.op_log_probs(lengths, free)  # (n, 3)
        op = torch.multinomial(op_logp.exp(), 1, generator=generator).squeeze(1)
        # a position: an unprotected token (replace, delete) or an open slot (insert)
        uniform_free = (free_mask | (free == 0)[:, None]).double()
        at = torch.multinomial(uniform_free, 1, generator=generator).squeeze(1)
        open_slots = (torch.arange(width + 1) <= lengths[:, None]) & ~F.pad(glued, (0, 1))
        slots = open_slots.sum(dim=1)  # s(x)
        slot = torch.multinomial(open_slots.double(), 1, generator=generator).squeeze(1).clamp(max=width - 1)
        insert = op == INSERT
        pos = torch.where(insert, slot, at)
        # the masked LM's context z and its length
        z = torch.where(insert[:, None], _insert(ids, pos, self.mask_token_id), ids)
        z[rows, pos] = self.mask_token_id
        z_len = lengths + insert.long()
        logq = self._proposal_log_probs(z, z_len, pos)  # (n, vocab)
        token = torch.multinomial(logq.exp(), 1, generator=generator).squeeze(1)
        old = ids[rows, pos]
        # the proposed state y
        y = torch.where(op[:, None] == DELETE, _delete(ids, pos, self.pad_token_id), z)
        y[rows, pos] = torch.where(op == DELETE, y[rows, pos], token)
        y_len = lengths + insert.long() - (op == DELETE).long()
        y_prot, y_glued = (torch.where(insert[:, None], _insert(flags, pos, False),
                                       torch.where(op[:, None] == DELETE, _delete(flags, pos, False), flags))
                           for flags in (protected, glued))
        y_free = free + insert.long() - (op == DELETE).long()
        y_slots = slots + insert.long() - (op == DELETE).long()
        y_op_logp = self.op_log_probs(y_len, y_free)
        fwd, rev = self._move_log_probs(op, op_logp, y_op_logp, slots, y_slots, free, y_free,
                                        logq.gather(1, token[:, None]).squeeze(1),
                                        logq.gather(1, old[:, None]).squeeze(1))
        y_score = self.score(y, y_len).double()
        log_accept = (y_score - chains.log_score) / temperature + rev - fwd
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        accepted = u.log() < log_accept
        proposal = Chains(y, y_len, y_prot, y_glued, y_score)
        return _where(accepted, proposal, chains), op, accepted

    def _proposal_log_probs(self, z: Tensor, z_len: Tensor, pos: Tensor) -> Tensor:
        """``log q(· | z)`` at ``pos``: the masked LM's distribution over allowed tokens."""
        attention = (torch.arange(z.shape[1]) < z_len[:, None]).long()
        logits = self.mlm(z, attention)[torch.arange(len(z)), pos].double()  # (n, vocab)
        logits[:, self.banned[self.banned < logits.shape[1]]] = float("-inf")
        if self.top_k is not None and self.top_k < logits.shape[1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits.log_softmax(dim=-1)

    @staticmethod
    def _move_log_probs(op, op_logp, y_op_logp, slots, y_slots, free, y_free, logq_new, logq_old):
        """``log q(y ← x)`` and ``log q(x ← y)`` of each chain's move (see module docstring)."""
        log_m_x, log_m_y = free.clamp(min=1).double().log(), y_free.clamp(min=1).double().log()
        fwd = torch.stack([
            op_logp[:, REPLACE] - log_m_x + logq_new,
            op_logp[:, INSERT] - slots.double().log() + logq_new,
            op_logp[:, DELETE] - log_m_x,
        ], dim=1).gather(1, op[:, None]).squeeze(1)
        rev = torch.stack([  # the reverse moves: replace back, delete the insert, re-insert
            y_op_logp[:, REPLACE] - log_m_y + logq_old,
            y_op_logp[:, DELETE] - log_m_y,
            y_op_logp[:, INSERT] - y_slots.double().log() + logq_old,
        ], dim=1).gather(1, op[:, None]).squeeze(1)
        return fwd, rev

    # ------------------------------------------------------------------ a run

    def run(self, chains: Chains, steps: int, *, temperatures: Tensor | Sequence[float] | float = 1.0,
            generator: torch.Generator | None = None, progress: bool = False) -> tuple[Chains, Chains, dict]:
        """``steps`` MH steps at ``temperatures`` (one per step, or a constant; see
        :func:`annealing_schedule`). Returns ``(last, best, stats)``: the final chains, the
        highest-scoring state each chain visited, and acceptance rates per operation."""
        if steps <= 0:
            raise ValueError(f"steps must be > 0, got {steps}")
        taus = torch.as_tensor(temperatures, dtype=torch.float64)
        taus = taus.expand(steps) if taus.dim() == 0 else taus
        if len(taus) != steps:
            raise ValueError(f"temperatures must hold {steps} values, got {len(taus)}")
        best = chains
        tried = torch.zeros(3)
        took = torch.zeros(3)
        for t in tqdm(range(steps), disable=not progress, desc="mcmc"):
            chains, op, accepted = self.step(chains, float(taus[t]), generator)
            tried += torch.bincount(op, minlength=3)
            took += torch.bincount(op[accepted], minlength=3)
            better = chains.log_score > best.log_score
            best = _where(better, chains, best)
        stats = {f"{name}_acceptance": float(took[k] / tried[k]) if tried[k] else math.nan
                 for k, name in enumerate(OPERATIONS)}
        stats["acceptance"] = float(took.sum() / tried.sum())
        return chains, best, stats


def _where(cond: Tensor, a: Chains, b: Chains) -> Chains:
    """Per chain, ``a`` where ``cond`` else ``b``."""
    def pick(x: Tensor, y: Tensor) -> Tensor:
        return torch.where(cond.view(-1, *([1] * (x.dim() - 1))), x, y)
    return Chains(**{f.name: pick(getattr(a, f.name), getattr(b, f.name)) for f in fields(Chains)})


def _insert(x: Tensor, pos: Tensor, value) -> Tensor:
    """``x`` ``(n, L)`` with ``value`` inserted at ``pos`` ``(n,)`` (the last column drops)."""
    col = torch.arange(x.shape[1])
    src = col - (col > pos[:, None]).long()
    out = x.gather(1, src)
    out[torch.arange(len(x)), pos] = value
    return out


def _delete(x: Tensor, pos: Tensor, fill) -> Tensor:
    """``x`` ``(n, L)`` without column ``pos`` ``(n,)``, ``fill`` appended."""
    padded = torch.cat([x, torch.full_like(x[:, :1], fill)], dim=1)
    col = torch.arange(x.shape[1])
    return padded.gather(1, col + (col >= pos[:, None]).long())


@torch.no_grad()
def sentence_log_prob(lm: Callable[[Tensor], Tensor], ids: Tensor, lengths: Tensor, *,
                      bos_token_id: int, eos_token_id: int, pad_token_id: int = 0) -> Tensor:
    """``log p(x) = Σ_t log p(x_t | bos, x_<t) + log p(eos | bos, x)`` per row ``(n,)``
    under a causal LM ``lm(ids (n, L)) -> logits (n, L, V)``; ``ids`` ``(n, L)`` padded
    after ``lengths``."""
    n, width = ids.shape
    col = torch.arange(width + 2)
    seq = torch.full((n, width + 2), pad_token_id, dtype=torch.long)
    seq[:, 0] = bos_token_id
    seq[:, 1 : width + 1] = ids
    seq[torch.arange(n), lengths + 1] = eos_token_id
    logp = lm(seq[:, :-1]).double().log_softmax(dim=-1)  # (n, L + 1, V)
    token_logp = logp.gather(2, seq[:, 1:, None]).squeeze(2)
    scored = col[1:] <= lengths[:, None] + 1  # x_1..x_l and eos
    return (token_logp * scored).sum(dim=1)
