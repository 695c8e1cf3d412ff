"""InfoMap: the partition of a network that minimises the map equation.

Source: Su Jianlin, "最小熵原理（五）："层层递进"之社区发现与聚类" (The minimum entropy
principle (5): community detection and clustering, layer by layer), 2019-10-19,
https://kexue.fm/archives/7006. The search is the one of Rosvall & Bergstrom's "The map
equation" (arXiv:0906.1405) as the post describes it, with the refinements of the infomap
package (Edler, Eriksson & Rosvall):

1. every node starts in its own module; visit the nodes in random order and move each to
   the neighbouring module (or an empty one) that lowers ``L`` most; repeat until no move
   helps (the *core loop*);
2. treat each module as one node and run the core loop again (module merging); repeat
   until nothing merges (*coarse-graining*);
3. *fine-tune*: rerun 1-2 from the current modules with single nodes free to move again;
   *coarse-tune*: split every module into sub-modules (the core loop inside each module,
   coded with the module's exit as its index codeword) and move whole sub-modules between
   modules. Alternate until ``L`` stops falling;
4. keep the best of ``trials`` independent runs.

``hierarchical=True`` then adds levels while the hierarchical map equation falls: super-
modules (two-level search over the module network, coded by module enter rates) and,
recursively, sub-modules inside each bottom module.

The core loop and the coarse-graining are compiled with numba: the greedy moves are
sequential by nature (each move changes the module rates the next one sees), which no
array expression captures. Each move costs O(degree): module rates are updated
incrementally from the flow between the node and its neighbouring modules.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from tqdm import tqdm

from kexue.graph.flow import Flow, GraphLike, network_flow
from kexue.graph.map_equation import boundary_rates, plogp, tree_codelength

__all__ = ["InfomapResult", "infomap"]

_IMPROVEMENT = 1e-10  # smallest codelength decrease (bits) that counts as progress
_CORE_LOOPS = 10  # passes over the nodes per core loop (infomap's core_loop_limit)
_TUNE_ITERATIONS = 10  # fine/coarse tuning rounds at most
_MAX_LEVELS = 8  # hierarchical: levels of sub-modules searched at most


@dataclass(frozen=True)
class InfomapResult:
    """A partition found by :func:`infomap`.

    ``modules`` (n,) is each node's top module, numbered by decreasing flow (0 = most);
    ``paths`` (n, depth) its module at every level from the top, numbered by decreasing
    flow within the parent, -1 after the node's last module (depth 1 unless
    hierarchical). ``codelength`` is the map equation of ``paths`` in bits,
    ``one_level_codelength`` that of one module (the entropy of the visit rates).
    """

    modules: np.ndarray  # (n,) int64
    paths: np.ndarray  # (n, depth) int64
    codelength: float
    one_level_codelength: float
    flow: Flow

    @property
    def num_modules(self) -> int:
        return int(self.modules.max()) + 1

    @property
    def labels(self) -> list[Hashable]:
        return self.flow.labels

    def communities(self) -> list[list[Hashable]]:
        """Node labels of each top module, most flow first, nodes by decreasing flow."""
        order = np.lexsort((-self.flow.node, self.modules))
        groups: list[list[Hashable]] = [[] for _ in range(self.num_modules)]
        for i in order:
            groups[self.modules[i]].append(self.flow.labels[i])
        return groups


def infomap(
    graph: GraphLike | Flow,
    *,
    trials: int = 1,
    seed: int | None = None,
    hierarchical: bool = False,
    directed: bool | None = None,
    teleportation_probability: float = 0.15,
    recorded_teleportation: bool = False,
    to_nodes: bool = False,
    num_nodes: int | None = None,
    progress: bool = False,
) -> InfomapResult:
    """Minimise the map equation over partitions of ``graph`` (see the module docstring).

    Args:
        graph: an edge list, ``scipy.sparse`` matrix or networkx graph, or a precomputed
            :class:`~kexue.graph.Flow` (then the flow arguments below are ignored).
        trials: independent runs (random node orders); the shortest code wins.
        seed: seeds the node orders (None: fresh entropy).
        hierarchical: also search super- and sub-module levels (multilevel map equation);
            otherwise a two-level partition.
        directed, teleportation_probability, recorded_teleportation, to_nodes, num_nodes:
            the flow model, as in :func:`kexue.graph.network_flow`.
        progress: show a bar over the trials.
    """
    if trials < 1:
        raise ValueError(f"expected trials >= 1, got {trials}")
    flow = graph if isinstance(graph, Flow) else network_flow(
        graph, directed=directed, teleportation_probability=teleportation_probability,
        recorded_teleportation=recorded_teleportation, to_nodes=to_nodes, num_nodes=num_nodes)
    units = _units_from_flow(flow)
    tele_total = float(flow.teleport_out.sum())
    rng = np.random.default_rng(seed)
    one_level = float(-plogp(flow.node).sum())
    best_paths = np.zeros((flow.num_nodes, 1), np.int64)  # one module, unless beaten
    best_length = one_level
    for _ in tqdm(range(trials), disable=not progress, desc="infomap trials"):
        paths = _two_level(units, tele_total, rng)[:, None]
        if hierarchical:
            paths = _add_super_levels(flow, units, tele_total, paths, rng)
            paths = _add_sub_levels(flow, units, tele_total, paths, rng)
        length = tree_codelength(flow, paths)
        if length < best_length - _IMPROVEMENT:
            best_paths, best_length = paths, length
    paths = _number_by_flow(best_paths, flow.node)
    return InfomapResult(paths[:, 0].copy(), paths, best_length, one_level, flow)


# ----------------------------------------------------------------------------- the network
class _Units(NamedTuple):
    """The network the core loop moves: nodes, or modules coarse-grained into nodes.
    Links in both directions as CSR, without self-links (they never cross a boundary)."""

    out_ptr: np.ndarray  # (n + 1,)
    out_idx: np.ndarray  # (m,)
    out_flow: np.ndarray  # (m,)
    in_ptr: np.ndarray
    in_idx: np.ndarray
    in_flow: np.ndarray
    flow: np.ndarray  # (n,) visit rate (enter rate when coding modules of modules)
    tele_out: np.ndarray  # (n,) recorded teleport flow leaving
    tele_in: np.ndarray  # (n,) share of recorded teleports landing

    @property
    def n(self) -> int:
        return len(self.flow)


def _units_from_flow(flow: Flow) -> _Units:
    n = flow.num_nodes
    order = np.lexsort((flow.target, flow.source))
    src, dst, f = flow.source[order], flow.target[order], flow.link[order]
    out_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    in_ptr, in_idx, in_flow = _transpose(n, out_ptr, dst.astype(np.int64), f)
    return _Units(out_ptr, dst.astype(np.int64), f, in_ptr, in_idx, in_flow, flow.node,
                  flow.teleport_out, flow.teleport_in)


def _with_in_links(n, out_ptr, out_idx, out_flow, flow, tele_out, tele_in) -> _Units:
    return _Units(out_ptr, out_idx, out_flow, *_transpose(n, out_ptr, out_idx, out_flow),
                  flow, tele_out, tele_in)


# ----------------------------------------------------------------------------- the search
def _move(units: _Units, module, group, offset, tele_total, rng):
    """Core loop from ``module`` (ids < n); returns the modules and the codelength
    without its node term (``sum_a plogp(p_a)`` is the same for every partition)."""
    return _core_loop(*units, tele_total, module.astype(np.int64), group, offset,
                      int(rng.integers(2**31)), _CORE_LOOPS)


def _coarse_grain(units: _Units, module, group):
    """Modules -> units. Returns each unit's new index, the coarse units and their group."""
    label, k, out_ptr, out_idx, out_flow, flow, tele_out, tele_in, coarse_group = _aggregate(
        units.out_ptr, units.out_idx, units.out_flow, units.flow, units.tele_out,
        units.tele_in, group, module.astype(np.int64))
    coarse = _with_in_links(k, out_ptr, out_idx, out_flow, flow, tele_out, tele_in)
    return label, coarse, coarse_group


