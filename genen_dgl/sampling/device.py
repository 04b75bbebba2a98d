"""Uniform neighbour sampling in torch ops on the training device, without host synchronisation.

DGL's CPU build samples on the host; on a GPU the blocks then cross the PCIe bus every
batch. Here the graph's relations are one **typed CSC** on the device (rows: every
relation's destination nodes; columns: node ids of all types stacked, ``type_off[t] + u``),
and a layer is sampled, relabelled and assembled into a
:class:`~genen_dgl.nn.sparse.MessageBlock` with a fixed number of vectorised ops, whose
shapes depend only on the batch size and the fanouts (known on the host), never on the
sampled data. Nothing is read back from the device, so a GPU step runs without waiting:

* **static bounds**: a layer's destinations of type ``t`` are a padded list of ``m_t``
  slots (a slot past the real nodes holds the *sink* id, a node with no edges); a
  (relation, destination) row gets ``k_r`` entries (the relation's fanout, capped at its
  largest in-degree) plus one for its self-loop where the relation has loops; padding is
  masked (``mask``) and has coefficient 0. The sources of
  type ``t`` are the destinations, then ``min(candidates, N_t)`` slots for new nodes;
  where that would reach ``N_t``, the type is *whole*: all its nodes in id order (the
  deeper layers at paper scale), no relabelling, and the block's ``dst_src`` says where
  each destination sits among them.
* **sampling**: every relation's rows in one call, :func:`floyd_sample` per row: up to
  ``fanout`` in-neighbours *without replacement*, uniformly (all when the degree is at
  most the fanout; ``fanout = -1``: all, with the relation's largest in-degree as bound).
* **relabelling** without ``unique``: a dense mark over all node ids, a prefix sum gives
  each new source its slot (new sources of a type sorted by id, after the destinations,
  DGL's block convention), one scatter writes the node list.
* **coefficients**: as :meth:`~genen_dgl.nn.sparse.MessageBlock.build` (the whole graph's
  degrees, rescaled by degree / sampled count), parent edge ids in ``eid`` (learned edge
  weights), fixed weights read per entry. Self-loops and a padding entry are entries of
  the typed CSC too, and each entry carries its coefficient for the layer's fanouts
  (:meth:`DeviceGraph.coefficients`), so a layer's coefficients are one gather.

:class:`DeviceBatches` is a :class:`~genen_dgl.sampling.base.SeedBatches` sampler like
:class:`~genen_dgl.sampling.neighbor.NeighborBatches` (``len``, ``sample(seeds)``, ``epoch(seed)``
yielding :class:`~genen_dgl.sampling.base.Batch`), with the same seed order per epoch seed.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from genen_dgl.sampling.base import Batch, SeedBatches
from genen_dgl.nn.sparse import (
    SELF, ETYPE, MessageBlock, destination_order, offsets, relation_order, self_relations, starts,
)


def floyd_sample(deg: torch.Tensor, k: torch.Tensor | int, width: int | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row ``i``: ``n_i = min(deg_i, k_i)`` distinct offsets in ``[0, deg_i)``, a uniform
    subset (all of them when ``deg_i <= k_i``), in the first ``n_i`` columns of a
    ``(rows, width)`` tensor (``width`` = the largest ``k``), and the mask of those columns.
    ``deg`` and ``k``: ``(rows,)`` or ``(rows, 1)`` (no reshaping on the sampler's path).

    Floyd's algorithm draws, for ``j = deg - n + i`` (``i = 0 .. n-1``), ``t_i`` uniform in
    ``[0, j]`` and takes ``t_i`` unless already taken, else ``j``. It runs here without a
    loop over ``i``: ``t_i`` was taken iff it equals an earlier draw, or equals an earlier
    ``j_p`` (``p = t_i - deg + n``) that was taken because *its* draw collided; that chain
    points to ever smaller ``p``, and ``log2(width)`` rounds of pointer doubling resolve it."""
    dev = deg.device
    width = int(torch.as_tensor(k).max()) if width is None else width
    i, earlier = _columns(width, dev)
    k = torch.as_tensor(k, device=dev)
    deg, k = (x if x.dim() == 2 else x.view(-1, 1) for x in (deg, k))
    n = torch.minimum(deg, k)
    valid = i < n
    if deg.numel() == 0 or width == 0:
        return torch.zeros(valid.shape, dtype=torch.int64, device=dev), valid
    low = deg - n
    j = low + i
    u = torch.rand(valid.shape, generator=generator, device=dev, dtype=torch.float64)
    t = torch.addcmul(u, u, j).to(torch.int64)  # floor(u (j + 1))
    # each column points to the earlier column p whose j_p is t_i (to itself: none), a column
    # whose draw repeats an earlier one to the extra column `width` (taken); column i was taken
    # iff its chain ends there, and ceil(log2(width)) rounds of pointer doubling follow the chains
    dup = ((t.unsqueeze(2) == t.unsqueeze(1)) & earlier).any(2)
    parent = t - low
    parent = torch.where(dup, width, torch.where(parent >= 0, parent, i))
    parent = torch.nn.functional.pad(parent, (0, 1), value=width)
    for _ in range(math.ceil(math.log2(width))):
        parent = parent.gather(1, parent)
    taken = parent[:, :width] == width
    return torch.where(taken, j, t), valid


