"""A prefix tree over token sequences, stored as tensors, for constrained decoding.

Seq2Seq+前缀树：检索任务新范式（以KgCLUE为例） (2021-12-17, https://kexue.fm/archives/8802):
a seq2seq model retrieves an entry of a database by *generating* it, and a prefix tree
over the entries keeps decoding on them — at each step every token that does not
continue the current prefix to some entry gets probability 0, the rest are
renormalised, and when no entry continues the prefix the end token is forced. Every
output is therefore an entry of the database.

Storage (CSR, breadth-first node numbering, root = node 0): the children of node ``n``
are the edges ``indptr[n] : indptr[n + 1]``, sorted by token, and edge ``e`` leads to
node ``e + 1``. Each edge is stored as one sorted key ``parent · vocab + token``, so a
whole batch moves down the tree with one ``searchsorted``, and the allowed next tokens
of a whole batch are one scatter into a ``(batch, vocab)`` mask. Per node the tree also
keeps whether an entry ends there (``terminal``), how many entries pass through it
(``count``) and the first of them in sorted order (``first``); ``leaves`` lists each
entry's last node in sorted order, so the entries below a node are
``leaves[first : first + count]``.

:class:`Lookahead` adds the post's look-ahead ("前瞻") rule: once the prefix holds a
separator (the subject is decoded) and more than one token may follow, every complete
entry ``c`` through the next token ``k`` gains
``Δ(c) = LCS(c, question) − LCS(prefix, question)``, and
``p_k ← p_k^{1 / (max_c Δ(c) + 1)}`` before masking and renormalising.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_PAD = -1


def _padded(sequences: Sequence[Sequence[int]] | Tensor, vocab_size: int,
            name: str = "sequences") -> tuple[Tensor, Tensor]:
    """``(n, L)`` int64 with -1 after each sequence's end, and the lengths ``(n,)``."""
    if isinstance(sequences, Tensor):
        if sequences.dim() != 2 or sequences.is_floating_point():
            raise ValueError(f"{name} must be an integer (n, length) tensor, got {tuple(sequences.shape)}")
        rows = sequences.long()
        valid = rows >= 0  # a tensor marks the end of a shorter sequence with negative padding
        lengths = valid.long().cumprod(dim=1).sum(dim=1)
        rows = torch.where(torch.arange(rows.shape[1]) < lengths[:, None], rows, _PAD)
    else:
        seqs = [list(map(int, s)) for s in sequences]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        width = int(lengths.max()) if len(seqs) else 0
        rows = torch.full((len(seqs), width), _PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            rows[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    if rows.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sequence, got none (an empty trie)")
    real = torch.arange(rows.shape[1]) < lengths[:, None]
    if bool(real.any()):
        lo, hi = int(rows[real].min()), int(rows[real].max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"{name} must hold ids in [0, {vocab_size}) (the vocabulary), "
                             f"got values in [{lo}, {hi}]")
    return rows, lengths


def _lexsort(rows: Tensor) -> Tensor:
    """Row order that sorts ``rows`` lexicographically (-1 padding sorts first)."""
    order = torch.arange(rows.shape[0])
    for col in range(rows.shape[1] - 1, -1, -1):
        order = order[rows[order, col].sort(stable=True).indices]
    return order


def lcs_length(a: Tensor, b: Tensor) -> Tensor:
    """Longest-common-subsequence lengths of the row pairs ``a`` ``(n, La)``, ``b`` ``(n, Lb)``.

    Negative ids are padding and match nothing. The DP row update
    ``D_i[j] = max_{j' <= j} max(D_{i-1}[j'], (D_{i-1}[j'-1] + 1)·[a_i = b_j'])`` is a
    ``cummax``, so the loop runs over ``a``'s positions only."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must be (n, La) and (n, Lb), got {tuple(a.shape)} and {tuple(b.shape)}")
    prev = torch.zeros(b.shape[0], b.shape[1] + 1, dtype=torch.long, device=b.device)
    for i in range(a.shape[1]):
        match = (a[:, i : i + 1] == b) & (b >= 0)  # (n, Lb)
        step = torch.maximum(prev[:, 1:], (prev[:, :-1] + 1) * match)
        prev = torch.cat([prev[:, :1], step.cummax(dim=1).values], dim=1)
    return prev[:, -1]


class Trie:
    """A prefix tree over token sequences, usable as a decoding constraint.

    Args:
        sequences: the entries — lists of ids, or an ``(n, length)`` tensor whose negative
            values pad shorter entries. Duplicates are stored once.
        vocab_size: ids must lie in ``[0, vocab_size)``.
        eos_token_id: the end token: allowed where an entry ends, forced where nothing
            else may follow; it must not occur inside an entry.

    As a :class:`~kexue.generate.decoding.Constraint` the state is the node of each row
    (``-1`` once the row has ended or left the tree; such a row may only emit eos).
    """

    def __init__(self, sequences: Sequence[Sequence[int]] | Tensor, vocab_size: int,
                 eos_token_id: int):
        if not 0 <= eos_token_id < vocab_size:
            raise ValueError(f"eos_token_id must be in [0, {vocab_size}), got {eos_token_id}")
        rows, lengths = _padded(sequences, vocab_size)
        if bool((rows == eos_token_id).any()):
            raise ValueError(f"sequences must not contain eos_token_id {eos_token_id}")
        self.vocab_size, self.eos_token_id = vocab_size, eos_token_id
        order = _lexsort(rows)
        rows, lengths = rows[order], lengths[order]
        keep = torch.ones(len(rows), dtype=torch.bool)
        keep[1:] = (rows[1:] != rows[:-1]).any(dim=1)  # drop duplicates (adjacent once sorted)
        rows, lengths = rows[keep], lengths[keep]
        self._build(rows, lengths)

    def _build(self, rows: Tensor, lengths: Tensor) -> None:
        n, width = rows.shape
        depth = torch.arange(width)
        same = torch.zeros_like(rows, dtype=torch.bool)
        same[1:] = rows[1:] == rows[:-1]
        lcp = same.long().cumprod(dim=1).sum(dim=1)  # common prefix with the previous entry
        real = depth < lengths[:, None]  # (n, L)
        new = real & (depth >= lcp[:, None])  # row i creates the node of its prefix [: d + 1]
        # breadth-first ids: by depth, then by (sorted) row; the root is 0
        ids_t = new.T.reshape(-1).long().cumsum(0).view(width, n).T  # (n, L)
        ids = torch.where(new, ids_t, 0)
        last_new = torch.where(new, torch.arange(n)[:, None], -1).cummax(dim=0).values
        node = ids.gather(0, last_new.clamp(min=0))  # node of prefix [: d + 1] of row i
        node = torch.where(real, node, 0)
        parent = torch.cat([torch.zeros(n, 1, dtype=torch.long), node[:, :-1]], dim=1)
        num_nodes = int(new.sum()) + 1
        created = new.T.reshape(-1)  # breadth-first order of the new positions
        edge_parent = parent.T.reshape(-1)[created]
        edge_token = rows.T.reshape(-1)[created]
        self.keys = edge_parent * self.vocab_size + edge_token  # (nodes - 1,) sorted
        children = torch.bincount(edge_parent, minlength=num_nodes)
        self.indptr = torch.cat([torch.zeros(1, dtype=torch.long), children.cumsum(0)])
        ends = node.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        ends = torch.where(lengths > 0, ends, 0)  # an empty entry ends at the root
        self.terminal = torch.zeros(num_nodes, dtype=torch.bool)
        self.terminal[ends] = True
        self.count = torch.bincount(node[real], minlength=num_nodes).int()
        self.count[0] = n
        self.first = torch.zeros(num_nodes, dtype=torch.int32)
        self.first[ids[new]] = torch.arange(n)[:, None].expand(n, width)[new].int()
        self.leaves = ends.int()  # (n,) last node of each entry, in sorted order
        self.max_length = int(lengths.max())

    # ------------------------------------------------------------------ structure

    def __len__(self) -> int:
        return len(self.leaves)

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors that hold the tree."""
        tensors = (self.keys, self.indptr, self.terminal, self.count, self.first, self.leaves)
        return sum(t.numel() * t.element_size() for t in tensors)

    def children(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """Edges below ``nodes`` ``(rows,)``: ``(row of each edge, edge index)``, one
        tensor step for the whole batch (rows with node ``-1`` have none)."""
        safe = nodes.clamp(min=0)
        start = self.indptr[safe]
        counts = torch.where(nodes >= 0, self.indptr[safe + 1] - start, 0)
        row = torch.repeat_interleave(counts)  # each row once per child
        first_edge = start - (counts.cumsum(0) - counts)  # edge index minus output slot
        return row, torch.arange(len(row), device=nodes.device) + first_edge[row]

    def parent_and_token(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """The parent node and the token leading to each of ``nodes`` (all > 0)."""
        key = self.keys[nodes - 1]
        return key // self.vocab_size, key % self.vocab_size

    def prefixes(self, nodes: Tensor) -> Tensor:
        """The token path from the root to each node ``(rows,)``, as ``(rows, max_length)``
        with -1 after its end (the root gives an empty row)."""
        out = torch.full((len(nodes), self.max_length), _PAD, dtype=torch.long)
        depth = torch.zeros(len(nodes), dtype=torch.long)
        walk = nodes.clone()
        tokens = []
        while bool((walk > 0).any()):  # collect tokens leaf-to-root
            up = walk > 0
            parent, token = self.parent_and_token(walk.clamp(min=1))
            tokens.append(torch.where(up, token, _PAD))
            depth += up.long()
            walk = torch.where(up, parent, walk)
        for k, token in enumerate(tokens):  # token k sits at position depth - 1 - k
            pos = depth - 1 - k
            ok = pos >= 0
            out[torch.arange(len(nodes))[ok], pos[ok]] = token[ok]
        return out

    def walk(self, ids: Tensor) -> Tensor:
        """The node reached by each row of ``ids`` ``(rows, t)`` from the root (-1 if a
        token leaves the tree; negative ids are padding and stop a row's walk)."""
        nodes = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        for t in range(ids.shape[1]):
            token = ids[:, t]
            moved = self.advance(nodes, token.clamp(min=0))
            nodes = torch.where(token >= 0, moved, nodes)
        return nodes

    def contains(self, ids: Tensor) -> Tensor:
        """Whether each row of ``ids`` ``(rows, t)`` (negative = padding) is an entry."""
        nodes = self.walk(ids)
        return (nodes >= 0) & self.terminal[nodes.clamp(min=0)]

    # ------------------------------------------------------------------ constraint

    def start(self, batch_size: int, num_beams: int = 1) -> Tensor:
        return torch.zeros(batch_size * num_beams, dtype=torch.long)

    def _next(self, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(row, token)`` of every child edge, and which rows may end (eos)."""
        row, edge = self.children(nodes)
        ends = (nodes < 0) | self.terminal[nodes.clamp(min=0)]
        return row, self.keys[edge] % self.vocab_size, ends

    def allowed(self, nodes: Tensor) -> Tensor:
        """``(rows, vocab)`` boolean mask of the tokens that may follow each node."""
        row, token, ends = self._next(nodes)
        allowed = torch.zeros(len(nodes), self.vocab_size, dtype=torch.bool, device=nodes.device)
        allowed[row, token] = True
        allowed[:, self.eos_token_id] |= ends
        return allowed

    def mask(self, nodes: Tensor, scores: Tensor) -> Tensor:
        """``scores`` ``(rows, vocab)`` with every token the tree forbids at ``-inf``."""
        row, token, ends = self._next(nodes)
        out = torch.full_like(scores, float("-inf"))
        out[row, token] = scores[row, token]
        eos = self.eos_token_id
        out[:, eos] = torch.where(ends, scores[:, eos], out[:, eos])
        return out

    def advance(self, nodes: Tensor, tokens: Tensor) -> Tensor:
        """The child of each node along ``tokens`` ``(rows,)``; -1 when there is none."""
        key = nodes.clamp(min=0) * self.vocab_size + tokens
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        found = (nodes >= 0) & (self.keys[pos] == key) if len(self.keys) else torch.zeros_like(nodes, dtype=torch.bool)
        return torch.where(found, pos + 1, -1)


class Lookahead:
    """The post's look-ahead on top of a :class:`Trie` constraint.

    Args:
        trie: the prefix tree.
        references: per example the ids to cover (the question), ``(batch, q)`` with
            negative padding, or a list of id lists.
        after_token_id: apply only once the prefix holds this token (the separator after
            the subject); ``None``: everywhere.
        max_candidates: skip rows with more entries below their node than this.

    State: ``(rows, 2)`` = (node, example index).
    """

    def __init__(self, trie: Trie, references: Tensor | Sequence[Sequence[int]],
                 after_token_id: int | None = None, max_candidates: int = 256):
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.trie = trie
        self.references, _ = _padded(references, 2**62, "references")  # (batch, q), -1 padded
        self.after_token_id = after_token_id
        self.max_candidates = max_candidates

    def start(self, batch_size: int, num_beams: int = 1) -> Tensor:
        if batch_size != len(self.references):
            raise ValueError(f"references has {len(self.references)} rows, the batch {batch_size}")
        example = torch.arange(batch_size).repeat_interleave(num_beams)
        return torch.stack([torch.zeros_like(example), example], dim=1)

    def advance(self, state: Tensor, tokens: Tensor) -> Tensor:
        return torch.stack([self.trie.advance(state[:, 0], tokens), state[:, 1]], dim=1)

    def mask(self, state: Tensor, scores: Tensor) -> Tensor:
        logp = scores.float().log_softmax(dim=-1)
        weights = self.weights(state)
        return self.trie.mask(state[:, 0], logp / weights)

    def weights(self, state: Tensor) -> Tensor:
        """Exponent divisors ``(rows, vocab)``: ``max_c Δ(c) + 1`` per next token, else 1."""
        trie, nodes = self.trie, state[:, 0]
        weights = torch.ones(len(nodes), trie.vocab_size)
        safe = nodes.clamp(min=0)
        branching = trie.indptr[safe + 1] - trie.indptr[safe]
        rows = ((nodes >= 0) & (branching > 1) & (trie.count[safe] <= self.max_candidates)).nonzero().squeeze(1)
        if len(rows) == 0:
            return weights
        prefix = trie.prefixes(nodes[rows])  # (r, L)
        if self.after_token_id is not None:
            held = (prefix == self.after_token_id).any(dim=1)
            rows, prefix = rows[held], prefix[held]
            if len(rows) == 0:
                return weights
        depth = (prefix >= 0).sum(dim=1)
        count = trie.count[nodes[rows]].long()
        owner = torch.repeat_interleave(torch.arange(len(rows)), count)  # candidate -> row
        offset = torch.arange(len(owner)) - (count.cumsum(0) - count)[owner]
        leaf = trie.leaves[trie.first[nodes[rows]].long()[owner] + offset].long()
        cand = F.pad(trie.prefixes(leaf), (0, 1), value=_PAD)  # (c, L + 1) entries through the node
        ref = self.references[state[rows, 1]]  # (r, q)
        gain = lcs_length(cand, ref[owner]) - lcs_length(prefix, ref)[owner]
        nxt = cand.gather(1, depth[owner][:, None]).squeeze(1)  # the token after the prefix
        ok = nxt >= 0  # an entry that ends at the node adds nothing
        w = _scatter_max(len(rows), trie.vocab_size, owner[ok], nxt[ok], (gain[ok] + 1).float())
        weights[rows] = w
        return weights


def _scatter_max(rows: int, vocab: int, row: Tensor, col: Tensor, value: Tensor) -> Tensor:
    """``(rows, vocab)`` of ones with ``max(1, value)`` scattered (max) at ``(row, col)``."""
    flat = torch.ones(rows * vocab)
    flat.scatter_reduce_(0, row * vocab + col, value, reduce="amax", include_self=True)
    return flat.view(rows, vocab)
