"""The GNN ranked with the baselines: the mean-rank rule, what it reads, and a run's report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from genen_dgl.baselines import baselines_for
from genen_dgl.config import TrainConfig
from genen_dgl.ensemble import apply_per_fold, mean_rank
from genen_dgl.evaluation import Fold
from genen_dgl.local import LocalBackend
from genen_dgl.splits import Split
from genen_dgl.train import main as train_main


def binary(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p, p])


def test_mean_rank_known_answer_and_constant_models_left_out():
    a = binary(np.array([0.1, 0.2, 0.3, 0.4]))
    b = binary(np.array([0.9, 0.8, 0.7, 0.6]))  # the reverse order
    flat = binary(np.full(4, 0.3))  # scores every gene alike: left out
    r = mean_rank([a, b, flat], "binary")
    np.testing.assert_allclose(r[:, 1], 0.625)  # (i + (5 - i)) / 2 / 4 for every gene
    np.testing.assert_allclose(r.sum(1), 1.0)
    c = binary(np.array([0.5, 0.5, 0.1, 0.9]))  # ties share their mean rank
    np.testing.assert_allclose(mean_rank([a, c], "binary")[:, 1], [(1 + 2.5) / 8, (2 + 2.5) / 8, 4 / 8, 8 / 8])


def test_mean_rank_of_two_noisy_views_beats_either():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    views = [binary(1 / (1 + np.exp(-(y + rng.normal(0, 1.2, len(y)))))) for _ in range(2)]
    alone = [roc_auc_score(y, v[:, 1]) for v in views]
    together = roc_auc_score(y, mean_rank(views, "binary")[:, 1])
    assert together > max(alone) + 0.02


@pytest.mark.parametrize("kind,width", [("multiclass", 3), ("multilabel", 3), ("regression", 1)])
def test_mean_rank_shapes(kind, width):
    rng = np.random.default_rng(1)
    outs = [rng.random((10, width)) for _ in range(3)]
    r = mean_rank(outs, kind)
    assert r.shape == (10, width) and np.all((r > 0) & (r <= 1))
    if kind == "multiclass":
        np.testing.assert_allclose(r.sum(1), 1.0)


def test_per_fold_scores_held_out_genes_from_outputs_only():
    rng = np.random.default_rng(2)
    genes = 40
    nodes = rng.permutation(60)[:genes]  # labelled genes' node ids among 60 gene nodes
    y = rng.integers(0, 2, genes)
    fold = Fold(np.arange(0, 24), np.arange(24, 32), np.arange(32, 40))
    split = Split(0, 0, fold, "fold0")
    gnn = binary(rng.random(60))
    base = np.full((genes, 2), np.nan)  # a baseline's rows: held-out genes only
    base[24:] = binary(rng.random(16))
    first = apply_per_fold([gnn], {"text": [base]}, [split], nodes, y, "binary")
    assert first["models"] == ["gnn", "text"] and len(first["folds"]) == len(first["val"]) == 1
    expected = mean_rank([gnn[nodes[24:]], base[24:]], "binary")
    assert first["folds"][0]["auc"] == pytest.approx(roc_auc_score(y[32:], expected[8:, 1]))
    assert first["val"][0]["auc"] == pytest.approx(roc_auc_score(y[24:32], expected[:8, 1]))
    # the training genes' labels are never read: changing them changes nothing
    changed = y.copy()
    changed[fold.train] ^= 1
    assert apply_per_fold([gnn], {"text": [base]}, [split], nodes, changed, "binary") == first


def test_run_reports_the_ensemble(sample_spec, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--data", str(sample_spec), "--out", str(run), "--folds", "2", "--epochs", "2",
                       "--hidden", "16", "--sampler", "full"]) == 0
    report = json.loads((run / "metrics.json").read_text())
    ens = report["ensemble"]
    assert ens["models"] == ["gnn", *report["baselines"]]
    assert len(ens["folds"]) == ens["val_summary"]["auc_n"] == len(report["folds"])
    assert set(ens["comparisons"]) == {"metric", "model", *report["baselines"]}
    assert 0.0 <= ens["summary"]["auc_mean"] <= 1.0
    assert "ranked with the baselines" in capsys.readouterr().out
    scores = pd.read_csv(run / "scores.csv", dtype={"label": str}, keep_default_na=False)
    assert scores["ensemble"].between(0, 1, inclusive="right").all()
    labelled = scores[scores["labelled"]]
    positive = report["positive_class"]
    # on the labelled genes the every-gene ranking ranks about as the run's out-of-fold ensemble does
    assert roc_auc_score(labelled["label"] == positive, labelled["ensemble"]) > 0.8


def test_every_gene_baseline_scores_out_of_fold_where_labelled(sample_spec):
    config = TrainConfig(data=str(sample_spec), folds=2, seeds=2, epochs=1, hidden=8, sampler="full").resolved()
    data = LocalBackend(config)
    base = baselines_for(data.full_graph, config, data.labels, data.nodes, data.splits)
    unlabelled = np.setdiff1d(np.arange(data.num_genes), data.nodes)
    assert set(base.every_gene) == set(base.report)
    for name, scores in base.every_gene.items():
        assert scores.shape == (data.num_genes, data.labels.width)
        np.testing.assert_allclose(scores[data.nodes], np.mean(list(base.per_seed[name].values()), axis=0))
        assert np.ptp(scores[unlabelled, 1]) > 0, name  # scored by the fit on every labelled gene
    # an unlabelled gene's score reads the labelled genes' labels, a labelled gene's never its own
    flipped = dataclasses.replace(data.labels, values=1 - data.labels.values)
    again = baselines_for(data.full_graph, config, flipped, data.nodes, data.splits)
    assert not np.allclose(again.every_gene["text"][unlabelled], base.every_gene["text"][unlabelled])
