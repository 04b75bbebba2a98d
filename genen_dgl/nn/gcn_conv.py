"""Heterogeneous graph convolution (Genen eq. 1, Kipf & Welling), one weight per relation.

.. math::
    h_v' = \\sum_{r} \\Big( \\sum_{u \\in \\tilde N_r(v)}
           \\frac{w_{uv}}{\\sqrt{\\tilde d^{out}_r(u)\\, \\tilde d^{in}_r(v)}} \\, h_u \\Theta_r + b_r \\Big)

:math:`\\tilde N_r` includes :math:`v` itself for relations between nodes of one type
(:math:`\\tilde A = A + I`, added when the block is built; a node type with no such
relation gets a ``self`` relation of loops only), degrees count those loops and are
clamped at 1, and :math:`w_{uv}` is the edge weight (1 without weights). The
coefficients come with the block (``Relation.norm``): on a sampled block they use the
whole graph's degrees, rescaled by :math:`d(v)/k_v`, so that training, validation and
test apply one operator (:meth:`genen_dgl.nn.sparse.Relation.from_csc`). On a whole
graph this equals ``dgl.nn.HeteroGraphConv({r: GraphConv(norm="both")}, aggregate="sum")``.

The projection commutes with the (linear) aggregation, so each relation takes the cheaper
order: :math:`\\hat A (H\\Theta)` costs :math:`n_{src} d_{in} d_{out} + E\\, d_{out}`
multiply-adds, :math:`(\\hat A H)\\Theta` costs :math:`n_{dst} d_{in} d_{out} + E\\, d_{in}`. On a
sampled first layer GO sources outnumber GO destinations ~3:1, so aggregating first wins there.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genen_dgl.nn.sparse import MessageBlock, spmm


def rel_key(etype: tuple[str, str, str]) -> str:
    return ":".join(etype)


class HeteroGCNConv(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, etypes: list[tuple[str, str, str]]):
        super().__init__()
        self.etypes = list(etypes)
        self.linear = nn.ModuleDict({rel_key(e): nn.Linear(in_dim, out_dim) for e in self.etypes})
        for lin in self.linear.values():
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, block: MessageBlock, h: dict[str, torch.Tensor],
        edge_weight: dict[tuple[str, str, str], torch.Tensor] | None = None,
        out_types: set[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for etype in self.etypes:
            src, _, dst = etype
            if etype not in block.relations or (out_types is not None and dst not in out_types):
                continue
            rel = block.relations[etype]
            w = edge_weight.get(etype) if edge_weight else None
            values = rel.norm if w is None else rel.norm * w
            lin, x = self.linear[rel_key(etype)], h[src]
            d_in, d_out, e = x.shape[1], lin.out_features, rel.num_edges
            if rel.num_dst * d_in * d_out + e * d_in < rel.num_src * d_in * d_out + e * d_out:
                msg = F.linear(spmm(rel, values, x), lin.weight, lin.bias)  # aggregate, then project
            else:
                msg = spmm(rel, values, x @ lin.weight.t()) + lin.bias  # project, then aggregate
            out[dst] = msg if dst not in out else out[dst] + msg
        return out
