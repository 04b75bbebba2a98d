"""From DGL graphs and sampled blocks to :class:`MessageBlock` s, and what they read.

DGL's blocks (and whole graphs) are converted here to plain torch structures
(:mod:`genen_dgl.nn.sparse`) so the model runs on the training device: the relations'
adjacency (:func:`to_message_block`), with whole-graph degrees for a sampled block's GCN
coefficients (:class:`Degrees`); the fixed edge weights; per-layer, per-relation fanouts.
"""

from __future__ import annotations

import torch

from genen_dgl.dgl_compat import dgl
from genen_dgl.errors import InputError
from genen_dgl.nn.sparse import ETYPE, Adjacency, MessageBlock


class Degrees:
    """Each relation's whole-graph out-degrees (over its source type) and in-degrees (over
    its destination type): what a sampled block's GCN normalisation reads. They are kept as
    float tables, one per node type and side (out / in) with a row per relation, so that a
    block reads them with one gather per node type and side (4 on the paper's graph, not
    one per relation and side, 18). Eq. 1's factors are computed once, on the whole graph."""

    def __init__(self, degrees: dict[ETYPE, tuple[torch.Tensor, torch.Tensor]]):
        columns: dict[tuple[str, int], list[torch.Tensor]] = {}
        same: dict[tuple[str, int], list[float]] = {}  # per row: a relation within one type (it may get loops)
        self.column: dict[tuple[ETYPE, int], int] = {}  # (relation, 0: out / 1: in) -> its row in the tables
        for e, pair in degrees.items():
            for side, (t, d) in enumerate(zip((e[0], e[2]), pair)):
                self.column[e, side] = len(columns.setdefault((t, side), []))
                columns[t, side].append(d.to(torch.float32))
                same.setdefault((t, side), []).append(float(e[0] == e[2]))
        self.table = {key: torch.stack(c) for key, c in columns.items()}  # (node type, side) -> (relations, nodes)
        self.same = {key: torch.tensor(v)[:, None] for key, v in same.items()}
        self._factors: dict[bool, dict] = {}  # self_loops -> the tables of factors(), over the whole graph

    def factors(self, g, self_loops: bool, rename: dict[str, str]) -> tuple[dict, dict, dict]:
        """Per node type of ``g`` (a block: at its parent node ids), a row per relation:
        ``1 / sqrt(d~out)`` of its sources, ``1 / sqrt(d~in)`` and ``d / sqrt(d~in)`` of its
        destinations (``d~ = d + 1`` with a loop)."""
        if self_loops not in self._factors:  # the whole graph's, once
            inverse_root = {key: (d + self.same[key] * self_loops).clamp(min=1).rsqrt() for key, d in self.table.items()}
            self._factors[self_loops] = {key: f if key[1] == 0 else torch.cat([f, self.table[key] * f])
                                         for key, f in inverse_root.items()}
        table = self._factors[self_loops]

        def rows(side: int) -> dict[str, torch.Tensor]:
            types, nodes = (g.srctypes, g.srcnodes) if side == 0 else (g.dsttypes, g.dstnodes)
            return {t: table[rename.get(t, t), side].index_select(1, nodes[t].data[dgl.NID]) if g.is_block
                    else table[t, side] for t in types if (rename.get(t, t), side) in table}

        src, dst = rows(0), rows(1)
        return src, {t: f.chunk(2)[0] for t, f in dst.items()}, {t: f.chunk(2)[1] for t, f in dst.items()}

    def relation(self, etype: ETYPE, src: torch.Tensor, dst: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``etype``'s rows of :meth:`factors`' tables of its source and destination types."""
        c_out, c_in = self.column[etype, 0], self.column[etype, 1]
        return src[c_out], dst[c_in], scale[c_in]


def graph_degrees(graph) -> Degrees:
    """The :class:`Degrees` of ``graph``."""
    return Degrees({e: (graph.out_degrees(etype=e), graph.in_degrees(etype=e)) for e in graph.canonical_etypes})


def relation_of(g, etype: ETYPE, weight: torch.Tensor | None) -> Adjacency:
    """One relation of a graph or block as DGL holds it (``weight`` indexed by parent
    edge id). A sampled block's edges are read as DGL made them (COO, edge-id order),
    which its sampler groups by destination; the CSC (built on demand) serves where they
    are not."""
    rows = None
    if g.is_block:
        indices, rows = g.edges(etype=etype)
        eids = g.edges[etype].data[dgl.EID]
        if (rows[1:] >= rows[:-1]).all():
            counts = torch.bincount(rows, minlength=g.num_dst_nodes(etype[2]))
        else:
            indptr, indices, local = g.adj_tensors("csc", etype)
            counts, eids, rows = indptr.diff(), take(eids, local), None
    else:
        indptr, indices, eids = g.adj_tensors("csc", etype)
        counts = indptr.diff()
    return Adjacency(counts, indices, eids, None if weight is None else take(weight, eids), dst=rows)


def take(values, index: torch.Tensor):
    """``values[index]``; for a tensor with ``index_select`` (on the CPU 3x faster than
    advanced indexing), else (a DistTensor) by indexing."""
    return values.index_select(0, index) if isinstance(values, torch.Tensor) else values[index]


def to_message_block(g, weights: dict[ETYPE, torch.Tensor], self_loops: bool = True,
                     degrees: Degrees | None = None, names: dict[ETYPE, ETYPE] | None = None,
                     etypes: list[ETYPE] | None = None) -> MessageBlock:
    """Convert a DGL block (or a whole graph, src = dst) into a :class:`MessageBlock`.
    With ``self_loops``, same-type relations get ``A + I`` and node types without one get
    a self-relation (:func:`~genen_dgl.nn.sparse.self_relations`). A block's GCN
    coefficients use ``degrees`` (its parent graph's, :func:`graph_degrees`) so that it
    estimates the full-graph operator; a whole graph needs none. ``names`` renames the
    block's relations (and with them its node types), e.g. a DistGraph's ``(_N, _E, _N)``;
    ``etypes`` (the graph's relations) adds those a block lacks, empty (DGL's distributed
    sampler leaves out relations it drew no edge of)."""
    names = names or {}
    rename = {e[i]: names.get(e, e)[i] for e in g.canonical_etypes for i in (0, 2)}
    adjacency = {names.get(e, e): relation_of(g, e, weights.get(e)) for e in g.canonical_etypes}
    if degrees is not None:  # eq. 1's factors: one gather per node type and side, then whole tables
        src, dst, scale = degrees.factors(g, self_loops, rename)
        for e in g.canonical_etypes:
            adj = adjacency[names.get(e, e)]
            adj.src_factor, adj.dst_factor, adj.dst_scale = degrees.relation(names.get(e, e), src[e[0]], dst[e[2]],
                                                                             scale[e[2]])
    num_src = {rename.get(t, t): g.num_src_nodes(t) for t in g.srctypes}
    num_dst = {rename.get(t, t): g.num_dst_nodes(t) for t in g.dsttypes}
    for e in etypes or []:
        for t in (e[0], e[2]):
            num_src.setdefault(t, 0)
            num_dst.setdefault(t, 0)
    for e in etypes or []:
        if e not in adjacency:
            adjacency[e] = Adjacency.empty(num_src[e[0]], num_dst[e[2]], degrees is not None)
    return MessageBlock.build(adjacency, num_src, num_dst, self_loops)


def fixed_weights(graph, mode: str) -> dict[ETYPE, torch.Tensor]:
    """Fixed edge weights (the STRING score) where ``mode == "fixed"``; else none."""
    if mode != "fixed":
        return {}
    return {e: graph.edges[e].data["score"] for e in graph.canonical_etypes if "score" in graph.edges[e].data}


def parse_fanouts(fanouts: list[int], per_relation: dict[str, list[int]], graph) -> list[dict[ETYPE, int] | int]:
    """Per-layer fanouts, as a dict over every canonical etype when some relation overrides
    the default (DGL needs each etype covered), otherwise plain ints."""
    if not per_relation:
        return list(fanouts)
    names = {e[1]: e for e in graph.canonical_etypes}
    unknown = set(per_relation) - set(names)
    if unknown:
        raise InputError(f"--fanout-rel {sorted(unknown)[0]}: no such relation in this graph; "
                         f"relations: {', '.join(sorted(names))}")
    for rel, values in per_relation.items():
        if len(values) != len(fanouts):
            raise InputError(f"--fanout-rel {rel}: {len(values)} fanouts, expected one per layer ({len(fanouts)})")
    return [{e: per_relation.get(e[1], fanouts)[i] for e in graph.canonical_etypes} for i in range(len(fanouts))]