def _merge_repeatedly(units: _Units, module, group, offset, tele_total, rng):
    """Steps 1-2: the core loop, then modules as units, until nothing merges. Returns the
    module of every unit of ``units`` (0..k-1) and the codelength (without node term)."""
    module, length = _move(units, module, group, offset, tele_total, rng)
    assign, coarse, coarse_group = _coarse_grain(units, module, group)
    while coarse.n > 1:
        module, new_length = _move(coarse, np.arange(coarse.n), coarse_group, offset,
                                   tele_total, rng)
        if new_length >= length - _IMPROVEMENT:
            break
        label, coarser, coarse_group = _coarse_grain(coarse, module, coarse_group)
        assign, length = label[assign], new_length
        if coarser.n == coarse.n:
            break
        coarse = coarser
    return assign, length


def _two_level(units: _Units, tele_total, rng, group=None, offset=None):
    """Steps 1-3: a two-level partition (per ``group``, coded with its ``offset`` exit)."""
    if group is None:
        group, offset = np.zeros(units.n, np.int64), np.zeros(1)
    module, length = _merge_repeatedly(units, np.arange(units.n), group, offset, tele_total, rng)
    stale = 0
    for it in range(_TUNE_ITERATIONS):
        if it % 2 == 0:  # fine-tune: single nodes move again from the current modules
            tuned, tuned_length = _merge_repeatedly(units, module, group, offset, tele_total, rng)
        else:  # coarse-tune: whole sub-modules move between modules
            tuned, tuned_length = _coarse_tune(units, module, group, offset, tele_total, rng)
        if tuned_length < length - _IMPROVEMENT:
            module, length, stale = tuned, tuned_length, 0
        else:
            stale += 1
            if stale == 2:
                break
    return module


