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

Beside them, label propagation (Zhou et al. 2004; GeneMANIA's family), no features and no
fitting: :math:`F \\leftarrow \\alpha S F + (1 - \\alpha) Y`, :math:`S = D^{-1/2} A D^{-1/2}`,
:math:`\\alpha = 0.9`, 50 iterations from :math:`F = Y`, where :math:`Y` holds the
training genes' one-hot labels, centred (minus their mean, so an unlabelled gene's 0 is
neutral; regression: the centred value) and 0 elsewhere; the score of a test gene is its
row of :math:`F` (classes: its softmax; regression: plus the mean). Over two graphs:

``lp_ppi``
    :math:`A` the unweighted PPI adjacency;
``lp_go``
    gene–GO–gene: :math:`A = B B^\\top`, :math:`B` the gene × GO-term incidence of the
    annotations (never formed: :math:`S F = D^{-1/2} B (B^\\top D^{-1/2} F)`).

Each is scored on a split's validation and test genes (:func:`held_out`): the test rows
are its out-of-fold outputs, the validation rows what :mod:`genen_dgl.ensemble` is chosen on.
A view the dataset cannot provide (no PPI edges, no annotations) is not run, and
:func:`not_run` says why (the run's summary line names it). With
``hide_test_annotations`` the GO-derived baselines (``go_annotations``, ``lp_go``) see each
split's held-out genes, validation and test, without annotations (as the GNN's graph does):
an all-zero multi-hot row, no row of :math:`B`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genen_dgl.config import TrainConfig
from genen_dgl.schema import ANNOTATED, PPI
from genen_dgl.data.labels import Labels
from genen_dgl.evaluation import Fold, metrics, summarize
from genen_dgl.splits import Split, mask_features

log = logging.getLogger(__name__)

NAMES = {"text": "text LR", "ppi_smoothed": "PPI-smoothed LR", "go_annotations": "GO-annotation LR",
         "lp_ppi": "PPI label propagation", "lp_go": "gene-GO-gene label propagation"}
GO_DERIVED = ("go_annotations", "lp_go")  # what hide_test_annotations hides the test genes' rows from
ALPHA, ITERATIONS = 0.9, 50


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
        out["ppi_smoothed"] = out["lp_ppi"] = "no PPI edges (the dataset has no ppi.links)"
    if not has(ANNOTATED):
        out["go_annotations"] = out["lp_go"] = "no GO annotations (the dataset has no go.annotations)"
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
        hot = incidence(graph)
        out["go_annotations"] = hot[nodes]
    return out


def incidence(graph) -> sparse.csr_matrix:
    """The gene × GO-term annotation matrix :math:`B` (0/1)."""
    gene, term = (t.numpy() for t in graph.edges(etype=ANNOTATED))
    return sparse.csr_matrix((np.ones(len(gene), np.float32), (gene, term)),
                             shape=(graph.num_nodes("gene"), graph.num_nodes("go")))


def without_rows(x: sparse.csr_matrix, rows: np.ndarray) -> sparse.csr_matrix:
    """``x`` with ``rows`` zeroed (genes nobody has annotated)."""
    keep = np.ones(x.shape[0], np.float32)
    keep[rows] = 0
    return (sparse.diags(keep) @ x).tocsr()


