"""Message-passing structure as plain torch tensors: every relation of a layer in one sparse matrix.

A :class:`MessageBlock` is one layer's bipartite graph (DGL's block, or a whole graph with
src = dst). Its shape is known on the host, so a layer never reads a size back from the
device (no host synchronisation):

* **columns**: the source nodes of every node type, stacked in ``ntypes`` order
  (column ``src_off[t] + u`` is source ``u`` of type ``t``); the destinations of a type
  are its first ``num_dst[t]`` sources (DGL's block convention), unless ``dst_src`` gives
  each destination's source column;
* **rows**: one per (relation, destination): relation ``r`` (``etypes``, sorted by
  destination type) owns rows ``row_off[r] .. row_off[r] + num_dst[dst type of r]``;
* **entries**: CSR over those rows. ``rel`` is each entry's relation, ``eid`` its
  parent-graph edge id (-1: an added self-loop, or padding), ``norm`` its GCN coefficient
  (:meth:`MessageBlock.build`; 0 on padding), ``weight`` its fixed edge weight (1 where none),
  ``mask`` the real entries (None: all are). The torch-op sampler pads each row to a static
  number of slots, so its blocks have data-independent shapes; DGL's blocks are exact.

A layer multiplies this one matrix, its entries reordered destination-major
(:meth:`MessageBlock.by_destination`), with the stacked source features (then each
destination type's relation rows go through one matmul) or with their per-relation
projections (then one product also sums the relations); its output, the destinations of
every type stacked in ``ntypes`` order, is the next block's input.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


_INT32_MAX = 2**31 - 1
ETYPE = tuple[str, str, str]  # a canonical edge type (source type, relation, destination type)
SELF = "self"  # the relation name of a node type's own loops where it has no same-type relation


def offsets(counts: torch.Tensor) -> torch.Tensor:
    """CSR offsets ``[0, c0, c0 + c1, ...]`` of per-row ``counts``."""
    return torch.nn.functional.pad(torch.cumsum(counts, 0), (1, 0))


def cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as ``dtype``; itself when it already is (``.to`` of the same type is still
    an operator call, and a step's count of those is what bounds it on a GPU)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def on(tensor: torch.Tensor, device) -> bool:
    """Whether ``tensor`` already lives on ``device`` (``cuda`` means the current GPU)."""
    device = torch.device(device)
    return tensor.device.type == device.type and device.index in (None, tensor.device.index)


def relation_order(etypes) -> list[ETYPE]:
    """Relations in block row order: by destination type, then source type, then name."""
    return sorted(etypes, key=lambda e: (e[2], e[0], e[1]))


def self_relations(etypes: list[ETYPE]) -> list[ETYPE]:
    """``(t, "self", t)`` for every node type of ``etypes`` with no relation to its own type.
    Eq. 1's :math:`\\tilde A = A + I` gives every node its own features; in the ``go``
    variant genes have no gene-gene relation, so without this a gene would see its own
    features only two hops away (gene -> GO -> gene), and a gene without annotations none."""
    types = dict.fromkeys(t for s, _, d in etypes for t in (s, d))
    same = {s for s, _, d in etypes if s == d}
    return [(t, SELF, t) for t in types if t not in same]


def _stable_sort(keys: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sort(keys, stable=True)`` (the sorted keys and their positions) for non-negative
    ``keys < bound``. On the CPU, torch sorts int32 keys with a radix sort, about 10x faster
    than its int64 stable sort."""
    if keys.device.type == "cpu" and bound <= _INT32_MAX:
        keys = cast(keys, torch.int32)
    return torch.sort(keys, stable=True)