def _coarse_tune(units: _Units, module, group, offset, tele_total, rng):
    k = int(module.max()) + 1
    module_exit = _module_exit(units, module, k, tele_total)
    sub, _ = _merge_repeatedly(units, np.arange(units.n), module, module_exit, tele_total, rng)
    label, subunits, parent = _coarse_grain(units, sub, module)
    outer = np.empty(subunits.n, np.int64)
    outer[label] = group
    tuned, length = _merge_repeatedly(subunits, parent, outer, offset, tele_total, rng)
    return tuned[label], length


def _module_exit(units: _Units, module, k, tele_total):
    src = np.repeat(np.arange(units.n), np.diff(units.out_ptr))
    cross = module[src] != module[units.out_idx]
    exit_ = np.bincount(module[src[cross]], units.out_flow[cross], k).astype(np.float64)
    t = np.bincount(module, units.tele_out, k)
    v = np.bincount(module, units.tele_in, k)
    return exit_ + t * (1 - v) if tele_total > 0 else exit_


# ----------------------------------------------------------------------------- hierarchy
def _add_super_levels(flow: Flow, units: _Units, tele_total, paths, rng):
    """Group the top modules into super-modules while the codelength falls. The search
    codes top modules by their enter rates, as the index codebook does."""
    length = tree_codelength(flow, paths)
    for _ in range(_MAX_LEVELS):
        top = paths[:, 0]
        k = int(top.max()) + 1
        if k < 3:
            break
        label, modules, _ = _coarse_grain(units, top, np.zeros(units.n, np.int64))
        _, enter = boundary_rates(flow, top, k)
        module_enter = np.zeros(k)
        module_enter[label] = enter[top]
        modules = modules._replace(flow=module_enter)
        super_ = _two_level(modules, tele_total, rng)
        if not 1 < super_.max() + 1 < k:
            break
        candidate = np.column_stack([super_[label], paths])
        new_length = tree_codelength(flow, candidate)
        if new_length >= length - _IMPROVEMENT:
            break
        paths, length = candidate, new_length
    return paths


def _add_sub_levels(flow: Flow, units: _Units, tele_total, paths, rng):
    """Split bottom modules into sub-modules, recursively, where that shortens the code."""
    depth = (paths >= 0).sum(1)
    bottom = np.unique(paths, axis=0, return_inverse=True)[1].ravel()  # a module per path
    searching = np.ones(len(paths), bool)  # nodes whose bottom module may still split
    for _ in range(_MAX_LEVELS):
        k = int(bottom.max()) + 1
        exit_, _ = boundary_rates(flow, bottom, k)
        sub = _two_level(units, tele_total, rng, group=bottom, offset=exit_)
        still_searching = np.bincount(bottom[searching], minlength=k) > 0
        accept = _split_helps(flow, bottom, sub, k, exit_) & still_searching
        split = accept[bottom]
        if not split.any():
            break
        column = np.full(len(paths), -1, np.int64)
        column[split] = sub[split]
        paths = _append_column(paths, depth, column)
        depth = depth + split
        searching &= split
        bottom = np.where(split, k + sub, bottom)
        bottom = np.unique(bottom, return_inverse=True)[1].ravel()
    return paths


