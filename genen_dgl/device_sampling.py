"""Uniform neighbour sampling in torch ops, on the training device (issue 8).

DGL's CPU build samples on the host; on a GPU the blocks then cross the PCIe bus every
batch. Here each relation's in-edges are kept as a CSC on the device (built once from the
DGL graph), and a batch is sampled, relabelled and assembled into the model's
:class:`~genen_dgl.nn.sparse.MessageBlock` s there, with no Python loop over nodes:

* **sampling**: for each destination node and relation, up to ``fanout`` in-neighbours
  *without replacement*, uniformly (all of them when the degree is at most the fanout).
  Nodes with more neighbours draw a uniform ``fanout``-subset of their edge offsets with
  Floyd's algorithm, vectorised over nodes (a loop over the ``fanout`` draws only).
  ``fanout = -1`` takes every in-edge, as DGL's does.
* **relabelling**: a device-resident map per node type (``-1`` = not yet seen); the
  destination nodes come first among the source nodes of their type (DGL's block
  convention), then the new sources (sorted by id).
* **structure**: :meth:`~genen_dgl.nn.sparse.Relation.from_csc` on the sampled edges, on
  the device: the same construction :func:`genen_dgl.dataloading.to_message_block` applies
  to a DGL block (parent edge ids in ``eid``, so fixed and learned edge weights work;
  self-loops for same-type relations and self-relations for the other node types; GCN
  coefficients from the whole graph's degrees; the source-major transpose).

:class:`DeviceBatches` is a :class:`~genen_dgl.batches.SeedBatches` sampler like
:class:`~genen_dgl.dataloading.NeighborBatches` (``len``, ``sample(seeds)``, ``epoch(seed)``
yielding :class:`~genen_dgl.batches.Batch`), with the same seed order per epoch seed.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from genen_dgl.batches import Batch, SeedBatches
from genen_dgl.nn.sparse import ETYPE, MessageBlock, Relation, offsets, segment_arange


def floyd_sample(deg: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, k)`` distinct offsets in ``[0, deg_i)`` per row, a uniform ``k``-subset each
    (requires ``deg_i >= k``), ascending along each row.

    Floyd's algorithm: for ``j = deg - k .. deg - 1`` draw ``t`` uniform in ``[0, j]`` and
    take ``t`` unless already taken, else ``j``. Each step is one vectorised op over rows."""
    n = deg.numel()
    picks = torch.empty((n, k), dtype=torch.int64, device=deg.device)
    if n == 0 or k == 0:
        return picks
    u = torch.rand((n, k), generator=generator, device=deg.device, dtype=torch.float64)
    for i in range(k):
        j = deg - (k - i)  # (n,), the largest value this step may take
        t = torch.minimum((u[:, i] * (j + 1).to(torch.float64)).to(torch.int64), j)
        if i:
            taken = (picks[:, :i] == t[:, None]).any(1)
            t = torch.where(taken, j, t)
        picks[:, i] = t
    return picks.sort(1).values


