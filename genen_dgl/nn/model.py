"""Genen's GNN: a stack of heterogeneous GCN or GAT layers over gene and GO nodes.

Hidden layers: convolution, activation (ReLU for GCN, ELU for GAT, heads concatenated),
dropout. The output layer is a convolution too (the paper found it ~1% better than a
linear head); GAT averages its heads there. ``forward(..., return_hidden=True)`` also
returns the refined gene embeddings: the last hidden layer's pre-activation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genen_dgl.nn.gat_conv import HeteroGATConv
from genen_dgl.nn.gcn_conv import HeteroGCNConv
from genen_dgl.nn.sparse import ETYPE, MessageBlock, self_relations


class GenenGNN(nn.Module):
    def __init__(
        self, model: str, in_dim: int, hidden: int, out_dim: int, num_layers: int,
        etypes: list[ETYPE], heads: int = 4, dropout: float = 0.5,
        learned_weights: dict[ETYPE, int] | None = None, target: str = "gene",
    ):
        """``learned_weights`` maps relations to their parent-graph edge counts: each edge
        gets a trainable weight :math:`\\sigma(\\theta_e)`, :math:`\\theta_e \\sim N(0, 1)`."""
        super().__init__()
        if model not in ("gcn", "gat"):
            raise ValueError(f"model {model!r}: expected gcn or gat")
        self.model, self.target, self.dropout, self.num_layers = model, target, dropout, num_layers
        etypes = list(etypes) + self_relations(list(etypes))  # every node sees its own features
        width = hidden if model == "gcn" else (hidden // heads) * heads  # GAT concatenates heads
        dims = [in_dim] + [width] * (num_layers - 1)
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            last = i == num_layers - 1
            if model == "gcn":
                self.layers.append(HeteroGCNConv(dims[i], out_dim if last else hidden, etypes))
            else:  # hidden width = heads x (hidden / heads), concatenated
                width = out_dim if last else hidden // heads
                self.layers.append(HeteroGATConv(dims[i], width, heads, etypes))
        self.edge_theta = nn.ParameterDict({
            ":".join(e): nn.Parameter(torch.randn(n)) for e, n in (learned_weights or {}).items()
        })

    def edge_weights(self, block: MessageBlock) -> dict[ETYPE, torch.Tensor]:
        """Per-edge weights of one block: learned where configured, else fixed, else none."""
        weights = {}
        for etype, rel in block.relations.items():
            key = ":".join(etype)
            if key in self.edge_theta:
                w = torch.sigmoid(self.edge_theta[key])[rel.eid.clamp(min=0)]
                weights[etype] = torch.where(rel.eid >= 0, w, torch.ones_like(w))
            elif rel.weight is not None:
                weights[etype] = rel.weight
        return weights

    def _layer(self, i: int, block: MessageBlock, h: dict[str, torch.Tensor], out_types) -> dict[str, torch.Tensor]:
        layer = self.layers[i]
        if self.model == "gcn":
            return layer(block, h, self.edge_weights(block), out_types)
        return layer(block, h, out_types)

    def _activate(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        act = F.relu if self.model == "gcn" else F.elu
        return {t: F.dropout(act(x.flatten(1)), self.dropout, self.training) for t, x in h.items()}

    def forward(self, blocks: list[MessageBlock], x: dict[str, torch.Tensor],
                return_hidden: bool = False):
        """Logits of the target nodes of the last block and, if asked, their refined
        embeddings: the last hidden layer's output before its activation (after a ReLU most
        units of a GCN embedding are exactly zero for a given gene set)."""
        h, pre = x, x[self.target]
        for i, block in enumerate(blocks):
            last = i == self.num_layers - 1
            h = self._layer(i, block, h, {self.target} if last else None)
            if not last:
                pre = h[self.target].flatten(1)
                h = self._activate(h)
        out = h[self.target]
        out = out.mean(1) if out.dim() == 3 else out
        return (out, pre[: blocks[-1].num_dst[self.target]]) if return_hidden else out