def _split_helps(flow: Flow, module, sub, k, module_exit):
    """Per module: is coding it as sub-modules shorter than as one leaf module?"""
    s = int(sub.max()) + 1
    sub_exit, sub_enter = boundary_rates(flow, sub, s)
    sub_flow = np.bincount(sub, flow.node, s)
    owner = np.zeros(s, np.int64)
    owner[sub] = module
    count = np.bincount(owner, minlength=k)
    singletons = np.bincount(owner, np.bincount(sub, minlength=s) == 1, k)
    node_flow = np.bincount(module, flow.node, k)
    leaf = plogp(module_exit + node_flow) - plogp(module_exit)
    sub_code = plogp(sub_exit + sub_flow) - plogp(sub_enter) - plogp(sub_exit)
    split = (plogp(module_exit + np.bincount(owner, sub_enter, k)) - plogp(module_exit)
             + np.bincount(owner, sub_code, k))
    return (count > 1) & (singletons < count) & (split < leaf - _IMPROVEMENT)


def _append_column(paths, depth, column):
    n, width = paths.shape
    if depth.max() == width:
        paths = np.column_stack([paths, np.full(n, -1, np.int64)])
    paths = paths.copy()
    has = column >= 0
    paths[np.flatnonzero(has), depth[has]] = column[has]
    return paths


def _number_by_flow(paths, node_flow):
    """Renumber every level's modules 0, 1, ... by decreasing flow within their parent."""
    out = np.full_like(paths, -1)
    parent = np.zeros(len(paths), np.int64)
    for level in range(paths.shape[1]):
        inside = paths[:, level] >= 0
        ids = np.unique(np.column_stack([parent, paths[:, level]])[inside], axis=0,
                        return_inverse=True)[1].ravel()
        module = np.full(len(paths), -1, np.int64)
        module[inside] = ids
        k = int(ids.max()) + 1
        module_flow = np.bincount(ids, node_flow[inside], k)
        module_parent = np.zeros(k, np.int64)
        module_parent[ids] = parent[inside]
        order = np.lexsort((-module_flow, module_parent))
        rank = np.empty(k, np.int64)
        first = np.searchsorted(module_parent[order], module_parent[order])
        rank[order] = np.arange(k) - first
        out[inside, level] = rank[ids]
        parent = module
    return out


# ----------------------------------------------------------------------------- compiled core
@numba.njit(cache=True)
def _xlogx(x):
    return x * np.log2(x) if x > 0.0 else 0.0


@numba.njit(cache=True)
def _term(enter, exit_, flow):
    """A module's part of L: -plogp(enter) - plogp(exit) + plogp(exit + flow)."""
    return -_xlogx(enter) - _xlogx(exit_) + _xlogx(exit_ + flow)


@numba.njit(cache=True)
def _transpose(n, ptr, idx, val):
    counts = np.zeros(n + 1, np.int64)
    for e in range(len(idx)):
        counts[idx[e] + 1] += 1
    t_ptr = np.cumsum(counts)
    fill = t_ptr[:-1].copy()
    t_idx = np.empty(len(idx), np.int64)
    t_val = np.empty(len(idx), np.float64)
    for u in range(n):
        for e in range(ptr[u], ptr[u + 1]):
            v = idx[e]
            t_idx[fill[v]] = u
            t_val[fill[v]] = val[e]
            fill[v] += 1
    return t_ptr, t_idx, t_val


@numba.njit(cache=True)
def _gather(a, ptr, idx, flows, module, stamp, acc, acc_other, touched, n_touched):
    """Add unit ``a``'s link flows into ``acc`` per neighbouring module; modules met for
    the first time (``stamp != a``) are zeroed and listed in ``touched``."""
    for e in range(ptr[a], ptr[a + 1]):
        m = module[idx[e]]
        if stamp[m] != a:
            stamp[m] = a
            acc[m] = 0.0
            acc_other[m] = 0.0
            touched[n_touched] = m
            n_touched += 1
        acc[m] += flows[e]
    return n_touched


