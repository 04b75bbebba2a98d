"""Correct & Smooth: its propagation, a graph with a known answer, training labels only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import sparse

from genen_dgl.correct_smooth import correct_and_smooth, operator, per_fold, propagate
from genen_dgl.dgl_compat import dgl
from genen_dgl.evaluation import split_folds
from genen_dgl.train import main
from genen_dgl.splits import Split


def operator_of(a: np.ndarray):
    d = a.sum(1) ** -0.5
    s = sparse.csr_matrix(d[:, None] * a * d[None, :])
    return lambda x: s @ x


def random_graph(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.triu(rng.random((n, n)) < 0.2, 1).astype(float)
    a = a + a.T
    a[np.arange(n), (np.arange(n) + 1) % n] = a[(np.arange(n) + 1) % n, np.arange(n)] = 1  # a ring: connected
    return a


def test_propagation_reaches_its_closed_form():
    """X = (1 - a) X0 + a S X has the fixed point (1 - a)(I - a S)^-1 X0."""
    a = random_graph(12, 0)
    s = operator_of(a)
    x0 = np.random.default_rng(1).normal(size=(12, 3))
    d = a.sum(1) ** -0.5
    closed = 0.3 * np.linalg.solve(np.eye(12) - 0.7 * d[:, None] * a * d[None, :], x0)
    np.testing.assert_allclose(propagate(s, x0, 0.7, 200), closed, atol=1e-10)
    assert not np.allclose(propagate(s, x0, 0.7, 1), closed, atol=1e-3)


@pytest.mark.parametrize("label", [0, 1])
def test_two_genes_known_answer(label):
    """Two linked genes, the model unsure of both (0.5, 0.5), gene 0 in training: the
    propagated residual reaches gene 1 as alpha / (1 + alpha) of gene 0's, autoscale brings
    it to gene 0's full residual, so gene 1 moves to gene 0's label; smoothing keeps it."""
    s = operator_of(np.array([[0.0, 1.0], [1.0, 0.0]]))
    out = correct_and_smooth(s, np.full((2, 2), 0.5), np.array([0]), np.array([label]), 0.8, 0.8)
    np.testing.assert_allclose(out[1], np.eye(2)[label], atol=1e-3)


def test_only_training_labels_are_read():
    """Changing the labels of validation and test genes changes no prediction; changing a
    training gene's does."""
    n, classes = 40, 3
    s = operator_of(random_graph(n, 2))
    rng = np.random.default_rng(3)
    y = rng.integers(0, classes, n)
    z = rng.dirichlet(np.ones(classes), size=n)
    splits = [Split(0, k, f, f"fold{k}") for k, f in enumerate(split_folds(y, "multiclass", 4, 0))]
    nodes = np.arange(n)
    before = list(per_fold(s, [z] * 4, splits, nodes, y, (0.8, 0.8)))
    for split, out in zip(splits, before):
        assert np.allclose(out.sum(1), 1) and (out >= 0).all()
        held_out = np.concatenate([split.fold.val, split.fold.test])
        changed = y.copy()
        changed[held_out] = (changed[held_out] + 1) % classes
        np.testing.assert_array_equal(next(per_fold(s, [z], [split], nodes, changed, (0.8, 0.8))), out)
        changed = y.copy()
        changed[split.fold.train[0]] = (changed[split.fold.train[0]] + 1) % classes
        assert not np.array_equal(next(per_fold(s, [z], [split], nodes, changed, (0.8, 0.8))), out)


def test_graph_operators_equal_their_dense_form():
    """``go``: S over M M^T (genes sharing terms, applied without forming it); ``ppi``: over
    the PPI edges; ``go_ppi``: their mean."""
    ppi = ([0, 1, 1, 2], [1, 0, 2, 1])
    genes, terms = [0, 0, 1, 2, 3], [0, 1, 1, 2, 2]
    g = dgl.heterograph({("gene", "interacts", "gene"): ppi, ("gene", "annotated", "go"): (genes, terms),
                         ("go", "annotates", "gene"): (terms, genes)}, {"gene": 4, "go": 3})
    m = np.zeros((4, 3))
    m[genes, terms] = 1
    a_go, a_ppi = m @ m.T, np.zeros((4, 4))
    a_ppi[ppi[1], ppi[0]] = 1
    x = np.random.default_rng(0).normal(size=(4, 2))

    def dense(a):
        deg = a.sum(1)
        d = np.where(deg > 0, deg, 1) ** -0.5 * (deg > 0)
        return d[:, None] * a * d[None, :] @ x

    np.testing.assert_allclose(operator(g, "go")(x), dense(a_go), atol=1e-12)
    np.testing.assert_allclose(operator(g, "ppi")(x), dense(a_ppi), atol=1e-12)  # gene 3: no PPI edge, row 0
    np.testing.assert_allclose(operator(g, "go_ppi")(x), (dense(a_go) + dense(a_ppi)) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="no interacts edges"):
        operator(dgl.heterograph({("gene", "annotated", "go"): (torch.tensor(genes), torch.tensor(terms))}), "ppi")


def test_a_run_reports_the_model_with_and_without_it(sample_spec, tmp_path, capsys):
    args = ["--data", str(sample_spec), "--folds", "2", "--epochs", "2", "--hidden", "16", "--sampler", "full"]
    assert main([*args, "--out", str(tmp_path / "run"), "--correct-smooth", "go_ppi"]) == 0
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    cs = report["correct_smooth"]
    assert cs["graph"] == "go_ppi" and len(cs["folds"]) == len(report["folds"]) == 2
    assert cs["val_summary"]["auc_n"] == cs["val_summary_model"]["auc_n"] == 2
    assert set(cs["comparisons"]) == {"metric", "model", *report["baselines"]}
    assert "with C&S (go_ppi)" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "reg"), "--correct-smooth", "ppi", "--task", "conservation"]) == 2
    assert "classification" in capsys.readouterr().err
