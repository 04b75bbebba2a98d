"""Message-passing structure as plain torch tensors: every relation of a layer in one sparse matrix.

A :class:`MessageBlock` is one layer's bipartite graph (DGL's block, or a whole graph with
src = dst). Its shape is known on the host, so a layer never reads a size back from the
device (no host synchronisation):

* **columns**: the source nodes of every node type, stacked in ``ntypes`` order
  (column ``src_off[t] + u`` is source ``u`` of type ``t``); the destinations of a type
  are its first ``num_dst[t]`` sources (DGL's block convention);
* **rows**: one per (relation, destination): relation ``r`` (``etypes``, sorted by
  destination type) owns rows ``row_off[r] .. row_off[r] + num_dst[dst type of r]``;
* **entries**: CSR over those rows. ``rel`` is each entry's relation, ``eid`` its
  parent-graph edge id (-1: an added self-loop, or padding), ``norm`` its GCN coefficient
  (:func:`gcn_norm`; 0 on padding), ``weight`` its fixed edge weight (1 where none),
  ``mask`` the real entries (None: all are). The torch-op sampler pads each row to a static
  number of slots, so its blocks have data-independent shapes; DGL's blocks are exact.

A layer multiplies this one matrix with the stacked source features (or their projections)
and reduces each destination type's relation rows with one batched matmul; its output,
the destinations of every type stacked in ``ntypes`` order, is the next block's input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


_INT32_MAX = 2**31 - 1
ETYPE = tuple[str, str, str]  # a canonical edge type (source type, relation, destination type)
SELF = "self"  # the relation name of a node type's own loops where it has no same-type relation


def offsets(counts: torch.Tensor) -> torch.Tensor:
    """CSR offsets ``[0, c0, c0 + c1, ...]`` of per-row ``counts``."""
    return torch.nn.functional.pad(torch.cumsum(counts, 0), (1, 0))


def segment_arange(counts: torch.Tensor, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments of ``counts`` items: the segment of each item and its offset in it
    (``total`` = the sum of ``counts``; given, nothing is read back from the device)."""
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    return seg, torch.arange(seg.numel(), device=counts.device) - starts[seg]


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