@numba.njit(cache=True)
def _core_loop(out_ptr, out_idx, out_flow, in_ptr, in_idx, in_flow, flow, tele_out, tele_in,
               tele_total, module, group, offset, seed, max_loops):
    """Greedy moves of units between modules (ids < n) within their ``group``; a group's
    index codebook also holds its ``offset`` (the exit of the module being split, 0 at
    the top). Returns (modules, codelength without the node term)."""
    n = len(flow)
    module = module.copy()
    m_flow = np.zeros(n)
    m_tout = np.zeros(n)
    m_tin = np.zeros(n)
    m_lexit = np.zeros(n)  # flow on links leaving the module
    m_lenter = np.zeros(n)
    m_size = np.zeros(n, np.int64)
    m_group = np.full(n, -1, np.int64)
    u_lexit = np.zeros(n)
    u_lenter = np.zeros(n)
    for u in range(n):
        m = module[u]
        m_flow[m] += flow[u]
        m_tout[m] += tele_out[u]
        m_tin[m] += tele_in[u]
        m_size[m] += 1
        m_group[m] = group[u]
        for e in range(out_ptr[u], out_ptr[u + 1]):
            u_lexit[u] += out_flow[e]
            v = out_idx[e]
            if module[v] != m:
                m_lexit[m] += out_flow[e]
                m_lenter[module[v]] += out_flow[e]
        for e in range(in_ptr[u], in_ptr[u + 1]):
            u_lenter[u] += in_flow[e]
    group_enter = offset.copy()  # sum of enter rates in each group's codebook
    for m in range(n):
        if m_size[m] > 0:
            group_enter[m_group[m]] += m_lenter[m] + (tele_total - m_tout[m]) * m_tin[m]
    empty = np.empty(n, np.int64)
    n_empty = 0
    for m in range(n - 1, -1, -1):
        if m_size[m] == 0:
            empty[n_empty] = m
            n_empty += 1
    acc_out = np.zeros(n)  # flow from the unit to each neighbouring module
    acc_in = np.zeros(n)
    stamp = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    active = np.ones(n, np.bool_)
    np.random.seed(seed)
    for _ in range(max_loops):
        moved = 0
        gain = 0.0
        for a in np.random.permutation(n):
            if not active[a]:
                continue
            active[a] = False
            old = module[a]
            g = group[a]
            n_touched = 0
            stamp[old] = a
            acc_out[old] = 0.0
            acc_in[old] = 0.0
            n_touched = _gather(a, out_ptr, out_idx, out_flow, module, stamp, acc_out, acc_in,
                                touched, n_touched)
            n_touched = _gather(a, in_ptr, in_idx, in_flow, module, stamp, acc_in, acc_out,
                                touched, n_touched)
            # the old module without a
            old_exit = m_lexit[old] + m_tout[old] * (1.0 - m_tin[old])
            old_enter = m_lenter[old] + (tele_total - m_tout[old]) * m_tin[old]
            lx = m_lexit[old] - (u_lexit[a] - acc_out[old]) + acc_in[old]
            le = m_lenter[old] - (u_lenter[a] - acc_in[old]) + acc_out[old]
            to, ti = m_tout[old] - tele_out[a], m_tin[old] - tele_in[a]
            left_exit = lx + to * (1.0 - ti)
            left_enter = le + (tele_total - to) * ti
            d_old = _term(left_enter, left_exit, m_flow[old] - flow[a]) - _term(
                old_enter, old_exit, m_flow[old])
            base_enter = group_enter[g] + left_enter - old_enter
            best, best_delta = old, -1e-15
            b_lx = b_le = b_enter = b_j_enter = 0.0
            n_candidates = n_touched + (1 if (m_size[old] > 1 and n_empty > 0) else 0)
            for c in range(n_candidates):
                m = touched[c] if c < n_touched else empty[n_empty - 1]
                if m == old or m_group[m] != g and m_size[m] > 0:
                    continue
                j_exit = m_lexit[m] + m_tout[m] * (1.0 - m_tin[m])
                j_enter = m_lenter[m] + (tele_total - m_tout[m]) * m_tin[m]
                jx, je = u_lexit[a], u_lenter[a]  # into an empty module
                if c < n_touched:
                    jx += m_lexit[m] - acc_out[m] - acc_in[m]
                    je += m_lenter[m] - acc_in[m] - acc_out[m]
                jo, jt = m_tout[m] + tele_out[a], m_tin[m] + tele_in[a]
                new_exit = jx + jo * (1.0 - jt)
                new_enter = je + (tele_total - jo) * jt
                delta = (_xlogx(base_enter + new_enter - j_enter) - _xlogx(group_enter[g]) + d_old
                         + _term(new_enter, new_exit, m_flow[m] + flow[a])
                         - _term(j_enter, j_exit, m_flow[m]))
                if delta < best_delta:
                    best, best_delta = m, delta
                    b_lx, b_le, b_enter, b_j_enter = jx, je, new_enter, j_enter
            if best == old:
                continue
            # move a from old to best
            group_enter[g] = base_enter + b_enter - b_j_enter
            if m_size[best] == 0:
                n_empty -= 1
            m_lexit[old], m_lenter[old] = lx, le
            m_tout[old], m_tin[old] = to, ti
            m_flow[old] -= flow[a]
            m_size[old] -= 1
            if m_size[old] == 0:  # exactly empty, without rounding residue
                m_lexit[old] = m_lenter[old] = m_tout[old] = m_tin[old] = m_flow[old] = 0.0
                empty[n_empty] = old
                n_empty += 1
            m_lexit[best], m_lenter[best] = b_lx, b_le
            m_tout[best] += tele_out[a]
            m_tin[best] += tele_in[a]
            m_flow[best] += flow[a]
            m_size[best] += 1
            m_group[best] = g
            module[a] = best
            moved += 1
            gain -= best_delta
            for e in range(out_ptr[a], out_ptr[a + 1]):
                active[out_idx[e]] = True
            for e in range(in_ptr[a], in_ptr[a + 1]):
                active[in_idx[e]] = True
        if moved == 0 or gain < 1e-10:
            break
    length = 0.0
    for gi in range(len(offset)):
        length += _xlogx(group_enter[gi]) - _xlogx(offset[gi])
    for m in range(n):
        if m_size[m] > 0:
            length += _term(m_lenter[m] + (tele_total - m_tout[m]) * m_tin[m],
                            m_lexit[m] + m_tout[m] * (1.0 - m_tin[m]), m_flow[m])
    return module, length


