"""Heterogeneous graph convolution (Genen eq. 1, Kipf & Welling), one weight per relation.

.. math::
    h_v' = \\sum_{r} \\Big( \\sum_{u \\in \\tilde N_r(v)}
           \\frac{w_{uv}}{\\sqrt{\\tilde d^{out}_r(u)\\, \\tilde d^{in}_r(v)}} \\, h_u \\Theta_r + b_r \\Big)

:math:`\\tilde N_r` includes :math:`v` itself for relations between nodes of one type
(:math:`\\tilde A = A + I`, added when the block is built; a node type with no such
relation gets a ``self`` relation of loops only), degrees count those loops and are
clamped at 1, and :math:`w_{uv}` is the edge weight (1 without weights). The
coefficients come with the block (``MessageBlock.norm``): on a sampled block they use the
whole graph's degrees, rescaled by :math:`d(v)/k_v`, so that training, validation and
test apply one operator (:meth:`genen_dgl.nn.sparse.MessageBlock.build`). On a whole graph this
equals ``dgl.nn.HeteroGraphConv({r: GraphConv(norm="both")}, aggregate="sum")``.

All relations go through one sparse product, in the cheaper of two orders (the projection
commutes with the linear aggregation):

* aggregate first: :math:`Y = \\hat A H` over every relation's rows at once, the rows
  destination-major, then per destination type one matmul of each destination's relation
  rows side by side with the stacked weights, :math:`[Y_{(v, r_1)} \\dots Y_{(v, r_k)}]
  [\\Theta_{r_1}; \\dots; \\Theta_{r_k}]`; costs :math:`E\\, d_{in} + \\sum_r n^{dst}_r d_{in} d_{out}`
  multiply-adds and writes :math:`\\sum_r n^{dst}_r d_{in}` intermediate values;
* project first: :math:`P_{(u, r)} = h_u \\Theta_r` with one matmul per source type, then
  one product of the destinations x :math:`(u, r)` matrix, which sums every relation's
  messages; costs :math:`\\sum_r n^{src}_r d_{in} d_{out} + E\\, d_{out}` and writes
  :math:`\\sum_r n^{src}_r d_{out}`.

Writing a value costs far more than a multiply-add (``WRITE``): with 768-d inputs and 7 GO
relations, aggregating first would write a (7 x 43k) x 768 matrix.
"""

from __future__ import annotations

import torch
from torch import nn

from genen_dgl.nn.sparse import ETYPE, MessageBlock, relation_order, spmm
from genen_dgl.nn.stacked import (
    add_bias, check_relations, destination_rows, merged_pattern, project, projected_rows, relation_sets, type_matmul,
)


WRITE = 64  # the cost of writing one intermediate value, in multiply-adds (both orders write one
# intermediate matrix: aggregate-first (rows x d_in), project-first (sources x d_out))


class HeteroGCNConv(nn.Module):
    """``weight[r]`` is :math:`\\Theta_r` (``in_dim x out_dim``), ``bias[r]`` is :math:`b_r`,
    for the relations in block row order (:func:`~genen_dgl.nn.sparse.relation_order`)."""

    def __init__(self, in_dim: int, out_dim: int, etypes: list[ETYPE]):
        super().__init__()
        self.etypes = tuple(relation_order(etypes))
        self.weight = nn.Parameter(torch.empty(len(self.etypes), in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(len(self.etypes), out_dim))
        for w in self.weight:
            nn.init.xavier_uniform_(w)

    def forward(self, block: MessageBlock, x: torch.Tensor, values: torch.Tensor, order: str | None = None
                ) -> torch.Tensor:
        """``x``: the stacked sources ``(sum_t num_src[t], in_dim)``; ``values``: each entry's
        coefficient (``norm`` times the edge weight); ``order``: ``aggregate`` or ``project``
        first (default: the cheaper). Returns the stacked destinations."""
        check_relations(block, self.etypes)
        d_in, d_out = self.weight.shape[1:]
        out_of = relation_sets(block, lambda t, e: e[0] == t)
        _, n_src = projected_rows(block, out_of)
        if order is None:  # multiply-adds, and each value written to memory as WRITE of them
            by_aggregating = block.num_rows * d_in * (d_out + WRITE) + block.num_entries * d_in
            by_projecting = n_src * d_out * (d_in + WRITE) + block.num_entries * d_out
            order = "aggregate" if by_aggregating <= by_projecting else "project"
        values = values.index_select(0, block.by_destination().perm)
        if order == "aggregate":
            out = type_matmul(block, spmm(destination_rows(block), values, x), self.weight)
        else:
            out = spmm(merged_pattern(block, out_of), values, project(block, x, self.weight, out_of))
        return add_bias(block, out, self.bias)
