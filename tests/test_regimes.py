"""The novel-gene regime (--hide-test-annotations), label propagation, the strata, and the
table's resumability."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from genen_dgl import baselines
from genen_dgl.baselines import ALPHA, Propagation, baseline_inputs, fitted, out_of_fold, propagations
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import annotation_counts, load_full_graph
from genen_dgl.schema import ANNOTATES, PPI
from genen_dgl.data.spec import load_spec
from genen_dgl.sampling.device import DeviceGraph
from genen_dgl.evaluation import ANNOTATION_STRATA, Fold, annotation_stratum, metrics, strata
from genen_dgl.experiments import table
from genen_dgl.experiments.__main__ import main
from genen_dgl.local import FullGraphPredictor, LocalBackend
from genen_dgl.training.cross_validation import run_cross_validation

from test_baselines import small_graph

TINY = dict(epochs=2, folds=2, hidden=16, threads=1, refit=False)


def homogeneous(graph, etypes) -> sparse.csr_matrix:
    """The undirected adjacency of ``graph``'s ``etypes`` over all nodes (genes first, then GO)."""
    offset = {"gene": 0, "go": graph.num_nodes("gene")}
    n = graph.num_nodes("gene") + graph.num_nodes("go")
    rows, cols = [], []
    for s, e, d in etypes:
        src, dst = (t.numpy() for t in graph.edges(etype=(s, e, d)))
        rows.append(src + offset[s])
        cols.append(dst + offset[d])
    r, c = np.concatenate(rows), np.concatenate(cols)
    a = sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    return (a + a.T).tocsr()


def reaches_go(graph, etypes, genes: np.ndarray) -> bool:
    """Whether any of ``genes`` has a path to a GO node over ``etypes``."""
    _, component = connected_components(homogeneous(graph, etypes), directed=False)
    return bool(np.isin(component[genes], component[graph.num_nodes("gene"):]).any())


@pytest.mark.parametrize("sampler", ["full", "device", "neighbor"])
def test_hidden_graph_has_no_path_from_a_test_gene_to_go(sample_spec, sampler):
    config = TrainConfig(data=str(sample_spec), graph="go_ppi", sampler=sampler, hide_test_annotations=True,
                         **TINY).resolved()
    data = LocalBackend(config)
    split = data.splits[0]
    test = data.nodes[np.concatenate([split.fold.test, split.fold.val])]  # validation genes look like test genes
    graph, weights, block = data.fold_graph(split)
    full = data.data.graph
    go_only = [e for e in graph.canonical_etypes if e != PPI]
    assert reaches_go(full, go_only, test)  # before hiding, the test genes are annotated
    assert not reaches_go(graph, go_only, test)  # after: only through a PPI neighbour
    assert graph.num_edges(PPI) == full.num_edges(PPI)  # PPI edges and text stay
    assert torch.equal(graph.nodes["gene"].data["feat"], full.nodes["gene"].data["feat"])
    others = np.setdiff1d(np.arange(full.num_nodes("gene")), test)
    kept = annotation_counts(graph)
    assert (kept[test] == 0).all() and (kept[others] == annotation_counts(full)[others]).all()
    assert (graph.in_degrees(etype=ANNOTATES).numpy()[test] == 0).all()
    # what the trainer's steps and predictor read: the test genes see no GO node without a PPI hop
    steps = data.steps(split)
    if sampler == "full":
        assert steps.block is block and data.predictor(split).block is block
    else:
        used = graph if sampler == "neighbor" else DeviceGraph.of(graph, data.device, weights)
        assert steps.sampler.graph is used
    # the predictor's outputs for test genes do not move with the GO features when PPI is cut
    cut = dict(config.__dict__, graph="go")
    go_data = LocalBackend(TrainConfig(**cut))
    g_split = go_data.splits[0]
    go_test = go_data.nodes[g_split.fold.test]
    model = go_data.model(g_split)
    for hide, moves in ((True, False), (False, True)):
        go_data.config.hide_test_annotations = hide
        go_data._fold = (None, None)
        pred = go_data.predictor(g_split)
        noisy = {**pred.inputs, "go": torch.randn_like(pred.inputs["go"])}
        before = pred.predict(model, go_test)[0]
        after = FullGraphPredictor(pred.block, noisy, pred.kind).predict(model, go_test)[0]
        assert (not np.allclose(before, after)) == moves
        if sampler != "full":  # a sampled batch of test genes, its GO inputs replaced
            batch = go_data.steps(g_split).sampler.sample(torch.as_tensor(go_test))
            outs = []
            model.eval()
            for go in (pred.inputs["go"], noisy["go"]):
                x = {t: (go if t == "go" else pred.inputs[t])[n] for t, n in batch.input_nodes.items()}
                with torch.no_grad():
                    outs.append(model(batch.blocks, x).numpy())
            assert (not np.allclose(*outs)) == moves