@numba.njit(cache=True)
def _aggregate(out_ptr, out_idx, out_flow, flow, tele_out, tele_in, group, module):
    """Coarse-grain modules into units: (new index of each unit, k, the coarse out-CSR,
    flows, teleport terms and group of each coarse unit)."""
    n = len(flow)
    remap = np.full(n, -1, np.int64)
    label = np.empty(n, np.int64)
    k = 0
    for u in range(n):
        m = module[u]
        if remap[m] < 0:
            remap[m] = k
            k += 1
        label[u] = remap[m]
    start = np.zeros(k + 1, np.int64)
    for u in range(n):
        start[label[u] + 1] += 1
    start = np.cumsum(start)
    fill = start[:-1].copy()
    members = np.empty(n, np.int64)
    c_flow = np.zeros(k)
    c_tout = np.zeros(k)
    c_tin = np.zeros(k)
    c_group = np.zeros(k, np.int64)
    for u in range(n):
        c = label[u]
        members[fill[c]] = u
        fill[c] += 1
        c_flow[c] += flow[u]
        c_tout[c] += tele_out[u]
        c_tin[c] += tele_in[u]
        c_group[c] = group[u]
    c_ptr = np.zeros(k + 1, np.int64)
    c_idx = np.empty(len(out_idx), np.int64)
    c_val = np.empty(len(out_idx), np.float64)
    acc = np.zeros(k)
    stamp = np.full(k, -1, np.int64)
    touched = np.empty(k, np.int64)
    pos = 0
    for c in range(k):
        n_touched = 0
        for i in range(start[c], start[c + 1]):
            u = members[i]
            for e in range(out_ptr[u], out_ptr[u + 1]):
                t = label[out_idx[e]]
                if t == c:
                    continue
                if stamp[t] != c:
                    stamp[t] = c
                    acc[t] = 0.0
                    touched[n_touched] = t
                    n_touched += 1
                acc[t] += out_flow[e]
        for i in range(n_touched):
            c_idx[pos] = touched[i]
            c_val[pos] = acc[touched[i]]
            pos += 1
        c_ptr[c + 1] = pos
    return label, k, c_ptr, c_idx[:pos].copy(), c_val[:pos].copy(), c_flow, c_tout, c_tin, c_group
