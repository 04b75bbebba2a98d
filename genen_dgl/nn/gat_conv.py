"""Heterogeneous graph attention (Genen eq. 2, Velickovic et al.), multi-head, per relation.

.. math::
    \\alpha^k_{uv} = \\operatorname{softmax}_{u \\in N_r(v)}
        \\operatorname{LeakyReLU}\\big(a_{r,k}^{src\\top} W^k_r h_u + a_{r,k}^{dst\\top} W^k_r h_v\\big),
    \\qquad
    h_v'^{\\,k} = \\sum_r \\Big(\\sum_{u \\in N_r(v)} \\alpha^k_{uv} W^k_r h_u + b^k_r\\Big)

(the split of :math:`a^\\top[Wh_v \\| Wh_u]` into its source and destination halves).
:math:`N_r` includes :math:`v` for relations between nodes of one type when the block
was built with self-loops. Output ``(num_dst, heads, out_dim)``, destination types stacked.
Equal to ``dgl.nn.HeteroGraphConv({r: GATConv(..., allow_zero_in_degree=True)}, aggregate="sum")``.

One pass over all relations: the attention logits come from one small matmul per node
type (:math:`a^\\top W_r h = (W_r a)^\\top h`, for every relation the type takes part in),
the scores of every entry from two gathers, the softmax runs over every (relation,
destination) row at once. The messages either project each node type by its relations
and take one sparse product, or (cheaper with wide inputs) sum the inputs with the
attention of each head and project each destination type's relation rows with one batched
matmul over the heads: :math:`\\sum_u \\alpha_{uv} W h_u = W \\sum_u \\alpha_{uv} h_u`. Either
way every head goes through the same one sparse product (the heads' copies of the pattern
down a diagonal, :func:`~genen_dgl.nn.stacked.destination_rows`). Padded entries
(``mask``) get no attention; a row without entries outputs its bias, as DGL's.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genen_dgl.nn.sparse import ETYPE, MessageBlock, relation_order, spmm
from genen_dgl.nn.gcn_conv import WRITE
from genen_dgl.nn.stacked import (
    add_bias, check_relations, destination_rows, merged_pattern, project, projected_dst, projected_rows,
    projected_src, relation_sets, type_matmul,
)


def edge_softmax(block: MessageBlock, scores: torch.Tensor) -> torch.Tensor:
    """Softmax of per-entry ``scores`` (E, H) over each row's real entries (0 elsewhere), in
    float32 whatever the scores' type (CUDA autocast runs ``exp`` in float32 anyway)."""
    scores = scores.float()
    row = block.row[:, None].expand_as(scores)
    if block.mask is not None:
        scores = scores.masked_fill(~block.mask[:, None], float("-inf"))
    peak = scores.new_full((block.num_rows, scores.shape[1]), float("-inf"))
    peak = peak.scatter_reduce(0, row, scores.detach(), "amax").nan_to_num(neginf=0.0)
    z = torch.exp(scores - peak.gather(0, row))
    total = torch.zeros_like(peak).index_add_(0, block.row, z)
    return z / total.masked_fill(total == 0, 1.0).gather(0, row)  # a row of padding only: 0 / 1


class HeteroGATConv(nn.Module):
    """``weight[r]`` is :math:`W_r` for all heads (``in_dim x heads*out_dim``), ``attn_src[r]`` /
    ``attn_dst[r]`` are :math:`a_r` (``heads x out_dim``), ``bias[r]`` is :math:`b_r`."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, etypes: list[ETYPE],
                 negative_slope: float = 0.2, attn_drop: float = 0.0):
        super().__init__()
        self.etypes, self.heads, self.out_dim = tuple(relation_order(etypes)), heads, out_dim
        self.negative_slope, self.attn_drop = negative_slope, attn_drop
        r = len(self.etypes)
        self.weight = nn.Parameter(torch.empty(r, in_dim, heads * out_dim))
        self.attn_src = nn.Parameter(torch.empty(r, heads, out_dim))
        self.attn_dst = nn.Parameter(torch.empty(r, heads, out_dim))
        self.bias = nn.Parameter(torch.zeros(r, heads * out_dim))
        gain = nn.init.calculate_gain("relu")
        for i in range(r):
            nn.init.xavier_normal_(self.weight.data[i], gain=gain)
            nn.init.xavier_normal_(self.attn_src.data[i: i + 1], gain=gain)
            nn.init.xavier_normal_(self.attn_dst.data[i: i + 1], gain=gain)

    def forward(self, block: MessageBlock, x: torch.Tensor, order: str | None = None) -> torch.Tensor:
        """``x``: stacked sources ``(sum_t num_src[t], in_dim)``; returns stacked destinations
        ``(sum_t num_dst[t], heads, out_dim)``. ``order``: ``project`` (each node type by
        every relation it takes part in, then one sparse product) or ``aggregate`` (each
        head's attention-weighted sums of the inputs, one sparse product, then one batched
        matmul per destination type); default: the cheaper, counting multiply-adds and writes as GCN's."""
        check_relations(block, self.etypes)
        H, D = self.heads, self.out_dim
        R, d_in = self.weight.shape[:2]
        touching = relation_sets(block, lambda t, e: t in (e[0], e[2]))
        # attention logits a^T W h = (W a)^T h: per (node, relation it touches), both halves at once
        w = self.weight.view(R, d_in, H, D)
        a = torch.stack([self.attn_src, self.attn_dst], 1)  # (R, 2, H, D)
        attn = (w.unsqueeze(2) * a.unsqueeze(1)).sum(-1).view(R, d_in, 2 * H)  # (W_r a_r) per input unit
        logits = project(block, x, attn, touching).view(-1, 2, H)
        scores = logits[:, 0].index_select(0, projected_src(block, touching)) + \
            logits[:, 1].index_select(0, projected_dst(block, touching))
        alpha = F.dropout(edge_softmax(block, F.leaky_relu(scores, self.negative_slope)), self.attn_drop,
                          self.training)
        if order is None:
            _, touched = projected_rows(block, touching)
            e, rows = block.num_entries, block.num_rows
            by_projecting = touched * H * D * (d_in + WRITE) + H * e * D
            by_aggregating = H * (e * d_in + rows * d_in * (D + WRITE))
            order = "aggregate" if by_aggregating < by_projecting else "project"
        # every head in one sparse product: the heads' patterns down a diagonal, their values in a row
        alpha = alpha.index_select(0, block.by_destination().perm).t().reshape(-1)
        if order == "project":
            feat = project(block, x, self.weight, touching).view(-1, H, D)  # rows (u, r) per type
            out = spmm(merged_pattern(block, touching, H), alpha, feat.permute(1, 0, 2).reshape(-1, D))
        else:
            out = type_matmul(block, spmm(destination_rows(block, H), alpha, x).view(H, block.num_rows, -1), w)
        return add_bias(block, out.view(H, -1, D).permute(1, 0, 2), self.bias)