def test_hidden_baselines_see_no_annotation_of_held_out_genes(sample_spec):
    config = TrainConfig(data=str(sample_spec), **TINY).resolved()
    data = LocalBackend(config)
    split = data.splits[0]
    test = data.nodes[split.fold.test]
    lp = propagations(data.full_graph)["lp_go"]
    assert lp.b[test].nnz > 0 and lp.hiding(test).b[test].nnz == 0
    assert lp.hiding(test).b[np.setdiff1d(np.arange(lp.b.shape[0]), test)].nnz == lp.b.nnz - lp.b[test].nnz
    inputs = baseline_inputs(data.full_graph, config, data.nodes, data.splits[:1])
    y, kind, width = data.labels.values, data.labels.kind, data.labels.width
    for hide in (False, True):
        out = out_of_fold(fitted(inputs, y, kind, width, data.splits[:1], hide), data.splits[:1])["go_annotations"][split.seed]
        rows = out[split.fold.test]
        # hidden: every test gene gets what a gene without annotations gets
        assert np.allclose(rows, rows[0]) == hide
    seen = []
    real = baselines.fit_predict

    def spy(x, *args):
        seen.append(x)
        return real(x, *args)

    baselines.fit_predict = spy
    try:
        fitted(inputs, y, kind, width, data.splits[:1], True)
    finally:
        baselines.fit_predict = real
    go_view = [x for x in seen if sparse.issparse(x)][0]
    # the validation genes are hidden too, as in the GNN's graph: what the ensemble is chosen on
    assert go_view[split.fold.test].nnz == 0 and go_view[split.fold.val].nnz == 0
    assert go_view[split.fold.train].nnz > 0


def test_label_propagation_known_answer_and_closed_form():
    # two components: genes 0-5 a ring, 6-11 a ring; one labelled gene of each class per component pair
    ring = lambda lo: [(lo + i, lo + (i + 1) % 6) for i in range(6)]  # noqa: E731
    pairs = np.array(ring(0) + ring(6))
    n = 12
    a = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    a = (a + a.T).tocsr()
    y = np.array([0] * 6 + [1] * 6)
    nodes = np.arange(n)
    fold = Fold(np.array([0, 1, 6, 7]), np.array([], int), np.array([2, 3, 4, 5, 8, 9, 10, 11]))
    lp = Propagation(adjacency=a)
    out = lp.predict(nodes, y, "binary", fold, 2)
    assert (out.argmax(1) == y[fold.test]).all()
    assert metrics("binary", y[fold.test], out)["auc"] == 1.0
    # the iteration approaches F* = (1 - a)(I - a S)^-1 Y
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    s = d[:, None] * a.toarray() * d[None, :]
    y0 = np.zeros((n, 2))
    y0[fold.train] = np.eye(2)[y[fold.train]] - np.eye(2)[y[fold.train]].mean(0)
    closed = (1 - ALPHA) * np.linalg.solve(np.eye(n) - ALPHA * s, y0)
    np.testing.assert_allclose(lp.propagate(y0), closed, atol=0.02 * np.abs(closed).max())


def test_gene_go_gene_propagation_is_b_bt():
    g, _, _ = small_graph(4)
    lp = propagations(g)["lp_go"]
    b = lp.b.toarray()
    a = b @ b.T
    d = a.sum(1)
    scale = np.where(d > 0, d, 1) ** -0.5 * (d > 0)
    y0 = np.random.default_rng(0).normal(size=(80, 2))
    f = y0
    for _ in range(50):
        f = ALPHA * scale[:, None] * (a @ (scale[:, None] * f)) + (1 - ALPHA) * y0
    np.testing.assert_allclose(lp.propagate(y0), f, rtol=1e-6, atol=1e-9)


def test_label_propagation_uses_training_labels_only():
    g, _, _ = small_graph(6)
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    nodes = rng.permutation(80)[:60]
    fold = Fold(np.arange(0, 40), np.arange(40, 50), np.arange(50, 60))
    for name, lp in propagations(g).items():
        base = lp.predict(nodes, y, "binary", fold, 2)
        flipped = y.copy()
        flipped[np.concatenate([fold.val, fold.test])] ^= 1
        np.testing.assert_array_equal(base, lp.predict(nodes, flipped, "binary", fold, 2))
        flipped[fold.train[:10]] ^= 1
        assert not np.allclose(base, lp.predict(nodes, flipped, "binary", fold, 2)), name


