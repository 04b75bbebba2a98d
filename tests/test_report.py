"""report.png draws each method's out-of-fold predictions: every labelled gene once per
seed, from the split that held it out, in the run's node order."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from genen_dgl.data.labels import Labels
from genen_dgl.evaluation import split_folds
from genen_dgl.report import _pooled, write_report
from genen_dgl.splits import Split


def test_pooled_predictions_are_the_held_out_ones(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    labels = Labels(np.array([f"G{i}" for i in range(60)]), y, "binary", ["no", "yes"])
    nodes = rng.permutation(100)[:60]  # labelled genes' node ids among 100 genes
    splits = [Split(0, k, f, f"fold{k}") for k, f in enumerate(split_folds(y, "binary", 3, 0))]
    # split k's model scores gene node n with n + 1000 k: only the held-out rows may reach the report
    model_out = [np.stack([np.zeros(100), np.arange(100) + 1000.0 * s.k], 1) for s in splits]
    baseline = {"text": {0: np.stack([1 - y * 0.9, y * 0.9], 1).astype(float)}}
    pooled = _pooled(labels, splits, model_out, nodes, baseline)
    truth, score = pooled["GNN"]
    expected = np.concatenate([nodes[s.fold.test] + 1000.0 * s.k for s in splits])
    assert np.array_equal(score, expected) and sorted(np.concatenate([s.fold.test for s in splits])) == list(range(60))
    assert np.array_equal(truth, np.concatenate([y[s.fold.test] for s in splits]))
    assert roc_auc_score(*pooled["text LR"]) == 1.0  # the baseline's rows follow the same order
    png = write_report(tmp_path, labels, nodes, splits, [o / 4000 for o in model_out], baseline,
                       np.mean(model_out, axis=0) / 4000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
