"""Genen's experiments as commands, each a sweep of :class:`~genen_dgl.config.TrainConfig`
variants run through :func:`genen_dgl.training.cross_validation.run_cross_validation`
on one machine, written as a CSV and a PNG.

``python -m genen_dgl.experiments SUBCOMMAND --data DATASET.yaml --out DIR``:

=============  ================================================================
``masking``    AUC vs share of nodes with zeroed input features (paper Fig. 4b)
``bias``       less- vs well-studied genes, GNN vs baseline (Fig. 4a)
``leakage``    the binary task with and without the GO leakage filter (Fig. 2a)
``embeddings`` t-SNE of input vs refined gene embeddings (Fig. 3)
``table``      every task x model x graph variant vs the baseline (Table 1, A.1)
=============  ================================================================

``python -m genen_dgl.experiments.choose NAME=DIR ... --out DIR`` then picks one
configuration per task and regime among several ``table`` runs, on the validation share.
=============  ================================================================
"""
