"""genen-dgl: Genen gene-representation refinement (BERT features + GCN/GAT) on DGL."""

__version__ = "0.1.0"