@dataclass
class DeviceCSC:
    """One relation's in-edges over the whole graph: ``indptr`` over destinations,
    ``indices`` = source node of each edge, ``eid`` = its edge id in the graph."""

    indptr: torch.Tensor
    indices: torch.Tensor
    eid: torch.Tensor

    @property
    def num_edges(self) -> int:
        return self.indices.numel()

    def sample(self, dst: torch.Tensor, fanout: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """In-edges of the nodes ``dst``: up to ``fanout`` per node, uniformly without
        replacement (every one when ``fanout < 0`` or the degree is at most ``fanout``).

        Returns ``(src, eid, counts)``: source node and edge id of each sampled edge,
        grouped by destination in the order of ``dst`` (ascending edge position within a
        destination), and the number of edges sampled per destination."""
        dev = dst.device
        if dst.numel() == 0 or self.num_edges == 0 or fanout == 0:
            empty = torch.empty(0, dtype=torch.int64, device=dev)
            return empty, empty, torch.zeros(dst.numel(), dtype=torch.int64, device=dev)
        start = self.indptr[dst]
        deg = self.indptr[dst + 1] - start
        if fanout < 0:
            counts = deg
            seg, off = segment_arange(counts)
            pos = start[seg] + off
        else:
            counts = deg.clamp(max=fanout)
            off = torch.arange(fanout, device=dev).expand(dst.numel(), fanout).clone()
            big = torch.nonzero(deg > fanout).flatten()
            if big.numel():
                off[big] = floyd_sample(deg[big], fanout, generator)
            valid = off < deg[:, None]
            pos = (start[:, None] + off)[valid]
        return self.indices[pos], self.eid[pos], counts


class DeviceGraph:
    """The graph's structure on ``device``: one :class:`DeviceCSC` per relation, the edge
    weights, and scratch maps for relabelling. Built once per graph and device (cached)."""

    _cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, graph, device, weights: dict[ETYPE, torch.Tensor] | None = None):
        self.device = torch.device(device)
        self.etypes: list[ETYPE] = list(graph.canonical_etypes)
        self.ntypes: list[str] = list(graph.ntypes)
        self.num_nodes = {t: graph.num_nodes(t) for t in self.ntypes}
        self.csc: dict[ETYPE, DeviceCSC] = {}
        for e in self.etypes:
            indptr, indices, eid = graph.adj_tensors("csc", e)
            self.csc[e] = DeviceCSC(*(x.to(self.device, torch.int64) for x in (indptr, indices, eid)))
        self.degrees = {e: (torch.bincount(c.indices, minlength=self.num_nodes[e[0]]), c.indptr[1:] - c.indptr[:-1])
                        for e, c in self.csc.items()}  # (out-degree of each source, in-degree of each dst)
        self.weights = {e: w.to(self.device, torch.float32) for e, w in (weights or {}).items()}
        self._map = {t: torch.full((n,), -1, dtype=torch.int64, device=self.device) for t, n in self.num_nodes.items()}

    @classmethod
    def of(cls, graph, device, weights: dict[ETYPE, torch.Tensor] | None = None) -> "DeviceGraph":
        """The cached DeviceGraph of ``graph`` on ``device`` with these weights."""
        device = torch.device(device)
        per_graph = cls._cache.setdefault(graph, {})
        key = (str(device), tuple(sorted((":".join(e), w.data_ptr(), w.numel()) for e, w in (weights or {}).items())))
        if key not in per_graph:
            per_graph[key] = cls(graph, device, weights)
        return per_graph[key]

    def relabel(self, ntype: str, dst: torch.Tensor, srcs: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Source nodes of one type (``dst`` first, then the other ids in ``srcs``, sorted)
        and each ``srcs`` tensor as local indices into them."""
        table = self._map[ntype]
        m = dst.numel()
        table[dst] = torch.arange(m, device=self.device)
        try:
            cand = torch.cat(srcs) if srcs else dst[:0]
            new = torch.unique(cand[table[cand] < 0])
            table[new] = torch.arange(m, m + new.numel(), device=self.device)
            local = [table[s] for s in srcs]
            nodes = torch.cat([dst, new])
        finally:
            table[dst] = -1
            if srcs:
                table[torch.cat(srcs)] = -1
        return nodes, local

    def sample_blocks(self, seeds: dict[str, torch.Tensor], fanouts: list, self_loops: bool = True,
                      generator: torch.Generator | None = None, return_edges: bool = False
                      ) -> tuple[dict[str, torch.Tensor], list[MessageBlock], list[dict]]:
        """Multi-layer sampling from ``seeds`` (node ids per type). ``fanouts[i]`` (an int or
        a dict over every etype) is layer ``i``'s, the last one next to the seeds, as in
        ``dgl.dataloading.NeighborSampler``. Returns the input nodes per type, the blocks
        (first layer first) and, with ``return_edges``, per block the sampled edges in parent
        ids (``{etype: (src, dst, eid)}``, without self-loops), for tests and comparisons."""
        dst = {t: seeds[t].to(self.device, torch.int64) if t in seeds else
               torch.empty(0, dtype=torch.int64, device=self.device) for t in self.ntypes}
        blocks: list[MessageBlock] = []
        edges: list[dict] = []
        for fanout in reversed(fanouts):
            sampled = {}
            for e in self.etypes:
                k = fanout[e] if isinstance(fanout, dict) else int(fanout)
                sampled[e] = self.csc[e].sample(dst[e[2]], k, generator)
            src_nodes, local = {}, {}
            for t in self.ntypes:
                rels = [e for e in self.etypes if e[0] == t]
                src_nodes[t], cols = self.relabel(t, dst[t], [sampled[e][0] for e in rels])
                local.update(zip(rels, cols))
            relations, parent_edges = {}, {}
            for e in self.etypes:
                src, eid, counts = sampled[e]
                out_deg, in_deg = self.degrees[e]
                relations[e] = Relation.from_csc(src_nodes[e[0]].numel(), counts.numel(), offsets(counts), local[e],
                                                 eid, self.weights.get(e), self_loops=self_loops and e[0] == e[2],
                                                 src_degree=out_deg[src_nodes[e[0]]], dst_degree=in_deg[dst[e[2]]])
                if return_edges:
                    d = torch.repeat_interleave(dst[e[2]], counts, output_size=src.numel())
                    parent_edges[e] = (src, d, eid)
            num_src, num_dst = {t: n.numel() for t, n in src_nodes.items()}, {t: n.numel() for t, n in dst.items()}
            blocks.insert(0, MessageBlock.assemble(relations, num_src, num_dst, self_loops))
            edges.insert(0, parent_edges)
            dst = src_nodes
        return dst, blocks, edges


class DeviceBatches(SeedBatches):
    """Minibatches of seed nodes sampled on ``device`` by :class:`DeviceGraph`, with the
    same per-epoch seed order as :class:`~genen_dgl.dataloading.NeighborBatches`. Batches
    come out already on ``device`` (``Batch.to`` is then a no-op)."""

    def __init__(self, graph, seeds: np.ndarray, fanouts, batch_size: int, weights: dict[ETYPE, torch.Tensor],
                 target: str = "gene", shuffle: bool = True, device="cpu", self_loops: bool = True,
                 device_graph: DeviceGraph | None = None):
        super().__init__(seeds, batch_size, shuffle)
        self.device = torch.device(device)
        self.graph = device_graph or DeviceGraph.of(graph, self.device, weights)
        self.fanouts, self.target, self.self_loops = list(fanouts), target, self_loops

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        seeds = seeds.to(self.device)
        input_nodes, blocks, _ = self.graph.sample_blocks({self.target: seeds}, self.fanouts, self.self_loops,
                                                          generator)
        return Batch(input_nodes, seeds, blocks)

    def epoch(self, seed: int) -> Iterator[Batch]:
        """One pass over the seeds; ``seed`` fixes the order (as NeighborBatches') and the
        sampled neighbours (a generator on the device)."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        for chunk in self.chunks(seed):
            yield self.sample(chunk, gen)
