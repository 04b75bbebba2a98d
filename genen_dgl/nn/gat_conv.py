"""Heterogeneous graph attention (Genen eq. 2, Velickovic et al.), multi-head, per relation.

.. math::
    \\alpha^k_{uv} = \\operatorname{softmax}_{u \\in N_r(v)}
        \\operatorname{LeakyReLU}\\big(a_{r,k}^{src\\top} W^k_r h_u + a_{r,k}^{dst\\top} W^k_r h_v\\big),
    \\qquad
    h_v'^{\\,k} = \\sum_r \\Big(\\sum_{u \\in N_r(v)} \\alpha^k_{uv} W^k_r h_u + b^k_r\\Big)

(the split of :math:`a^\\top[Wh_v \\| Wh_u]` into its source and destination halves).
:math:`N_r` includes :math:`v` for relations between nodes of one type when the block
was built with self-loops. Output ``(num_dst, heads, out_dim)``. Equal to
``dgl.nn.HeteroGraphConv({r: GATConv(..., allow_zero_in_degree=True)}, aggregate="sum")``.

Work saved against a literal reading: only sources with an edge in the relation are
projected (a sampled first layer has far more sources than any one relation reaches);
within one node type the destinations are the first sources (DGL's block convention), so
:math:`W h_v` is read from the projected sources rather than computed twice; heads are split
with ``unbind`` so backward assembles one gradient instead of one per head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genen_dgl.nn.gcn_conv import rel_key
from genen_dgl.nn.sparse import MessageBlock, Relation, spmm


def edge_softmax(rel: Relation, scores: torch.Tensor) -> torch.Tensor:
    """Softmax of per-edge ``scores`` (E, H) over each destination's in-edges."""
    peak = torch.full((rel.num_dst, scores.shape[1]), float("-inf"), device=scores.device, dtype=scores.dtype)
    peak = peak.scatter_reduce(0, rel.row[:, None].expand_as(scores), scores.detach(), "amax")
    z = torch.exp(scores - peak[rel.row])
    total = torch.zeros_like(peak).index_add_(0, rel.row, z)
    return z / total[rel.row]


class HeteroGATConv(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, heads: int, etypes: list[tuple[str, str, str]],
                 negative_slope: float = 0.2, attn_drop: float = 0.0):
        super().__init__()
        self.etypes, self.heads, self.out_dim = list(etypes), heads, out_dim
        self.negative_slope, self.attn_drop = negative_slope, attn_drop
        keys = [rel_key(e) for e in self.etypes]
        self.fc = nn.ModuleDict({k: nn.Linear(in_dim, heads * out_dim, bias=False) for k in keys})
        self.attn_src = nn.ParameterDict({k: nn.Parameter(torch.empty(1, heads, out_dim)) for k in keys})
        self.attn_dst = nn.ParameterDict({k: nn.Parameter(torch.empty(1, heads, out_dim)) for k in keys})
        self.bias = nn.ParameterDict({k: nn.Parameter(torch.zeros(heads * out_dim)) for k in keys})
        gain = nn.init.calculate_gain("relu")
        for k in keys:
            nn.init.xavier_normal_(self.fc[k].weight, gain=gain)
            nn.init.xavier_normal_(self.attn_src[k], gain=gain)
            nn.init.xavier_normal_(self.attn_dst[k], gain=gain)

    def _project_sources(self, rel: Relation, k: str, x: torch.Tensor, same_type: bool) -> torch.Tensor:
        """``W_r x`` as (num_src, heads, out_dim); rows no edge reads stay zero."""
        needed = rel.t_rowptr[1:] > rel.t_rowptr[:-1]
        if same_type:
            needed[: rel.num_dst] = True  # the destinations read their own rows
        used = torch.nonzero(needed).flatten()
        if used.numel() >= 0.8 * rel.num_src:  # too few to skip: one dense product
            return self.fc[k](x).view(-1, self.heads, self.out_dim)
        proj = self.fc[k](x[used])
        return proj.new_zeros(rel.num_src, proj.shape[1]).index_copy(0, used, proj).view(-1, self.heads, self.out_dim)

    def forward(self, block: MessageBlock, h: dict[str, torch.Tensor],
                out_types: set[str] | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        H, D = self.heads, self.out_dim
        for etype in self.etypes:
            src, _, dst = etype
            if etype not in block.relations or (out_types is not None and dst not in out_types):
                continue
            rel, k = block.relations[etype], rel_key(etype)
            feat_src = self._project_sources(rel, k, h[src], same_type=src == dst)
            if src == dst:
                feat_dst = feat_src[: rel.num_dst]
            else:
                feat_dst = self.fc[k](h[dst][: rel.num_dst]).view(-1, H, D)
            el = (feat_src * self.attn_src[k]).sum(-1)
            er = (feat_dst * self.attn_dst[k]).sum(-1)
            alpha = edge_softmax(rel, F.leaky_relu(el[rel.col] + er[rel.row], self.negative_slope))
            alpha = F.dropout(alpha, self.attn_drop, self.training)
            heads, weights = feat_src.unbind(1), alpha.unbind(1)
            msg = torch.stack([spmm(rel, weights[i], heads[i]) for i in range(H)], 1)
            msg = msg + self.bias[k].view(1, H, D)
            out[dst] = msg if dst not in out else out[dst] + msg
        return out