@functools.lru_cache(maxsize=64)
def _bounds(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``arange(n + 1)``, made once per size (a sampled block's column count depends on its batch size only)."""
    return torch.arange(n + 1, dtype=dtype, device=device)


def entry_rows(rowptr: torch.Tensor, num_entries: int) -> torch.Tensor:
    """The row of each entry of a CSR with offsets ``rowptr``."""
    return torch.repeat_interleave(torch.arange(rowptr.numel() - 1, device=rowptr.device), rowptr.diff(),
                                   output_size=num_entries)


def _csr(rowptr: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor of these parts, unchecked. The aten operator itself: ``torch.sparse_csr_tensor``
    first converts each part with ``.to`` (three more operator calls per sparse product)."""
    return torch.ops.aten.sparse_compressed_tensor(rowptr, col, values, list(size), dtype=values.dtype,
                                                   layout=torch.sparse_csr, device=values.device)


@dataclass
class Pattern:
    """The sparsity pattern of a (num_rows x num_cols) CSR matrix, and its transpose
    (built on first use, in the backward pass: a stable sort by column, no read-back).
    Indices are kept as int32 where they fit: the sparse kernels want them so (MKL on the
    CPU converts int64 indices at every product, a third of its time)."""

    rowptr: torch.Tensor
    col: torch.Tensor
    num_rows: int
    num_cols: int
    rows: Callable[[], torch.Tensor] | None = field(default=None, repr=False)  # each entry's row, if known
    _t: tuple | None = field(default=None, repr=False)

    def __post_init__(self):
        self.index_dtype = torch.int32 if max(self.col.numel(), self.num_cols) <= _INT32_MAX else torch.int64
        self.rowptr, self.col = cast(self.rowptr, self.index_dtype), cast(self.col, self.index_dtype)

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        return _csr(self.rowptr, self.col, values, (self.num_rows, self.num_cols))

    def transpose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(t_rowptr, t_col, t_perm)``: the transposed CSR, ``t_perm`` its entries' positions here."""
        if self._t is None:
            cols, perm = _stable_sort(self.col, self.num_cols)
            rows = self.rows() if self.rows is not None else entry_rows(self.rowptr, self.col.numel())
            self._t = (torch.searchsorted(cols, _bounds(self.num_cols, cols.dtype, cols.device),
                                          out_int32=self.index_dtype == torch.int32),
                       cast(rows.index_select(0, perm), self.index_dtype), perm)
        return self._t

    def csr_t(self, values: torch.Tensor) -> torch.Tensor:
        t_rowptr, t_col, perm = self.transpose()
        return _csr(t_rowptr, t_col, values.index_select(0, perm), (self.num_cols, self.num_rows))


def _product(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sparse CSR ``a`` times dense ``x``: on the CPU with torch's reduce kernel (``sparse.mm``
    with ``"sum"``; 1.6x faster than MKL's, which zero-fills and copies its output), on a GPU
    with cuSPARSE."""
    return torch.sparse.mm(a, x, "sum") if x.device.type == "cpu" else a @ x


class _SpMM(torch.autograd.Function):
    """``Y = A X`` for a sparse ``A`` with (optionally trainable) values.

    Backward: ``dX = A^T dY`` (a second sparse product, with the transposed pattern) and
    ``dA_e = <dY_row(e), X_col(e)>`` (a sampled dense-dense product, SDDMM), so no per-edge
    message matrix is ever materialised."""

    @staticmethod
    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, pattern: Pattern, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.pattern = pattern
        ctx.save_for_backward(values, x)
        return _product(pattern.csr(values), x)

    @staticmethod
    def backward(ctx, grad):
        pattern: Pattern = ctx.pattern
        values, x = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[2]:
            grad_x = _product(pattern.csr_t(cast(values, grad.dtype)), grad)
        if ctx.needs_input_grad[1]:
            grad_values = torch.sparse.sampled_addmm(pattern.csr(torch.zeros_like(values)), grad.to(values.dtype),
                                                     x.t().to(values.dtype), beta=0.0).values()
        return None, grad_values, grad_x


def spmm(pattern: Pattern, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out[i] = sum_{e in row i} values[e] * x[col[e]]``, in the dtype of ``x`` (the
    values follow it: under bf16 autocast the features are bf16, the coefficients fp32;
    autocast itself does not apply). torch's CPU sparse product has no bf16 kernel: there
    it runs in fp32."""
    if x.dtype not in (torch.float32, torch.float64) and x.device.type == "cpu":
        x = x.float()
    return _SpMM.apply(pattern, cast(values, x.dtype), x)


@dataclass(frozen=True)
class _Put:
    """Writes one relation's edge values into a block's entry arrays: at entries ``at``
    (a scatter) where rows hold loops, else into the relation's contiguous ``span``."""

    at: torch.Tensor | None
    span: slice

    def computed(self, out: torch.Tensor, op, a: torch.Tensor, b) -> None:
        """``op(a, b)``, into ``span`` in place (``op(a, b, out=...)``: no temporary, one pass)."""
        if self.at is None:
            op(a, b, out=out[self.span])
        else:
            out.scatter_(0, self.at, cast(op(a, b), out.dtype))

    def __call__(self, out: torch.Tensor, values: torch.Tensor | float) -> None:
        """``values``: a tensor, or one value for every edge."""
        if self.at is None:
            out[self.span] = values
        elif isinstance(values, torch.Tensor):
            out.scatter_(0, self.at, cast(values, out.dtype))
        else:
            out.index_fill_(0, self.at, values)


@dataclass
class Adjacency:
    """One relation's edges as a DGL block or graph hands them over, grouped by destination:
    ``counts`` (edges per destination), ``indices`` (type-local sources), ``eid`` (parent edge ids);
    optionally each edge's fixed weight, each edge's destination (where the caller has it:
    DGL's COO), and eq. 1's factors from the *parent* graph's degrees (see
    :meth:`MessageBlock.build`): ``1 / sqrt(d~out(u))`` per source, ``1 / sqrt(d~in(v))``
    and ``d(v) / sqrt(d~in(v))`` per destination."""

    counts: torch.Tensor
    indices: torch.Tensor
    eid: torch.Tensor
    weight: torch.Tensor | None = None
    dst: torch.Tensor | None = None
    src_factor: torch.Tensor | None = None
    dst_factor: torch.Tensor | None = None
    dst_scale: torch.Tensor | None = None

    def rows(self) -> torch.Tensor:
        """Each edge's destination."""
        return self.dst if self.dst is not None else entry_rows(offsets(self.counts), self.indices.numel())

    def factors(self, sampled: torch.Tensor, loop: int, num_src: int) -> tuple[torch.Tensor, ...]:
        """Eq. 1's factors given each destination's ``sampled`` edges ``k_v`` and ``loop``
        (0/1): per source, per destination (its loop's) and per destination for its edges,
        ``d(v) / k_v / sqrt(d~in(v))``; without parent factors, the block's own degrees'."""
        if self.src_factor is not None:
            return self.src_factor, self.dst_factor, self.dst_scale / sampled.clamp(min=1)
        out_deg = torch.bincount(self.indices, minlength=num_src)  # the block's own, loops included
        out_deg[:sampled.numel()] += loop
        row_fac = (sampled + loop).clamp(min=1).to(torch.float32).rsqrt()
        return out_deg.clamp(min=1).to(torch.float32).rsqrt(), row_fac, row_fac

    @classmethod
    def empty(cls, num_src: int, num_dst: int, parent: bool, device=None) -> "Adjacency":
        """No edges (a self-relation, or a relation a sampled block lacks); with ``parent``,
        the factors of zero degrees."""
        none = torch.zeros(0, dtype=torch.int64, device=device)
        adj = cls(torch.zeros(num_dst, dtype=torch.int64, device=device), none, none)
        if parent:
            adj.src_factor, adj.dst_factor = torch.ones(num_src, device=device), torch.ones(num_dst, device=device)
            adj.dst_scale = torch.zeros(num_dst, device=device)
        return adj


@dataclass
class MessageBlock:
    """One layer's bipartite graph, every relation in one CSR (see the module docstring)."""

    ntypes: tuple[str, ...]
    etypes: tuple[ETYPE, ...]
    num_src: dict[str, int]
    num_dst: dict[str, int]
    rowptr: torch.Tensor
    col: torch.Tensor
    rel_row: torch.Tensor  # (rows,) the relation of each row
    eid: torch.Tensor
    norm: torch.Tensor
    weight: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    dst_src: torch.Tensor | None = None  # each stacked destination's source slot (None: DGL's convention)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def src_off(self) -> dict[str, int]:
        return starts(self.ntypes, self.num_src)

    @property
    def dst_off(self) -> dict[str, int]:
        return starts(self.ntypes, self.num_dst)

    @property
    def row_off(self) -> list[int]:
        return running([self.num_dst[e[2]] for e in self.etypes])

    @property
    def num_rows(self) -> int:
        return sum(self.num_dst[e[2]] for e in self.etypes)

    @property
    def num_entries(self) -> int:
        return self.col.numel()

    def dst_columns(self, t: str) -> torch.Tensor | slice:
        """The source columns of the destinations of type ``t``."""
        if self.dst_src is None:
            return slice(self.src_off[t], self.src_off[t] + self.num_dst[t])
        return self.dst_src[self.dst_off[t]: self.dst_off[t] + self.num_dst[t]]

    def real_edges(self) -> torch.Tensor:
        """How many sampled parent edges the block holds (a device scalar; loops and padding aside)."""
        return (self.eid >= 0).sum()

    def pattern(self) -> Pattern:
        """Rows x stacked source columns."""
        return self.derived("pattern", lambda: Pattern(self.rowptr, self.col, self.num_rows,
                                                       sum(self.num_src.values()), lambda: self.row))

    @property
    def row(self) -> torch.Tensor:
        """The row of each entry (made on first use)."""
        return self.derived("row", lambda: entry_rows(self.rowptr, self.num_entries))

    @property
    def rel(self) -> torch.Tensor:
        """The relation of each entry (made on first use)."""
        return self.derived("rel", lambda: self.rel_row[self.row])

    def by_destination(self) -> DestinationOrder:
        """The entries in destination-major order (made on first use; see :func:`destination_order`)."""
        return self.derived("by_destination", lambda: destination_order(
            self.ntypes, self.etypes, tuple(self.num_dst[t] for t in self.ntypes), self.rowptr, self.num_entries))

    def derived(self, key, make):
        """A tensor derived from this block's structure, made once (``make()``) and kept."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def to(self, device, non_blocking: bool = False) -> "MessageBlock":
        if on(self.col, device):
            return self
        moved = {f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
                 for f in fields(self) if f.name != "_cache" for v in [getattr(self, f.name)]}
        return MessageBlock(**moved)

    def dense(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The (rows x stacked sources) matrix as a dense tensor (for tests and small graphs)."""
        values = self.norm if values is None else values
        if self.mask is not None:
            values = values * self.mask
        return self.pattern().csr(values.to(torch.float32)).to_dense()

    @classmethod
    def build(cls, adjacency: dict[ETYPE, Adjacency], num_src: dict[str, int], num_dst: dict[str, int],
              self_loops: bool, ntypes=None) -> "MessageBlock":
        """A block of one :class:`Adjacency` per relation. Each relation's entries are
        written in one pass per array: into its contiguous span, or, where its rows hold
        loops, scattered past them (edge ``i`` of destination ``v`` goes ``v`` entries further;
        this runs on the host, DGL's blocks or a whole graph). ``self_loops`` adds an
        entry ``v -> v`` (eid -1, weight 1) after each destination's edges in relations
        between nodes of one type (the ``A + I`` of the GCN formula) and the
        :func:`self_relations` the block lacks. ``ntypes`` fixes the stacking order of the
        node types (default: sorted).

        ``norm`` holds eq. 1's coefficients. With the parent graph's degrees (each source's
        out-degree and each destination's in-degree, without loops) a sampled block
        estimates the full-graph aggregation:

        .. math::
            c_{uv} = \\frac{d(v) / k_v}{\\sqrt{\\tilde d^{out}(u)\\, \\tilde d^{in}(v)}},
            \\qquad c_{vv} = \\frac{1}{\\sqrt{\\tilde d^{out}(v)\\, \\tilde d^{in}(v)}}

        with :math:`\\tilde d = d + 1` (the loop) and :math:`k_v` the in-edges of :math:`v`
        the block kept. Uniform sampling without replacement keeps each edge with probability
        :math:`k_v / d(v)`, so the sum over the sample is unbiased for the sum over all
        neighbours; on the whole graph :math:`k_v = d(v)` and this is
        :math:`\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2}`. Without parent degrees the block's
        own are used (DGL's ``GraphConv`` on a block: fanout-capped in-degrees, source
        out-degrees of 1-2), a different operator from the full-graph one."""
        dev = next(iter(adjacency.values())).counts.device
        parent = any(a.src_factor is not None for a in adjacency.values())
        if self_loops:
            adjacency = {**adjacency, **{e: Adjacency.empty(num_src[e[0]], num_dst[e[2]], parent, dev)
                                         for e in self_relations(list(adjacency))}}
        ntypes = tuple(ntypes or sorted(num_src))
        etypes = tuple(relation_order(adjacency))
        adj = [adjacency[e] for e in etypes]
        rows = [num_dst[e[2]] for e in etypes]
        loops = [int(self_loops and e[0] == e[2]) for e in etypes]
        sampled = torch.cat([a.counts for a in adj]).to(torch.int64)  # per row: edges kept
        rowptr = offsets(sampled + torch.cat([torch.full((m,), x, dtype=torch.int64, device=dev)
                                              for m, x in zip(rows, loops)]))
        sizes = [a.indices.numel() + x * m for a, m, x in zip(adj, rows, loops)]  # entries per relation
        src_off, row_off, base, n = starts(ntypes, num_src), running(rows), running(sizes), sum(sizes)
        col, eid = torch.empty(n, dtype=torch.int64, device=dev), torch.empty(n, dtype=torch.int64, device=dev)
        norm = torch.empty(n, device=dev)
        weight = torch.empty(n, device=dev) if any(a.weight is not None for a in adj) else None
        for r, (e, a, m, x) in enumerate(zip(etypes, adj, rows, loops)):
            src_fac, row_fac, row_scale = a.factors(sampled[row_off[r]: row_off[r] + m], x, num_src[e[0]])
            edges = a.indices.numel()
            if edges:  # edge i of the relation is entry base + i, plus one per looped row before its own
                dst = a.rows()
                at = (torch.arange(base[r], base[r] + edges, device=dev) + dst) if x else None
                put = _Put(at, slice(base[r], base[r] + edges))
                put.computed(col, torch.add, a.indices, src_off[e[0]])
                put.computed(norm, torch.mul, src_fac.index_select(0, a.indices), row_scale.index_select(0, dst))
                put(eid, a.eid)
                if weight is not None:
                    put(weight, a.weight if a.weight is not None else 1.0)
            if x:  # each row's loop v -> v, after its edges
                at = rowptr[row_off[r] + 1: row_off[r] + m + 1] - 1
                col.scatter_(0, at, torch.arange(src_off[e[0]], src_off[e[0]] + m, device=dev))
                norm.scatter_(0, at, src_fac[:m] * row_fac)
                eid.index_fill_(0, at, -1)
                if weight is not None:
                    weight.index_fill_(0, at, 1.0)
        rel_row = torch.cat([torch.full((m,), r, dtype=torch.int64, device=dev) for r, m in enumerate(rows)])
        return cls(ntypes, etypes, dict(num_src), dict(num_dst), rowptr, col, rel_row, eid, norm, weight)


@dataclass(frozen=True)
class DestinationOrder:
    """A block's entries reordered destination-major: per destination type, per destination
    ``v``, per relation ``j`` into the type (relation order). ``perm[p]`` is the entry at
    position ``p``; ``rowptr_rows`` are the CSR offsets of the ``(v, j)`` rows (a type's rows
    viewed as ``(n_t, R_t)``), ``rowptr_dst`` those of the destinations (every relation's
    entries of ``v`` in one row) and ``incidence`` the ``(destinations, relations)`` 0/1
    matrix ``[r into v's type]``."""

    perm: torch.Tensor
    rowptr_rows: torch.Tensor
    rowptr_dst: torch.Tensor
    incidence: torch.Tensor
    row: torch.Tensor  # each reordered entry's (v, j) row
    dst: torch.Tensor  # each reordered entry's destination


@functools.lru_cache(maxsize=8)  # a sampled layout keeps its own order; DGL's blocks differ in shape every batch
def _destination_rows(ntypes: tuple[str, ...], etypes: tuple[ETYPE, ...], num_dst: tuple[int, ...],
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one block shape: the relation-major row of each destination-major row, each
    destination's first destination-major row (then their count), and the incidence matrix."""
    n = dict(zip(ntypes, num_dst))
    rels = {t: [r for r, e in enumerate(etypes) if e[2] == t] for t in ntypes}
    row_off = running([n[e[2]] for e in etypes])
    base = starts(ntypes, {t: n[t] * len(rels[t]) for t in ntypes})  # where each type's rows start
    order, first, incidence = [], [], []
    for t in ntypes:
        ids = torch.arange(n[t])
        order.append((torch.tensor([row_off[r] for r in rels[t]], dtype=torch.int64)[None, :] + ids[:, None]).view(-1))
        first.append(ids * len(rels[t]) + base[t])
        incidence.append(torch.zeros(n[t], len(etypes)).index_fill_(1, torch.tensor(rels[t], dtype=torch.int64), 1.0))
    rows = sum(n[e[2]] for e in etypes)
    return (torch.cat(order).to(device), torch.cat(first + [torch.tensor([rows])]).to(device),
            torch.cat(incidence).to(device))


def destination_order(ntypes: tuple[str, ...], etypes: tuple[ETYPE, ...], num_dst: tuple[int, ...],
                      rowptr: torch.Tensor, num_entries: int) -> DestinationOrder:
    """The :class:`DestinationOrder` of a block of this shape with relation-major row offsets
    ``rowptr`` (a fixed number of vectorised ops, no read-back; a sampled layout's is made once)."""
    order, first, incidence = _destination_rows(ntypes, etypes, num_dst, rowptr.device)
    rowptr = rowptr.long()
    counts = rowptr.diff().index_select(0, order)
    rowptr_rows = offsets(counts)
    shift = rowptr.index_select(0, order) - rowptr_rows[:-1]  # per row: its entries' old position - new
    perm = torch.repeat_interleave(shift, counts, output_size=num_entries)
    perm += torch.arange(num_entries, device=perm.device)
    rowptr_dst = rowptr_rows.index_select(0, first)
    index = torch.int32 if max(num_entries, rowptr_rows.numel()) <= _INT32_MAX else torch.int64  # as Pattern's
    return DestinationOrder(perm.to(index), rowptr_rows, rowptr_dst, incidence,
                            entry_rows(rowptr_rows, num_entries).to(index), entry_rows(rowptr_dst, num_entries).to(index))


def running(sizes: list[int]) -> list[int]:
    """Where each run starts when runs of ``sizes`` are laid end to end: ``[0, s0, s0 + s1, ...]``."""
    return list(itertools.accumulate(sizes, initial=0))[:-1]


def starts(keys, sizes) -> dict:
    """:func:`running` by key: where each key's run starts, runs of ``sizes[key]`` in ``keys`` order."""
    keys = list(keys)
    return dict(zip(keys, running([sizes[k] for k in keys])))
