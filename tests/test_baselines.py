"""The linear baselines: the views they read and the training share they fit on."""

from __future__ import annotations

import numpy as np
import torch

from genen_dgl.baselines import fit_predict, normalized_adjacency, views
from genen_dgl.dgl_compat import dgl
from genen_dgl.evaluation import Fold, metrics


def small_graph(seed: int = 0):
    """80 genes in a ring of PPI edges, 30 GO terms, each gene annotated with 1-3 terms."""
    rng = np.random.default_rng(seed)
    n, m = 80, 30
    ring = np.arange(n)
    ppi = (np.concatenate([ring, (ring + 1) % n]), np.concatenate([(ring + 1) % n, ring]))
    genes = np.repeat(ring, 2)
    terms = rng.integers(0, m, len(genes))
    g = dgl.heterograph({
        ("gene", "interacts", "gene"): tuple(torch.as_tensor(a) for a in ppi),
        ("gene", "annotated", "go"): (torch.as_tensor(genes), torch.as_tensor(terms)),
        ("go", "annotates", "gene"): (torch.as_tensor(terms), torch.as_tensor(genes)),
    }, num_nodes_dict={"gene": n, "go": m})
    return g, genes, terms


def test_normalized_adjacency_is_the_symmetric_gcn_operator():
    src, dst = np.array([0, 1, 1, 2, 0]), np.array([1, 0, 2, 1, 1])  # (0, 1) listed twice
    a = np.zeros((3, 3))
    a[dst, src] = 1
    a += np.eye(3)
    d = a.sum(1) ** -0.5
    np.testing.assert_allclose(normalized_adjacency(src, dst, 3).toarray(), d[:, None] * a * d[None, :], rtol=1e-6)


def test_views_read_features_ppi_and_annotations():
    g, genes, terms = small_graph()
    x = np.random.default_rng(1).normal(size=(80, 5)).astype(np.float32)
    nodes = np.array([3, 10, 50])
    v = views(g, x, nodes)
    assert set(v) == {"text", "ppi_smoothed", "go_annotations"}
    np.testing.assert_array_equal(v["text"], x[nodes])
    # ring: each gene has two neighbours and itself, all of degree 3 -> one hop is the mean of three
    one = (x[(nodes - 1) % 80] + x[nodes] + x[(nodes + 1) % 80]) / 3
    np.testing.assert_allclose(v["ppi_smoothed"][:, 5:10], one, rtol=1e-5, atol=1e-6)
    hot = v["go_annotations"].toarray()
    for row, gene in zip(hot, nodes):
        assert set(np.flatnonzero(row)) == set(terms[genes == gene])
    ppi_only = dgl.edge_type_subgraph(g, [("gene", "interacts", "gene")])
    assert set(views(ppi_only, x, nodes)) == {"text", "ppi_smoothed"}


def test_go_baseline_finds_a_label_stated_by_an_annotation():
    g, genes, terms = small_graph(2)
    term = np.bincount(terms).argmax()
    y = np.zeros(80, np.int64)
    y[genes[terms == term]] = 1  # the label is "annotated with this term"
    x = np.random.default_rng(3).normal(size=(80, 5)).astype(np.float32)
    v = views(g, x, np.arange(80))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    assert len(pos) >= 4
    test = np.sort(np.concatenate([pos[::2], neg[::3]]))
    rest = np.setdiff1d(np.arange(80), test)
    fold = Fold(rest, rest[:0], test)
    auc = {k: metrics("binary", y[fold.test], fit_predict(x_, y, "binary", fold, 2, 0))["auc"] for k, x_ in v.items()}
    assert auc["go_annotations"] > 0.95 and auc["text"] < 0.8


def test_baselines_fit_on_the_training_part_only():
    """The GNN early-stops on the validation part and never trains on it; nor do the baselines."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    fold = Fold(np.arange(0, 40), np.arange(40, 50), np.arange(50, 60))
    flipped = y.copy()
    flipped[fold.val] = 1 - flipped[fold.val]
    np.testing.assert_array_equal(fit_predict(x, y, "binary", fold, 2, 0), fit_predict(x, flipped, "binary", fold, 2, 0))
    flipped[fold.train[:10]] = 1 - flipped[fold.train[:10]]
    assert not np.array_equal(fit_predict(x, y, "binary", fold, 2, 0), fit_predict(x, flipped, "binary", fold, 2, 0))
