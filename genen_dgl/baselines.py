"""Linear baselines beside every GNN number: same folds, same training share as the GNN.

Each is logistic regression (ridge for regression targets) fitted on a fold's training
genes only (not its validation share, which the GNN uses for early stopping only), on
one view of each gene:

``text``
    the gene's input features (the text embedding the GNN starts from);
``ppi_smoothed``
    a graph-aware linear model (SGC, Wu et al. 2019): :math:`[X, \\hat A X, \\hat A^2 X]` with
    :math:`\\hat A = \\tilde D^{-1/2}(A + I)\\tilde D^{-1/2}` over the unweighted PPI graph;
    it tells whether a GNN adds anything beyond two hops of linear smoothing;
``go_annotations``
    the gene's own GO annotations as a multi-hot vector (after the leakage filter), no
    text and no graph: when a label is all but stated by an annotation, this says so.

A view the dataset cannot provide (no PPI edges, no annotations) is not run, and
:func:`not_run` says why (the run's summary line names it).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import PPI
from genen_dgl.data.labels import Labels
from genen_dgl.evaluation import Fold, metrics, summarize
from genen_dgl.trainer import Split, mask_features

log = logging.getLogger(__name__)

ANNOTATED = ("gene", "annotated", "go")
NAMES = {"text": "text LR", "ppi_smoothed": "PPI-smoothed LR", "go_annotations": "GO-annotation LR"}


def normalized_adjacency(src: np.ndarray, dst: np.ndarray, n: int) -> sparse.csr_matrix:
    """:math:`\\tilde D^{-1/2}(A + I)\\tilde D^{-1/2}` of the (symmetric) edge list."""
    a = sparse.coo_matrix((np.ones(len(src), np.float32), (dst, src)), shape=(n, n)).tocsr()
    a.data[:] = 1.0  # duplicate edges count once
    a = a + sparse.identity(n, np.float32, format="csr")
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    return sparse.diags(d) @ a @ sparse.diags(d)


def not_run(graph) -> dict[str, str]:
    """The baselines the full ``go_ppi`` ``graph`` cannot feed, each with the reason."""
    def has(etype) -> bool:
        return etype in graph.canonical_etypes and graph.num_edges(etype) > 0
    out = {}
    if not has(PPI):
        out["ppi_smoothed"] = "no PPI edges (the dataset has no ppi.links)"
    if not has(ANNOTATED):
        out["go_annotations"] = "no GO annotations (the dataset has no go.annotations)"
    return out


def views(graph, x: np.ndarray, nodes: np.ndarray) -> dict[str, np.ndarray | sparse.csr_matrix]:
    """Each baseline's input for the labelled genes ``nodes`` (gene node ids) of the full
    ``go_ppi`` ``graph``; ``x`` are the input features of every gene (masked as the GNN's)."""
    out = {"text": x[nodes]}
    n = graph.num_nodes("gene")
    missing = not_run(graph)
    if "ppi_smoothed" not in missing:
        src, dst = (t.numpy() for t in graph.edges(etype=PPI))
        adj = normalized_adjacency(src, dst, n)
        one = adj @ x
        out["ppi_smoothed"] = np.hstack([x, one, adj @ one])[nodes]
    if "go_annotations" not in missing:
        gene, term = (t.numpy() for t in graph.edges(etype=ANNOTATED))
        hot = sparse.csr_matrix((np.ones(len(gene), np.float32), (gene, term)), shape=(n, graph.num_nodes("go")))
        out["go_annotations"] = hot[nodes]
    return out


def fit_predict(x, y: np.ndarray, kind: str, fold: Fold, width: int, seed: int) -> np.ndarray:
    """Outputs on ``fold.test`` (class probabilities, or predictions as one column) of the
    model fitted on ``fold.train``."""
    scaler = "passthrough" if sparse.issparse(x) else StandardScaler()  # multi-hot stays 0/1
    if kind == "regression":
        model = make_pipeline(scaler, Ridge(alpha=1.0)).fit(x[fold.train], y[fold.train])
        return model.predict(x[fold.test])[:, None]
    model = make_pipeline(scaler, LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x[fold.train], y[fold.train])
    proba = np.zeros((len(fold.test), width))
    proba[:, model[-1].classes_] = model.predict_proba(x[fold.test])
    return proba


def baseline_inputs(graph, config: TrainConfig, nodes: np.ndarray, splits: list[Split]) -> dict[int, dict]:
    """Each seed's :func:`views` of the labelled genes ``nodes``. ``graph`` is the dataset's
    full ``go_ppi`` graph; the views see the GNN's gene features, masked as each split's
    seed masks them (built once when no mask varies them)."""
    feat = graph.nodes["gene"].data["feat"]
    unmasked = None if config.mask_rate > 0 and config.mask_nodes != "go" else views(graph, feat.numpy(), nodes)
    per_seed = {}
    for s in splits:
        if s.seed not in per_seed:
            per_seed[s.seed] = unmasked or views(
                graph, mask_features({"gene": feat}, config.mask_rate, config.mask_nodes, s.seed)["gene"].numpy(), nodes)
    return per_seed


def out_of_fold(inputs: dict[int, dict], y: np.ndarray, kind: str, width: int,
                splits: list[Split]) -> dict[str, dict[int, np.ndarray]]:
    """Each view's out-of-fold outputs per seed, ``(genes, width)``: every labelled gene's
    row from the split of that seed that held it out."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for name in next(iter(inputs.values())):
        out[name] = {}
        for s in splits:
            rows = out[name].setdefault(s.seed, np.zeros((len(y), width)))
            rows[s.fold.test] = fit_predict(inputs[s.seed][name], y, kind, s.fold, width, s.seed)
    return out


def baselines_for(graph, config: TrainConfig, labels: Labels, nodes: np.ndarray, splits: list[Split]
                  ) -> tuple[dict, dict[str, dict[int, np.ndarray]]]:
    """Every baseline's metrics on every split of a run, as the GNN's, and its out-of-fold
    outputs per seed (for the run's report figure)."""
    outputs = out_of_fold(baseline_inputs(graph, config, nodes, splits), labels.values, labels.kind, labels.width,
                          splits)
    out = {}
    for name, per_seed in outputs.items():
        folds = [{"seed": s.seed, "fold": s.k, **metrics(labels.kind, labels.values[s.fold.test],
                                                         per_seed[s.seed][s.fold.test])} for s in splits]
        model = "ridge" if labels.kind == "regression" else "logistic_regression"
        out[name] = {"model": model, "input": name, "folds": folds, "summary": summarize(folds)}
        log.info("baseline %s: %s", name, ", ".join(f"{k[:-5]}={v:.3f}" for k, v in out[name]["summary"].items()
                                                    if k.endswith("_mean")))
    return out, outputs
