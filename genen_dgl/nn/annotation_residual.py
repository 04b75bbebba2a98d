"""The GO-annotation baseline inside the GNN (``--annotation-residual``)."""

from __future__ import annotations

import torch
from torch import nn


class AnnotationResidual(nn.Module):
    """A linear layer on each target gene's own GO annotations, added to the output logits:
    :math:`o_v = \\mathrm{GNN}(v) + \\sum_{j \\in \\mathrm{GO}(v)} w_j` (``w_j`` a free row per
    GO term: the GO-annotation baseline's logistic regression, whose bias the output layer's
    bias plays; Adam's weight decay is its L2 penalty). ``w`` starts at zero, so a fresh
    model computes what the GNN alone computes. The annotations are the graph's ``annotated``
    edges: the ones the fold's graph holds."""

    def __init__(self, genes: torch.Tensor, terms: torch.Tensor, num_genes: int, num_terms: int, out_dim: int):
        super().__init__()
        order = torch.argsort(genes * num_terms + terms)  # gene-major: a CSR of genes x terms
        count = torch.bincount(genes, minlength=num_genes)
        self.register_buffer("indptr", torch.cat([count.new_zeros(1), count.cumsum(0)]), persistent=False)
        self.register_buffer("indices", terms[order].long(), persistent=False)
        self.weight = nn.EmbeddingBag(num_terms, out_dim, mode="sum")
        nn.init.zeros_(self.weight.weight)

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        """``(len(genes), out_dim)``: each gene's summed term rows (zeros without terms)."""
        start = self.indptr[genes]
        count = self.indptr[genes + 1] - start
        offsets = count.cumsum(0) - count
        flat = torch.arange(int(count.sum()), device=genes.device) + torch.repeat_interleave(start - offsets, count)
        return self.weight(self.indices[flat], offsets)