@functools.lru_cache(maxsize=32)
def _columns(width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``arange(width)`` and the ``(width, width)`` mask of column pairs ``p < i``."""
    i = torch.arange(width, device=device)
    return i, i[None, :] < i[:, None]


@dataclass
class Sampled:
    """What one layer sampled, in parent ids (for tests and comparisons): per relation the
    sampled edges ``(src, dst, eid)`` without self-loops, per node type the block's source
    slots (-1: padding)."""

    edges: dict[ETYPE, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    sources: dict[str, torch.Tensor]


class _Layout:
    """The static part of sampling one layer: shapes and index tensors that depend only on
    the destination counts per type (the batch size) and the fanouts. Built on the host
    once per shape and kept."""

    def __init__(self, g: "DeviceGraph", m: dict[str, int], fanouts: list[int]):
        dev = g.device
        dst_off = starts(g.ntypes, m)
        self.K = max([k for k in fanouts] + [0])
        rows_sel, k_row, rel_row = [], [], []
        cand = dict.fromkeys(g.ntypes, 0)
        for r, (s, _, d) in enumerate(g.etypes):
            rows_sel.append(torch.arange(dst_off[d], dst_off[d] + m[d]))
            k_row += [fanouts[r]] * m[d]
            rel_row += [r] * m[d]
            cand[s] += m[d] * fanouts[r]
        # a type whose slots would reach its node count takes all its nodes, in id order
        self.whole = {t: m[t] + min(cand[t], g.num_nodes[t]) >= g.num_nodes[t] > 0 for t in g.ntypes}
        self.num_src = {t: g.num_nodes[t] if self.whole[t] else m[t] + min(cand[t], g.num_nodes[t]) for t in g.ntypes}
        src_off = starts(g.ntypes, self.num_src)
        # per row, as (rows, 1) columns: its destination slot, relation, fanout
        self.sel = torch.cat(rows_sel).to(dev).view(-1, 1)
        self.rows = self.sel.numel()
        self.rel_col = torch.tensor(rel_row, dtype=torch.int64, device=dev).view(-1, 1)
        k = torch.tensor(k_row, dtype=torch.int64).view(-1, 1)
        loop = torch.tensor([g.loops[r] for r in rel_row], dtype=torch.bool).view(-1, 1)
        self.k = k.to(dev)
        self.rel = self.rel_col.view(-1)
        self.coef = g.coefficients(tuple(fanouts))
        # destination slot -> its source slot (destinations are the first sources of their type;
        # for a whole type the slot is its id's, set per batch: here the dummy slot past the end)
        self.total_src = sum(self.num_src.values())
        self.dst_to_src = torch.cat([torch.full((m[t],), self.total_src) if self.whole[t] else
                                     torch.arange(m[t]) + src_off[t] for t in g.ntypes]).to(dev)
        # where a padded destination slot reads (a whole type's, in dst_src): its type's first source
        self.dst_home = torch.cat([torch.full((m[t],), src_off[t]) for t in g.ntypes]).to(dev)
        self.any_whole = any(self.whole.values())
        whole = torch.tensor([self.whole[t] for t in g.ntypes] + [False], device=dev)
        type_of_id = torch.cat([g.type_of_id[:-1], torch.full((1,), len(g.ntypes), device=dev)])  # sink: none
        self.whole_id = whole[type_of_id]  # (sink + 1,) ids of whole types
        shift = torch.tensor([src_off[t] - g.type_off[t] for t in g.ntypes] + [0], device=dev)
        self.whole_slot = torch.arange(g.sink + 1, device=dev) + shift[type_of_id]
        self.all_whole = all(self.whole[t] or g.num_nodes[t] == 0 for t in g.ntypes)
        if self.all_whole:
            self.whole_slot[g.sink] = 0  # sinks read slot 0 (their entries are masked)
            self.all_nodes = torch.arange(g.sink, device=dev)  # the stacked sources: every node, in id order
        # per type: first source slot of the new nodes; the first global id of the type
        self.new_at = torch.tensor([src_off[t] + m[t] for t in g.ntypes], dtype=torch.int64, device=dev)
        self.total = torch.tensor(self.total_src, device=dev)
        # a row is drawn as K + 1 columns (K sampled, then the loop); it keeps its first k_r and,
        # where its relation has loops, the last: one static gather compacts the draw (at paper
        # scale the first layer's GO rows need 5-11 of the 11 columns: 30% fewer entries)
        slots = torch.arange(self.K + 1)
        kept = (slots < k) | ((slots == self.K) & loop)
        widths = kept.sum(1)
        self.keep = None if bool(kept.all()) else kept.view(-1).nonzero().view(-1).to(dev)
        entries = int(widths.sum())
        self.rowptr = offsets(widths).to(dev, torch.int32 if entries <= 2**31 - 1 else torch.int64)
        self.entry_row = torch.repeat_interleave(torch.arange(self.rows), widths).to(dev)
        self.entry_rel = self.rel[self.entry_row]
        self.by_destination = destination_order(g.ntypes, tuple(g.etypes), tuple(m[t] for t in g.ntypes),
                                                self.rowptr, entries)
        # for padding: a slot of each entry's source type
        self.pad_col = torch.tensor([src_off[e[0]] for e in g.etypes], dtype=torch.int64, device=dev)[self.entry_rel]

    def compact(self, drawn: torch.Tensor) -> torch.Tensor:
        """A ``(rows, K + 1)`` draw as the block's entries (see ``keep``)."""
        drawn = drawn.reshape(-1)
        return drawn if self.keep is None else drawn.index_select(0, self.keep)


class DeviceGraph:
    """The graph's structure on ``device`` as one typed CSC (relations in block row order,
    with the self-relations of :func:`~genen_dgl.nn.sparse.self_relations` as empty
    relations whose rows get loops), per relation the out-degree of every node, the fixed
    edge weights per entry. Built once per graph, device and weights (cached)."""

    _cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, graph, device, weights: dict[ETYPE, torch.Tensor] | None = None, self_loops: bool = True):
        self.device = dev = torch.device(device)
        weights = weights or {}
        self.ntypes: tuple[str, ...] = tuple(sorted(graph.ntypes))
        self.num_nodes = {t: graph.num_nodes(t) for t in self.ntypes}
        self.type_off = starts(self.ntypes, self.num_nodes)
        self.sink = sum(self.num_nodes.values())  # a node id past every type: no edges, never a source
        real = list(graph.canonical_etypes)
        self.etypes: list[ETYPE] = relation_order(real + (self_relations(real) if self_loops else []))
        self.loops = [self_loops and e[0] == e[2] for e in self.etypes]
        self.max_degree: list[int] = []
        in_degs, first_entry, indices, eids, wts, coefs, loop_coefs = [], [], [], [], [], [], []
        self.crow_off, rows, entries = [], 0, 0
        for e, loop in zip(self.etypes, self.loops):
            s, _, d = e
            self.crow_off.append(rows)
            if e in real:
                ptr, idx, eid = (x.to(torch.int64) for x in graph.adj_tensors("csc", e))
                w = weights[e].to(torch.float32)[eid] if e in weights else torch.ones(idx.numel())
            else:  # a self-relation: no edges, only the loops
                ptr, idx, eid, w = (torch.zeros(self.num_nodes[d] + 1, dtype=torch.int64),
                                    torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.ones(0))
            in_deg = ptr.diff()
            in_degs.append(in_deg)
            first_entry.append(ptr[:-1] + entries)
            indices.append(idx + self.type_off[s])
            eids.append(eid)
            wts.append(w)
            # eq. 1's coefficient of each edge, 1 / sqrt((d_out(u) + loop) (d_in(v) + loop)), and of each loop
            out_deg = torch.bincount(idx, minlength=self.num_nodes[s]).to(torch.float32)
            row_fac = (in_deg + int(loop)).clamp(min=1).to(torch.float32).rsqrt()
            coefs.append((out_deg + int(loop)).clamp(min=1).rsqrt()[idx] * torch.repeat_interleave(row_fac, in_deg))
            loop_coefs.append((out_deg + 1).rsqrt() * row_fac if loop else torch.zeros(self.num_nodes[d]))
            self.max_degree.append(int(in_deg.max()) if in_deg.numel() else 0)
            rows += self.num_nodes[d]
            entries += idx.numel()
        # per entry: the source id, parent edge id, weight and coefficient; entry `entries + p` is
        # row p's loop (p -> p; coefficient 0 where the relation has none), the last one the padding
        # entry (the sink, coefficient 0)
        self.num_edges, pad = entries, entries + rows
        loop_src = torch.cat([torch.arange(self.num_nodes[e[2]]) + self.type_off[e[2]] if loop else
                              torch.full((self.num_nodes[e[2]],), self.sink) for e, loop in zip(self.etypes, self.loops)]
                             + [torch.tensor([self.sink])])
        self.src = torch.cat(indices + [loop_src]).to(dev)
        self.eid = torch.cat(eids + [torch.full((rows + 1,), -1)]).to(dev)
        self.weight = torch.cat(wts + [torch.ones(rows + 1)]).to(dev) if weights else None
        self.coef = torch.cat(coefs + loop_coefs + [torch.zeros(1)]).to(dev)
        self.in_deg = torch.cat(in_degs).to(dev)
        self._coefs: dict[tuple[int, ...], torch.Tensor] = {}
        # per (relation, node id): its typed-CSC row's first entry, degree, and loop entry; an id of
        # another type, or the sink, has an empty row and the padding entry as its loop (one gather
        # per layer finds every row: R x (N + 1) x 3 integers, 16 MB at paper scale)
        by_id = torch.zeros(len(self.etypes), self.sink + 1, 3, dtype=torch.int64)
        by_id[:, :, 2] = pad
        for r, (e, loop) in enumerate(zip(self.etypes, self.loops)):
            n, at = self.num_nodes[e[2]], self.type_off[e[2]]
            by_id[r, at: at + n, 0], by_id[r, at: at + n, 1] = first_entry[r], in_degs[r]
            if loop:
                by_id[r, at: at + n, 2] = torch.arange(n) + entries + self.crow_off[r]
        self.by_id = by_id.to(dev)
        # the scalars the sampler combines with tensors, as device tensors (a Python number
        # would be copied to the device at every use)
        self.pad_entry, self.zero = (torch.tensor(v, device=dev) for v in (pad, 0))
        self.ids = torch.arange(self.sink + 1, device=dev)
        sizes = torch.tensor([self.num_nodes[t] for t in self.ntypes])
        self.type_of_id = torch.cat([torch.repeat_interleave(torch.arange(len(self.ntypes)), sizes),
                                     torch.zeros(1, dtype=torch.int64)]).to(dev)  # the sink: type 0, never new
        self.local_id = torch.cat([torch.arange(self.num_nodes[t]) for t in self.ntypes]
                                  + [torch.zeros(1, dtype=torch.int64)]).to(dev)  # of each id (the sink: 0)
        self.type_start = torch.tensor([self.type_off[t] for t in self.ntypes], dtype=torch.int64, device=dev)
        self._layouts: dict = {}

    @classmethod
    def of(cls, graph, device, weights: dict[ETYPE, torch.Tensor] | None = None,
           self_loops: bool = True) -> "DeviceGraph":
        """The cached DeviceGraph of ``graph`` on ``device`` with these weights."""
        device = torch.device(device)
        per_graph = cls._cache.setdefault(graph, {})
        key = (str(device), self_loops,
               tuple(sorted((":".join(e), w.data_ptr(), w.numel()) for e, w in (weights or {}).items())))
        if key not in per_graph:
            per_graph[key] = cls(graph, device, weights, self_loops)
        return per_graph[key]

    def _fanouts(self, fanout) -> list[int]:
        """One layer's fanout per relation (self-relations: 0), capped at the relation's largest
        in-degree (-1: that degree): no row can fill more slots, and cuSPARSE refuses a matrix
        with more entries than rows x columns, which wider padded rows can reach on small graphs."""
        out = []
        for r, e in enumerate(self.etypes):
            k = 0 if e[1] == SELF else int(fanout[e] if isinstance(fanout, dict) else fanout)
            out.append(self.max_degree[r] if k < 0 else min(k, self.max_degree[r]))
        return out

    def coefficients(self, fanouts: tuple[int, ...]) -> torch.Tensor:
        """Each entry's coefficient in a layer with these fanouts (one per relation): eq. 1's
        (the whole graph's degrees) times, on an edge, :math:`\\max(d(v) / k_r, 1)`: uniform
        sampling without replacement keeps an edge with probability :math:`k_r / d(v)` (all of
        them when :math:`d(v) \\le k_r`), so the sampled sum is unbiased for the whole one."""
        if fanouts not in self._coefs:
            rows = torch.tensor([self.num_nodes[e[2]] for e in self.etypes], device=self.device)
            k = torch.repeat_interleave(torch.tensor(fanouts, device=self.device).clamp(min=1), rows)
            scale = torch.repeat_interleave((self.in_deg / k).clamp(min=1), self.in_deg, output_size=self.num_edges)
            self._coefs[fanouts] = torch.cat([self.coef[: self.num_edges] * scale, self.coef[self.num_edges:]])
        return self._coefs[fanouts]

    def _layout(self, m: dict[str, int], fanouts: list[int]) -> _Layout:
        key = (tuple(m.values()), tuple(fanouts))
        if key not in self._layouts:
            self._layouts[key] = _Layout(self, m, fanouts)
        return self._layouts[key]

    def _relabel(self, lay: _Layout, dst: torch.Tensor, src: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The layer's stacked source node ids, each sampled ``src`` id as a source slot, and
        (where some type is whole) each destination's source slot. A type's sources are its
        destinations, then its new ids in id order, then padding (sinks); a whole type's are
        all its nodes in id order."""
        S = self.sink
        if lay.all_whole:  # every source is where its id says
            return lay.all_nodes, lay.whole_slot[src], torch.where(dst == S, lay.dst_home, lay.whole_slot[dst])
        mark = torch.zeros(S + 1, dtype=torch.bool, device=self.device)
        mark.index_fill_(0, src.view(-1), True).index_fill_(0, dst, False)[S:].fill_(False)  # the new ids
        # (fill_, not mark[S] = False: an assignment copies a host scalar to the device,
        # a synchronisation that CUDA graph capture refuses)
        if lay.any_whole:
            mark &= ~lay.whole_id
        rank = torch.cumsum(mark, 0) - mark.long()  # among all new ids, in id order
        first = lay.new_at - rank[self.type_start]  # per type: slot of the new id of rank 0 within the type
        slot = torch.where(mark, first[self.type_of_id] + rank, self.zero)
        slot.index_put_((dst,), lay.dst_to_src)
        if lay.any_whole:
            slot = torch.where(lay.whole_id, lay.whole_slot, slot)
        slot[S:].fill_(0)  # sinks read slot 0 (their entries are masked)
        nodes = torch.full((lay.total_src + 1,), S, dtype=torch.int64, device=self.device)
        nodes.index_put_((torch.where(mark | lay.whole_id if lay.any_whole else mark, slot, lay.total),), self.ids)
        nodes = nodes.index_put_((lay.dst_to_src,), dst)[:-1]
        return nodes, slot[src], torch.where(dst == S, lay.dst_home, slot[dst]) if lay.any_whole else None

    def _sample_layer(self, dst: torch.Tensor, m: dict[str, int], fanout, generator):
        """One layer from its stacked destination ids ``dst`` (``m[t]`` slots per type)."""
        lay = self._layout(m, self._fanouts(fanout))
        d = dst[lay.sel]  # (rows, 1): each row's destination id
        start, deg, loop = self.by_id[lay.rel_col, d].unbind(-1)  # its typed-CSC row
        off, valid = floyd_sample(deg, lay.k, lay.K, generator)
        # the row's entries: the drawn ones (else the padding entry), then its loop
        at = lay.compact(torch.cat([torch.where(valid, start + off, self.pad_entry), loop], 1))
        valid = at != self.pad_entry
        nodes, col, dst_src = self._relabel(lay, dst, self.src[at])
        block = MessageBlock(
            self.ntypes, tuple(self.etypes), dict(lay.num_src), dict(m), lay.rowptr,
            torch.where(valid, col, lay.pad_col), lay.rel, self.eid[at], lay.coef[at],
            None if self.weight is None else self.weight[at], valid, dst_src)
        block._cache.update(row=lay.entry_row, rel=lay.entry_rel, by_destination=lay.by_destination)  # static
        return nodes, lay.num_src, block, (at, d, valid)

    def sample_blocks(self, seeds: dict[str, torch.Tensor], fanouts: list, generator: torch.Generator | None = None,
                      return_edges: bool = False) -> tuple[dict[str, torch.Tensor], list[MessageBlock], list[Sampled]]:
        """Multi-layer sampling from ``seeds`` (node ids per type). ``fanouts[i]`` (an int or
        a dict over every etype) is layer ``i``'s, the last one next to the seeds, as in
        ``dgl.dataloading.NeighborSampler``. Returns the input nodes per type (padding
        slots hold node 0: their rows are never read), the blocks (first layer first) and,
        with ``return_edges``, per block a :class:`Sampled` record (this reads back from the device)."""
        m = {t: int(seeds[t].numel()) if t in seeds else 0 for t in self.ntypes}
        parts = [seeds[t].to(self.device, torch.int64) + self.type_off[t] for t in self.ntypes if m[t]]
        dst = parts[0] if len(parts) == 1 else torch.cat(parts + [self.ids[:0]])  # (no seeds: empty)
        blocks: list[MessageBlock] = []
        edges: list[Sampled] = []
        for fanout in reversed(fanouts):
            nodes, m_next, block, sampled = self._sample_layer(dst, m, fanout, generator)
            blocks.insert(0, block)
            if return_edges:
                edges.insert(0, Sampled(self._edges(sampled, self._layout(m, self._fanouts(fanout))),
                                        self._ids(nodes, m_next)))
            dst, m = nodes, m_next
        inputs = self.local_id[dst].split([m[t] for t in self.ntypes])
        return dict(zip(self.ntypes, inputs)), blocks, edges

    def _ids(self, nodes: torch.Tensor, m: dict[str, int]) -> dict[str, torch.Tensor]:
        """Stacked source slots as parent ids per type, -1 on padding."""
        off = starts(self.ntypes, m)
        ids = {t: nodes[off[t]: off[t] + m[t]] for t in self.ntypes}
        return {t: torch.where(n == self.sink, -1, n - self.type_off[t]) for t, n in ids.items()}

    def _edges(self, sampled, lay: _Layout) -> dict:
        """A layer's sampled edges per relation as (src, dst, eid) in parent ids."""
        at, d, valid = sampled
        real = valid & (self.eid[at] >= 0)
        d = d.view(-1)[lay.entry_row]
        out = {}
        for r, e in enumerate(self.etypes):
            if e[1] != SELF:
                keep = real & (lay.entry_rel == r)
                out[e] = (self.src[at[keep]] - self.type_off[e[0]], d[keep] - self.type_off[e[2]], self.eid[at[keep]])
        return out


class DeviceBatches(SeedBatches):
    """Minibatches of seed nodes sampled on ``device`` by :class:`DeviceGraph`, with the
    same per-epoch seed order as :class:`~genen_dgl.sampling.neighbor.NeighborBatches`. Batches
    come out already on ``device`` (``Batch.to`` is then a no-op)."""

    def __init__(self, graph, seeds: np.ndarray, fanouts, batch_size: int, weights: dict[ETYPE, torch.Tensor],
                 target: str = "gene", shuffle: bool = True, device="cpu", self_loops: bool = True,
                 device_graph: DeviceGraph | None = None):
        super().__init__(seeds, batch_size, shuffle)
        self.device = torch.device(device)
        self.graph = device_graph or DeviceGraph.of(graph, self.device, weights, self_loops)
        self.fanouts, self.target = list(fanouts), target

    @classmethod
    def for_run(cls, graph, seeds, fanouts, batch_size, weights, device, deterministic) -> "DeviceBatches":
        return cls(graph, seeds, fanouts, batch_size, weights, device=device)

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        seeds = seeds.to(self.device)
        input_nodes, blocks, _ = self.graph.sample_blocks({self.target: seeds}, self.fanouts, generator)
        return Batch(input_nodes, seeds, blocks)

    def epoch(self, seed: int) -> Iterator[Batch]:
        """One pass over the seeds; ``seed`` fixes the order (as NeighborBatches') and the
        sampled neighbours (a generator on the device)."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        for chunk in self.chunks(seed):
            yield self.sample(chunk, gen)