def gcn_norm(src_tilde: torch.Tensor, dst_tilde: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """GCN coefficients ``scale / sqrt(src_tilde * dst_tilde)`` (degrees clamped at 1);
    see :meth:`Part.from_csc` for the degrees and scale the blocks use."""
    return scale * (src_tilde.to(torch.float32).clamp(min=1) * dst_tilde.to(torch.float32).clamp(min=1)).rsqrt()


def _stable_order(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """``argsort(keys, stable=True)`` for non-negative ``keys < bound``. On the CPU, torch
    sorts int32 keys with a radix sort, about 10x faster than its int64 stable sort."""
    if keys.device.type == "cpu" and bound <= _INT32_MAX:
        return torch.sort(keys.to(torch.int32), stable=True).indices
    return torch.argsort(keys, stable=True)


@dataclass
class Pattern:
    """The sparsity pattern of a (num_rows x num_cols) CSR matrix, and its transpose
    (built on first use, in the backward pass: a stable sort by column, no read-back)."""

    rowptr: torch.Tensor
    col: torch.Tensor
    num_rows: int
    num_cols: int
    _t: tuple | None = field(default=None, repr=False)

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.rowptr, self.col, values, (self.num_rows, self.num_cols),
                                       check_invariants=False)

    def transpose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(t_rowptr, t_col, t_perm)``: the transposed CSR, ``t_perm`` its entries' positions here."""
        if self._t is None:
            perm = _stable_order(self.col, self.num_cols)
            rows = torch.repeat_interleave(torch.arange(self.num_rows, device=self.col.device),
                                           self.rowptr.diff(), output_size=self.col.numel())
            bounds = torch.arange(self.num_cols + 1, device=self.col.device)
            self._t = (torch.searchsorted(self.col[perm], bounds), rows[perm], perm)
        return self._t

    def csr_t(self, values: torch.Tensor) -> torch.Tensor:
        t_rowptr, t_col, perm = self.transpose()
        return torch.sparse_csr_tensor(t_rowptr, t_col, values[perm], (self.num_cols, self.num_rows),
                                       check_invariants=False)


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
        return pattern.csr(values) @ x

    @staticmethod
    def backward(ctx, grad):
        pattern: Pattern = ctx.pattern
        values, x = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[2]:
            grad_x = pattern.csr_t(values.to(grad.dtype)) @ grad
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
    return _SpMM.apply(pattern, values.to(x.dtype), x)


@dataclass
class Part:
    """One relation's edges of a DGL block or graph, grouped by destination: ``indptr``
    (num_dst + 1), then per entry the source (type-local index), parent edge id, GCN
    coefficient, and optionally the fixed weight."""

    indptr: torch.Tensor
    col: torch.Tensor
    eid: torch.Tensor
    norm: torch.Tensor
    weight: torch.Tensor | None = None

    @classmethod
    def from_csc(cls, num_dst: int, indptr: torch.Tensor, indices: torch.Tensor, eid: torch.Tensor,
                 weight: torch.Tensor | None = None, self_loops: bool = False,
                 src_degree: torch.Tensor | None = None, dst_degree: torch.Tensor | None = None,
                 num_src: int | None = None) -> "Part":
        """From destination-major CSR (``indptr`` over dst, ``indices`` = sources, ``eid``
        = parent edge id of each edge), on the device of ``indptr``. ``weight`` is indexed by
        parent edge id. ``self_loops`` adds an edge ``v -> v`` (eid -1, weight 1) after each
        destination's edges, the ``A + I`` of the GCN formula; it needs src and dst of one
        node type.

        ``norm`` holds eq. 1's coefficients. With ``src_degree`` / ``dst_degree`` (each
        source's out-degree and each destination's in-degree in the *parent* graph, without
        loops) a sampled block estimates the full-graph aggregation:

        .. math::
            c_{uv} = \\frac{d(v) / k_v}{\\sqrt{\\tilde d^{out}(u)\\, \\tilde d^{in}(v)}},
            \\qquad c_{vv} = \\frac{1}{\\sqrt{\\tilde d^{out}(v)\\, \\tilde d^{in}(v)}}

        with :math:`\\tilde d = d + 1` (the loop) and :math:`k_v` the in-edges of :math:`v`
        the block kept. Uniform sampling without replacement keeps each edge with probability
        :math:`k_v / d(v)`, so the sum over the sample is unbiased for the sum over all
        neighbours; on the whole graph :math:`k_v = d(v)` and this is
        :math:`\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2}`. Without parent degrees the block's
        own are used (DGL's ``GraphConv`` on a block: fanout-capped in-degrees, source
        out-degrees of 1-2; needs ``num_src``), a different operator from the full-graph one."""
        dev = indptr.device
        col, eid = indices.to(torch.int64), eid.to(torch.int64)
        sampled = indptr.diff().to(torch.int64)
        loop = int(self_loops)
        row, _ = segment_arange(sampled, col.numel())
        if self_loops:  # entry e of destination v moves to e + v; v's loop goes after its edges
            n = col.numel() + num_dst
            at = torch.arange(col.numel(), device=dev) + row
            ends = indptr[1:].to(torch.int64) + torch.arange(num_dst, device=dev)
            dst = torch.arange(num_dst, device=dev)
            col = torch.empty(n, dtype=torch.int64, device=dev).index_copy_(0, at, col).index_copy_(0, ends, dst)
            eid = torch.full((n,), -1, dtype=torch.int64, device=dev).index_copy_(0, at, eid)
            row = torch.empty(n, dtype=torch.int64, device=dev).index_copy_(0, at, row).index_copy_(0, ends, dst)
            indptr = offsets(sampled + 1)
        real = eid >= 0
        if src_degree is None:
            src_tilde = torch.zeros(num_src, dtype=torch.int64, device=dev).index_add_(0, col, torch.ones_like(col))
            dst_tilde, scale = sampled + loop, torch.ones(num_dst, device=dev)
        else:
            src_tilde, dst_tilde = src_degree + loop, dst_degree + loop
            scale = dst_degree.to(torch.float32) / sampled.clamp(min=1).to(torch.float32)
        norm = gcn_norm(src_tilde[col], dst_tilde[row], torch.where(real, scale[row], 1.0))
        w = None
        if weight is not None:
            w = torch.where(real, weight.to(torch.float32)[eid.clamp(min=0)], 1.0)
        return cls(indptr.to(torch.int64), col, eid, norm, w)

    @classmethod
    def empty(cls, num_dst: int, self_loops: bool, device=None) -> "Part":
        """A relation with no edges in this block (only its loops, with ``self_loops``)."""
        if self_loops:
            return cls.identity(num_dst, device)
        zeros = torch.zeros(0, dtype=torch.int64, device=device)
        return cls(torch.zeros(num_dst + 1, dtype=torch.int64, device=device), zeros, zeros,
                   torch.zeros(0, device=device))

    @classmethod
    def identity(cls, num_dst: int, device=None) -> "Part":
        """Only the loops ``v -> v``: the self-relation of a node type that has no relation
        with its own type (so it still sees its own features, the ``I`` of ``A + I``)."""
        ids = torch.arange(num_dst, device=device)
        return cls(torch.arange(num_dst + 1, device=device), ids, torch.full_like(ids, -1),
                   torch.ones(num_dst, device=device))


@dataclass
class MessageBlock:
    """One layer's bipartite graph, every relation in one CSR (see the module docstring)."""

    ntypes: tuple[str, ...]
    etypes: tuple[ETYPE, ...]
    num_src: dict[str, int]
    num_dst: dict[str, int]
    rowptr: torch.Tensor
    col: torch.Tensor
    rel: torch.Tensor
    eid: torch.Tensor
    norm: torch.Tensor
    weight: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def src_off(self) -> dict[str, int]:
        return starts(self.ntypes, self.num_src)

    @property
    def dst_off(self) -> dict[str, int]:
        return starts(self.ntypes, self.num_dst)

    @property
    def row_off(self) -> list[int]:
        return list(starts(range(len(self.etypes)), {i: self.num_dst[e[2]] for i, e in enumerate(self.etypes)}).values())

    @property
    def num_rows(self) -> int:
        return sum(self.num_dst[e[2]] for e in self.etypes)

    @property
    def num_entries(self) -> int:
        return self.col.numel()

    def real_edges(self) -> torch.Tensor:
        """How many sampled parent edges the block holds (a device scalar; loops and padding aside)."""
        return (self.eid >= 0).sum()

    def pattern(self) -> Pattern:
        """Rows x stacked source columns."""
        if "pattern" not in self._cache:
            self._cache["pattern"] = Pattern(self.rowptr, self.col, self.num_rows, sum(self.num_src.values()))
        return self._cache["pattern"]

    @property
    def row(self) -> torch.Tensor:
        """The row of each entry."""
        if "row" not in self._cache:
            self._cache["row"] = torch.repeat_interleave(torch.arange(self.num_rows, device=self.col.device),
                                                         self.rowptr.diff(), output_size=self.num_entries)
        return self._cache["row"]

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
    def assemble(cls, parts: dict[ETYPE, Part], num_src: dict[str, int], num_dst: dict[str, int],
                 self_loops: bool, ntypes=None) -> "MessageBlock":
        """A block of one :class:`Part` per relation; with ``self_loops`` (the parts then
        hold ``A + I``) plus the :func:`self_relations` they lack. ``ntypes`` fixes the
        stacking order of the node types (default: sorted)."""
        device = next(iter(parts.values())).col.device
        if self_loops:
            parts = {**parts, **{e: Part.identity(num_dst[e[2]], device) for e in self_relations(list(parts))}}
        ntypes = tuple(ntypes or sorted(num_src))
        etypes = tuple(relation_order(parts))
        src_off = starts(ntypes, num_src)
        ordered = [parts[e] for e in etypes]
        sizes = [p.col.numel() for p in ordered]
        at = [0]
        for n in sizes:
            at.append(at[-1] + n)
        rowptr = torch.cat([p.indptr[:-1] + a for p, a in zip(ordered, at)] + [torch.tensor([at[-1]], device=device)])
        rel = torch.repeat_interleave(torch.arange(len(etypes), device=device),
                                      torch.tensor(sizes, device=device), output_size=at[-1])
        weight = None
        if any(p.weight is not None for p in ordered):
            weight = torch.cat([p.weight if p.weight is not None else torch.ones_like(p.norm) for p in ordered])
        return cls(ntypes, etypes, dict(num_src), dict(num_dst), rowptr,
                   torch.cat([p.col + src_off[e[0]] for e, p in zip(etypes, ordered)]), rel,
                   torch.cat([p.eid for p in ordered]), torch.cat([p.norm for p in ordered]), weight)


def starts(keys, sizes) -> dict:
    """Where each key's run starts when runs of ``sizes[key]`` are laid out in ``keys`` order."""
    out, at = {}, 0
    for k in keys:
        out[k] = at
        at += sizes[k]
    return out
