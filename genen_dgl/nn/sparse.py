"""Message-passing structure as plain torch tensors, so layers run on any device.

A :class:`Relation` is one edge type of a bipartite block (``num_src`` source nodes,
``num_dst`` destination nodes) stored twice: as CSR over destinations (in-edges, for
aggregation) and as CSR over sources (out-edges, for the backward pass), with the
permutation between the two edge orders. DGL's CPU build samples the blocks; this
module only reads their structure, so the arithmetic runs on CUDA too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


_INT32_MAX = 2**31 - 1


def offsets(counts: torch.Tensor) -> torch.Tensor:
    """CSR offsets ``[0, c0, c0 + c1, ...]`` of per-row ``counts``."""
    out = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=counts.device)
    out[1:] = torch.cumsum(counts, 0)
    return out


def segment_arange(counts: torch.Tensor, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For segments of ``counts`` items: the segment of each item and its offset in it."""
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts, output_size=total)
    starts = torch.cumsum(counts, 0) - counts
    return seg, torch.arange(seg.numel(), device=counts.device) - starts[seg]


def _stable_order(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """``argsort(keys, stable=True)`` for non-negative ``keys < bound``. On the CPU, torch
    sorts int32 keys with a radix sort, about 10x faster than its int64 stable sort."""
    if keys.device.type == "cpu" and bound <= _INT32_MAX:
        return torch.sort(keys.to(torch.int32), stable=True).indices
    return torch.argsort(keys, stable=True)


def _with_self_loops(counts: torch.Tensor, col: torch.Tensor, eid: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Destination-grouped edges with a loop ``d -> d`` (eid -1) appended to each group."""
    m, dev = counts.numel(), counts.device
    total = col.numel() + m
    new_counts = counts + 1
    seg, off = segment_arange(new_counts, total)
    is_loop = off == counts[seg]
    out_col = torch.empty(total, dtype=torch.int64, device=dev)
    out_eid = torch.empty(total, dtype=torch.int64, device=dev)
    out_col[~is_loop], out_eid[~is_loop] = col, eid
    loops = torch.cumsum(new_counts, 0) - 1
    out_col[loops] = torch.arange(m, device=dev)
    out_eid[loops] = -1
    return new_counts, out_col, out_eid


@dataclass
class Relation:
    num_src: int
    num_dst: int
    rowptr: torch.Tensor  # (num_dst + 1,) in-edge offsets per destination
    col: torch.Tensor  # (E,) source of each edge, destination-sorted order
    row: torch.Tensor  # (E,) destination of each edge, same order
    eid: torch.Tensor  # (E,) parent-graph edge id of each edge (-1: added self-loop), same order
    t_rowptr: torch.Tensor  # (num_src + 1,) out-edge offsets per source
    t_col: torch.Tensor  # (E,) destination of each edge, source-sorted order
    t_perm: torch.Tensor  # (E,) position in destination order of each source-sorted edge
    weight: torch.Tensor | None = None  # (E,) fixed edge weight, destination order

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    def in_degrees(self) -> torch.Tensor:
        return (self.rowptr[1:] - self.rowptr[:-1]).to(torch.float32)

    def out_degrees(self) -> torch.Tensor:
        return (self.t_rowptr[1:] - self.t_rowptr[:-1]).to(torch.float32)

    def to(self, device, non_blocking: bool = False) -> "Relation":
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        return Relation(**moved)

    @classmethod
    def from_csc(
        cls, num_src: int, num_dst: int, indptr: torch.Tensor, indices: torch.Tensor, eid: torch.Tensor,
        weight: torch.Tensor | None = None, self_loops: bool = False,
    ) -> "Relation":
        """From destination-major CSR (``indptr`` over dst, ``indices`` = sources, ``eid``
        = parent edge id of each edge), on the device of ``indptr``. ``weight`` is indexed by
        parent edge id. ``self_loops`` adds an edge ``i -> i`` (eid -1, weight 1) after each
        destination's edges, the ``A + I`` of the GCN formula; it needs src and dst of one
        node type."""
        dev = indptr.device
        col, eid = indices.to(torch.int64), eid.to(torch.int64)
        counts = (indptr[1:] - indptr[:-1]).to(torch.int64)
        if self_loops:
            counts, col, eid = _with_self_loops(counts, col, eid)
        row = torch.repeat_interleave(torch.arange(num_dst, device=dev), counts, output_size=col.numel())
        w = None
        if weight is not None:
            w = torch.ones(eid.numel(), dtype=torch.float32, device=dev)
            real = eid >= 0
            w[real] = weight[eid[real]].to(torch.float32)
        order = _stable_order(col, num_src)  # source-major order
        t_rowptr = offsets(torch.bincount(col, minlength=num_src))
        return cls(num_src, num_dst, offsets(counts), col, row, eid, t_rowptr, row[order], order, w)

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """The (num_dst x num_src) sparse CSR matrix with ``values`` in destination order."""
        return torch.sparse_csr_tensor(self.rowptr, self.col, values, (self.num_dst, self.num_src),
                                       check_invariants=False)

    def csr_t(self, values: torch.Tensor) -> torch.Tensor:
        """The transposed (num_src x num_dst) CSR matrix for the same ``values``."""
        return torch.sparse_csr_tensor(self.t_rowptr, self.t_col, values[self.t_perm], (self.num_src, self.num_dst),
                                       check_invariants=False)




@dataclass
class MessageBlock:
    """One layer's bipartite graph: relations by canonical etype and node counts by type.
    Destination nodes of each type are the first ``num_dst[t]`` source nodes of that type
    (DGL's block convention; also true of a full graph, where src = dst)."""

    relations: dict[tuple[str, str, str], Relation]
    num_src: dict[str, int]
    num_dst: dict[str, int]

    def to(self, device, non_blocking: bool = False) -> "MessageBlock":
        return MessageBlock({k: r.to(device, non_blocking) for k, r in self.relations.items()},
                            dict(self.num_src), dict(self.num_dst))


class _SpMM(torch.autograd.Function):
    """``Y = A X`` for a sparse ``A`` with (optionally trainable) values.

    Backward: ``dX = A^T dY`` (a second sparse product with the transposed CSR) and
    ``dA_e = <dY_dst(e), X_src(e)>`` (a sampled dense-dense product, SDDMM), so no
    per-edge message matrix is ever materialised."""

    @staticmethod
    def forward(ctx, rel: Relation, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.rel = rel
        ctx.save_for_backward(values, x)
        return rel.csr(values) @ x

    @staticmethod
    def backward(ctx, grad):
        rel: Relation = ctx.rel
        values, x = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[2]:
            grad_x = rel.csr_t(values) @ grad
        if ctx.needs_input_grad[1]:
            pattern = rel.csr(torch.zeros_like(values))
            grad_values = torch.sparse.sampled_addmm(pattern, grad, x.t(), beta=0.0).values()
        return None, grad_values, grad_x


def spmm(rel: Relation, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over in-edges: ``out[d] = sum_{e=(s,d)} values[e] * x[s]`` (destination order)."""
    if rel.num_edges == 0:
        return x.new_zeros((rel.num_dst,) + x.shape[1:])
    if x.dim() == 1:
        return _SpMM.apply(rel, values, x[:, None])[:, 0]
    return _SpMM.apply(rel, values, x)