class Propagation:
    """Label propagation over :math:`A` (``adjacency``) or :math:`A = B B^\\top` (``incidence``)."""

    def __init__(self, adjacency: sparse.csr_matrix | None = None, incidence: sparse.csr_matrix | None = None):
        self.a, self.b = adjacency, incidence

    def hiding(self, genes: np.ndarray) -> "Propagation":
        """The same over gene–GO–gene with ``genes``' annotations removed (PPI: unchanged)."""
        return self if self.b is None else Propagation(incidence=without_rows(self.b, genes))

    def _a(self, f: np.ndarray) -> np.ndarray:
        return self.a @ f if self.b is None else self.b @ (self.b.T @ f)

    def propagate(self, y0: np.ndarray) -> np.ndarray:
        """:math:`F \\leftarrow \\alpha S F + (1 - \\alpha) Y` from :math:`F = Y`, ITERATIONS times
        (a gene without edges keeps :math:`(1 - \\alpha) Y`)."""
        d = self._a(np.ones((y0.shape[0], 1), np.float64)).ravel()
        scale = np.zeros_like(d)
        scale[d > 0] = d[d > 0] ** -0.5
        scale = scale[:, None]
        f = y0
        for _ in range(ITERATIONS):
            f = ALPHA * scale * self._a(scale * f) + (1 - ALPHA) * y0
        return f

    def predict(self, nodes: np.ndarray, y: np.ndarray, kind: str, fold: Fold, width: int) -> np.ndarray:
        """Outputs on :func:`held_out` genes from the labels of ``fold.train`` only (``nodes``:
        the labelled genes' node ids), as :func:`fit_predict`'s."""
        n = (self.a if self.b is None else self.b).shape[0]
        train, test = nodes[fold.train], nodes[held_out(fold)]
        if kind == "regression":
            target = y[fold.train].astype(np.float64)[:, None]
        elif kind == "multilabel":  # already one column per class
            target = y[fold.train].astype(np.float64)
        else:
            target = np.eye(width)[y[fold.train]]
        centre = target.mean(0)
        y0 = np.zeros((n, target.shape[1]))
        y0[train] = target - centre
        f = self.propagate(y0)[test]
        if kind == "regression":
            return f + centre
        if kind == "multilabel":  # each class's propagated share, as a probability
            return np.clip(f + centre, 0.0, 1.0)
        e = np.exp(f - f.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def propagations(graph) -> dict[str, Propagation]:
    """The label propagations ``graph`` (the full ``go_ppi`` graph) can provide."""
    out = {}
    missing = not_run(graph)
    if "lp_ppi" not in missing:
        src, dst = (t.numpy() for t in graph.edges(etype=PPI))
        n = graph.num_nodes("gene")
        a = sparse.csr_matrix((np.ones(len(src)), (dst, src)), shape=(n, n))
        a.data[:] = 1.0  # duplicate edges count once
        out["lp_ppi"] = Propagation(adjacency=a)
    if "lp_go" not in missing:
        b = incidence(graph)
        out["lp_go"] = Propagation(incidence=b.astype(np.float64))
    return out


def held_out(fold: Fold) -> np.ndarray:
    """The genes a split scores and, with ``hide_test_annotations``, hides: validation, then test."""
    return np.concatenate([fold.val, fold.test])


def fit_predict(x, y: np.ndarray, kind: str, fold: Fold, width: int, seed: int) -> np.ndarray:
    """Outputs on :func:`held_out` genes (class probabilities, or predictions as one
    column) of the model fitted on ``fold.train``; multilabel: one logistic regression per
    class (one-vs-rest), each class's probability."""
    rows = held_out(fold)
    scaler = "passthrough" if sparse.issparse(x) else StandardScaler()  # multi-hot stays 0/1
    if kind == "regression":
        model = make_pipeline(scaler, Ridge(alpha=1.0)).fit(x[fold.train], y[fold.train])
        return model.predict(x[rows])[:, None]
    if kind == "multilabel":
        model = make_pipeline(scaler, OneVsRestClassifier(LogisticRegression(max_iter=2000, random_state=seed)))
        return model.fit(x[fold.train], y[fold.train]).predict_proba(x[rows])
    model = make_pipeline(scaler, LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x[fold.train], y[fold.train])
    proba = np.zeros((len(rows), width))
    proba[:, model[-1].classes_] = model.predict_proba(x[rows])
    return proba


def baseline_inputs(graph, config: TrainConfig, nodes: np.ndarray, splits: list[Split]) -> dict[int, dict]:
    """Each seed's :func:`views` of the genes ``nodes`` (node ids). ``graph`` is the dataset's
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


def held_out_rows(fold: Fold, outputs: np.ndarray, genes: int) -> np.ndarray:
    """``outputs`` on :func:`held_out` genes as rows of every labelled gene (NaN elsewhere)."""
    rows = np.full((genes, outputs.shape[1]), np.nan)
    rows[held_out(fold)] = outputs
    return rows


def fitted(inputs: dict[int, dict], y: np.ndarray, kind: str, width: int, splits: list[Split],
           hide: bool = False) -> dict[str, list[np.ndarray]]:
    """Each view's outputs per split, ``(genes, width)`` with the split's validation and
    test rows (:func:`held_out_rows`; ``hide``: the GO-derived views without the held-out
    genes' annotations)."""
    out: dict[str, list[np.ndarray]] = {}
    for name in next(iter(inputs.values())):
        out[name] = []
        for s in splits:
            x = inputs[s.seed][name]
            if hide and name in GO_DERIVED:
                x = without_rows(x, held_out(s.fold))
            out[name].append(held_out_rows(s.fold, fit_predict(x, y, kind, s.fold, width, s.seed), len(y)))
    return out


def propagated(lps: dict[str, Propagation], nodes: np.ndarray, y: np.ndarray, kind: str, width: int,
               splits: list[Split], hide: bool = False) -> dict[str, list[np.ndarray]]:
    """Each label propagation's (``lps``: :func:`propagations`) outputs per split, as
    :func:`fitted`'s."""
    out: dict[str, list[np.ndarray]] = {}
    for name, lp in lps.items():
        out[name] = []
        for s in splits:
            used = lp.hiding(nodes[held_out(s.fold)]) if hide and name in GO_DERIVED else lp
            out[name].append(held_out_rows(s.fold, used.predict(nodes, y, kind, s.fold, width), len(y)))
    return out


def out_of_fold(per_split: dict[str, list[np.ndarray]], splits: list[Split]) -> dict[str, dict[int, np.ndarray]]:
    """Each model's out-of-fold outputs per seed: every labelled gene's row from the split
    of that seed that held it out as a test gene."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, outputs in per_split.items():
        out[name] = {}
        for s, rows in zip(splits, outputs):
            out[name].setdefault(s.seed, np.zeros_like(rows))[s.fold.test] = rows[s.fold.test]
    return out


def every_gene(inputs: dict, lps: dict[str, Propagation], labels: Labels, nodes: np.ndarray, n: int, seed: int,
               per_seed: dict[str, dict[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each baseline's output for every one of the ``n`` gene nodes, as scores.csv ranks the
    GNN's: a labelled gene's out-of-fold output (``per_seed``, averaged over seeds), an
    unlabelled gene's from the baseline fitted on every labelled gene (``inputs``:
    :func:`views` of every gene node, as ``seed`` masks them; ``lps``: :func:`propagations`)."""
    everyone = np.arange(n)
    unlabelled = np.setdiff1d(everyone, nodes)
    y = np.zeros((n, *labels.values.shape[1:]), labels.values.dtype)
    y[nodes] = labels.values
    fold = Fold(nodes, nodes[:0], unlabelled)  # train on the labelled genes, score the others
    kind, width = labels.kind, labels.width
    scored = {name: fit_predict(x, y, kind, fold, width, seed) for name, x in inputs.items()}
    scored |= {name: lp.predict(everyone, y, kind, fold, width) for name, lp in lps.items()}
    out = {}
    for name, rows in scored.items():
        out[name] = np.zeros((n, width))
        out[name][unlabelled] = rows
        out[name][nodes] = np.mean(list(per_seed[name].values()), axis=0)
    return out


@dataclass
class Baselines:
    """Every baseline of a run: ``report`` (per name: model, input, per-split metrics and
    their summary), its outputs per split (:func:`fitted`), out of fold per seed, and for
    every gene node (:func:`every_gene`)."""

    report: dict
    per_split: dict[str, list[np.ndarray]]
    per_seed: dict[str, dict[int, np.ndarray]]
    every_gene: dict[str, np.ndarray]


def baselines_for(graph, config: TrainConfig, labels: Labels, nodes: np.ndarray, splits: list[Split]) -> Baselines:
    """Every baseline on every split of a run, scored as the GNN is."""
    hide = config.hide_test_annotations
    y, kind, width = labels.values, labels.kind, labels.width
    n = graph.num_nodes("gene")
    inputs = baseline_inputs(graph, config, np.arange(n), splits)  # every gene's views
    labelled = {seed: {name: x[nodes] for name, x in views_of.items()} for seed, views_of in inputs.items()}
    lps = propagations(graph)
    per_split = {**fitted(labelled, y, kind, width, splits, hide),
                 **propagated(lps, nodes, y, kind, width, splits, hide)}
    report = {}
    for name, outputs in per_split.items():
        folds = [{"seed": s.seed, "fold": s.k, **metrics(kind, y[s.fold.test], rows[s.fold.test], labels.classes)}
                 for s, rows in zip(splits, outputs)]
        model = "label_propagation" if name.startswith("lp_") else "ridge" if kind == "regression" \
            else "logistic_regression"
        report[name] = {"model": model, "input": name, "folds": folds, "summary": summarize(folds)}
        log.info("baseline %s: %s", name, ", ".join(f"{k[:-5]}={v:.3f}" for k, v in report[name]["summary"].items()
                                                    if k.endswith("_mean")))
    per_seed = out_of_fold(per_split, splits)
    first = splits[0].seed
    return Baselines(report, per_split, per_seed, every_gene(inputs[first], lps, labels, nodes, n, first, per_seed))
