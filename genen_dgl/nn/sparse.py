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
        = parent edge id of each edge). ``weight`` is indexed by parent edge id.
        ``self_loops`` adds an edge ``i -> i`` (eid -1, weight 1) to every destination,
        the ``A + I`` of the GCN formula; it needs src and dst of one node type."""
        indptr, col, eid = indptr.to(torch.int64), indices.to(torch.int64), eid.to(torch.int64)
        row = torch.repeat_interleave(torch.arange(num_dst), indptr[1:] - indptr[:-1])
        if self_loops:
            loops = torch.arange(num_dst)
            row, col = torch.cat([row, loops]), torch.cat([col, loops])
            eid = torch.cat([eid, torch.full((num_dst,), -1, dtype=torch.int64)])
            order = torch.argsort(row, stable=True)
            row, col, eid = row[order], col[order], eid[order]
            indptr = torch.zeros(num_dst + 1, dtype=torch.int64)
            indptr[1:] = torch.cumsum(torch.bincount(row, minlength=num_dst), 0)
        w = None
        if weight is not None:
            w = torch.ones(eid.numel(), dtype=torch.float32)
            real = eid >= 0
            w[real] = weight[eid[real]].to(torch.float32)
        order = torch.argsort(col, stable=True)  # source-major order
        t_rowptr = torch.zeros(num_src + 1, dtype=torch.int64)
        t_rowptr[1:] = torch.cumsum(torch.bincount(col, minlength=num_src), 0)
        return cls(num_src, num_dst, indptr, col, row, eid, t_rowptr, row[order], order, w)

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