def test_strata_count_every_labelled_gene(sample_spec, tmp_path):
    config = TrainConfig(data=str(sample_spec), sampler="full", hide_test_annotations=True, **TINY).resolved()
    report = run_cross_validation(LocalBackend(config), tmp_path)
    spec = load_spec(sample_spec)
    full, gene_ids, _ = load_full_graph(spec)
    data = LocalBackend(config)
    counts = annotation_counts(full)[data.nodes]
    assert set(report["strata"]) == {"annotations", "text_source"}
    for by, part in report["strata"].items():
        assert sum(part["genes"].values()) == report["labelled_genes"]
        assert set(part) - {"what", "genes"} == {"gnn", *report["baselines"]}
    expected = {name: int(((counts >= lo) & (counts <= hi)).sum()) for name, lo, hi in ANNOTATION_STRATA}
    assert report["strata"]["annotations"]["genes"] == expected
    # a stratum's metric is the metric of its genes' pooled out-of-fold outputs
    preds = pd.read_csv(tmp_path / "predictions.csv")
    first = preds[preds["seed"] == config.seed].set_index("gene").loc[data.labels.genes]
    groups = annotation_stratum(counts)
    out = first[[f"p_{c}" for c in data.labels.classes]].to_numpy()
    got = strata("binary", data.labels.values, {0: out}, groups, ("1-5",))["1-5"]
    rows = groups == "1-5"
    assert got["auc"] == pytest.approx(metrics("binary", data.labels.values[rows], out[rows])["auc"])
    assert got["auc"] == pytest.approx(report["strata"]["annotations"]["gnn"]["1-5"]["auc"])


def test_table_resumes_without_recomputing_finished_cells(sample_spec, tmp_path, monkeypatch):
    args = ["table", "--data", str(sample_spec), "--out", str(tmp_path), "--epochs", "1", "--folds", "2",
            "--sampler", "full", "--hidden", "16", "--threads", "1", "--models", "gcn", "--variants", "go",
            "--tasks", "membrane", "--regime", "standard,novel"]
    calls = []
    real = table.train

    def interrupted_after_one(config, run_dir):
        calls.append(run_dir.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(config, run_dir)

    monkeypatch.setattr(table, "train", interrupted_after_one)
    assert main(args) == 130  # Ctrl-C: the cli wrapper's one line and exit 130
    assert main(args + ["--finished-only"]) == 0  # the table so far: the one finished cell, nothing trained
    assert list(pd.read_csv(tmp_path / "table.csv").query("model == 'gcn'")["regime"]) == ["standard"]
    assert len(calls) == 2
    first = tmp_path / "cells" / "membrane-gcn-go.json"
    assert first.exists() and not (tmp_path / "cells" / "membrane-gcn-go-novel.json").exists()
    written = first.stat().st_mtime_ns
    calls.clear()
    assert main(args) == 0
    assert calls == ["membrane-gcn-go-novel"]  # the finished cell is read back, not trained again
    assert first.stat().st_mtime_ns == written
    frame = pd.read_csv(tmp_path / "table.csv")
    gnn = frame[frame["model"] == "gcn"]
    assert list(gnn["regime"]) == ["standard", "novel"] and gnn["val_mean"].notna().all()
    assert (gnn["seconds"] > 0).all()
    assert json.loads(first.read_text())["cell"]["regime"] == "standard"
    lp = frame[frame["model"] == "lp_go"].set_index("regime")["mean"]
    assert lp["novel"] == pytest.approx(0.5) and lp["standard"] > 0.6
    assert (tmp_path / "strata.csv").exists()


@pytest.mark.slow
def test_table_jobs_run_cells_in_processes_that_log(sample_spec, tmp_path):
    args = ["table", "--data", str(sample_spec), "--out", str(tmp_path), "--epochs", "1", "--folds", "2",
            "--sampler", "full", "--hidden", "16", "--threads", "1", "--models", "gcn", "--variants", "go",
            "--tasks", "membrane", "--regime", "standard,novel", "--jobs", "2"]
    assert main(args) == 0
    for name in ("membrane-gcn-go", "membrane-gcn-go-novel"):
        assert "fold1: best epoch" in (tmp_path / "runs" / name / "train.log").read_text()
        assert json.loads((tmp_path / "cells" / f"{name}.json").read_text())["seconds"] > 0
