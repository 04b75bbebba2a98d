"""Genen's GNN: a stack of heterogeneous GCN or GAT layers over gene and GO nodes.

Hidden layers: convolution, activation (ReLU for GCN, ELU for GAT, heads concatenated),
dropout. The output layer is a convolution too (the paper found it ~1% better than a
linear head); GAT averages its heads there. ``forward(..., return_hidden=True)`` also
returns the refined gene embeddings: the last hidden layer's pre-activation.
Every layer reads and writes the node types stacked in one tensor (``MessageBlock``'s order).
Optional: learnable node embeddings concatenated to the inputs
(:class:`~genen_dgl.nn.node_embedding.NodeEmbeddings`) and a linear residual on each gene's
GO annotations added to the logits
(:class:`~genen_dgl.nn.annotation_residual.AnnotationResidual`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from genen_dgl.nn.annotation_residual import AnnotationResidual
from genen_dgl.nn.gat_conv import HeteroGATConv
from genen_dgl.nn.gcn_conv import HeteroGCNConv
from genen_dgl.nn.node_embedding import NodeEmbeddings
from genen_dgl.nn.sparse import ETYPE, MessageBlock, self_relations
from genen_dgl.nn.stacked import matrix


class GenenGNN(nn.Module):
    def __init__(
        self, model: str, in_dim: int, hidden: int, out_dim: int, num_layers: int,
        etypes: list[ETYPE], heads: int = 4, dropout: float = 0.5,
        learned_weights: dict[ETYPE, int] | None = None, target: str = "gene",
        embeddings: NodeEmbeddings | None = None, residual: AnnotationResidual | None = None,
    ):
        """``learned_weights`` maps relations to their parent-graph edge counts: each edge
        gets a trainable weight :math:`\\sigma(\\theta_e)`, :math:`\\theta_e \\sim N(0, 1)`.
        ``in_dim`` is the text features' width (``embeddings`` widen the first layer's input)."""
        super().__init__()
        self.embeddings, self.residual = embeddings, residual
        in_dim += embeddings.dim if embeddings is not None else 0
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

    def edge_values(self, block: MessageBlock) -> torch.Tensor:
        """Each entry's GCN coefficient times its edge weight: learned where configured
        (loops and padding keep weight 1), else the block's fixed weight, else 1."""
        values = block.norm if block.weight is None else block.norm * block.weight
        for key, theta in self.edge_theta.items():
            r = [":".join(e) for e in block.etypes].index(key)
            learned = torch.sigmoid(theta)[block.eid.clamp(0, theta.numel() - 1)]
            values = torch.where((block.rel == r) & (block.eid >= 0), block.norm * learned, values)
        return values

    def apply_layer(self, i: int, block: MessageBlock, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i`` alone on ``block`` (stacked inputs ``h``): what :meth:`forward` does at
        that layer, for layer-wise inference. Returns (output, pre-activation): for a hidden
        layer the activated (and, in training, dropped-out) output as a matrix and its
        pre-activation; for the output layer the stacked destinations' logits (GAT heads
        averaged) and None. Node embeddings and the annotation residual are not applied."""
        layer = self.layers[i]
        h = layer(block, h, self.edge_values(block)) if self.model == "gcn" else layer(block, h)
        if i < self.num_layers - 1:
            pre = matrix(h)
            return F.dropout(F.relu(pre) if self.model == "gcn" else F.elu(pre), self.dropout, self.training), pre
        return (h.mean(1) if h.dim() == 3 else h), None

    def forward(self, blocks: list[MessageBlock], x: dict[str, torch.Tensor] | torch.Tensor,
                return_hidden: bool = False, nodes: dict[str, torch.Tensor] | None = None,
                seeds: torch.Tensor | None = None):
        """Logits of the target nodes of the last block and, if asked, their refined
        embeddings: the last hidden layer's output before its activation (after a ReLU most
        units of a GCN embedding are exactly zero for a given gene set). ``x``: input
        features per node type, or already stacked in the first block's order. ``nodes``
        (the input nodes' ids per type) and ``seeds`` (the target nodes' ids) are what the
        node embeddings and the annotation residual read; None: every node, in order."""
        if self.embeddings is not None:
            if isinstance(x, torch.Tensor):
                raise ValueError("node embeddings need the input features per node type, not stacked")
            x = self.embeddings(x, nodes)
        h = x if isinstance(x, torch.Tensor) else torch.cat([x[t] for t in blocks[0].ntypes])
        pre = h  # the last block's stacked inputs, before their activation
        for i, block in enumerate(blocks):
            layer = self.layers[i]
            h = layer(block, h, self.edge_values(block)) if self.model == "gcn" else layer(block, h)
            if i < self.num_layers - 1:
                pre = matrix(h)
                h = F.dropout(F.relu(pre) if self.model == "gcn" else F.elu(pre), self.dropout, self.training)
        last = blocks[-1]
        at, n = last.dst_off[self.target], last.num_dst[self.target]
        out = h if at == 0 and n == h.shape[0] else h[at: at + n]
        out = out.mean(1) if out.dim() == 3 else out
        if self.residual is not None:
            out = out + self.residual(seeds if seeds is not None else torch.arange(n, device=out.device)).to(out.dtype)
        if not return_hidden:
            return out
        return out, matrix(pre)[last.dst_columns(self.target)]
