"""``report.png``: one page per run to look at before trusting its ranking.

Four panels, from the run's out-of-fold predictions (every labelled gene predicted by the
fold model that did not train on it, pooled over folds and seeds):

* ROC and precision-recall curves of the GNN and of each baseline (multiclass and multilabel:
  one-vs-rest, pooled over the classes; regression: predicted against true values instead);
* the score distribution (as in scores.csv: out-of-fold for labelled genes, the mean over
  the fold models for the others) of labelled genes,
  per class, against the unlabelled ones: a ranking is only as good as the unlabelled genes
  resemble the labelled;
* the calibration curve of the GNN's and the baselines' out-of-fold probabilities
  (sklearn's ``calibration_curve``, 10 quantile bins): how far a score is from a frequency.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from genen_dgl.baselines import NAMES
from genen_dgl.data.labels import Labels
from genen_dgl.experiments.plotting import PANEL, plt, save

log = logging.getLogger(__name__)

REPORT = "report.png"


def _pooled(labels: Labels, splits, model_out: list[np.ndarray], nodes: np.ndarray,
            baseline_oof: dict[str, dict[int, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(truth, score) of each method over all splits' test genes; classes one-vs-rest."""
    truth = np.concatenate([labels.values[s.fold.test] for s in splits])
    methods = {"GNN": np.concatenate([out[nodes[s.fold.test]] for s, out in zip(splits, model_out)])}
    for name, per_seed in baseline_oof.items():
        methods[NAMES[name]] = np.concatenate([per_seed[s.seed][s.fold.test] for s in splits])
    if labels.kind == "regression":
        return {m: (truth, out[:, 0]) for m, out in methods.items()}
    if labels.kind == "binary":
        return {m: (truth, out[:, 1]) for m, out in methods.items()}
    hot = truth if labels.kind == "multilabel" else np.eye(labels.num_classes)[truth]
    return {m: (hot.ravel(), out.ravel()) for m, out in methods.items()}


def write_report(run_dir: Path, labels: Labels, nodes: np.ndarray, splits, model_out: list[np.ndarray],
                 baseline_oof: dict[str, dict[int, np.ndarray]], ranked: np.ndarray) -> Path:
    """Draw the run's ``report.png`` (``model_out``: each split's outputs for every gene;
    ``ranked``: what scores.csv ranks, per gene node: out-of-fold for labelled genes)."""
    pooled = _pooled(labels, splits, model_out, nodes, baseline_oof)
    fig, axes = plt.subplots(2, 2, figsize=(2 * PANEL[0], 2 * PANEL[1]))
    (roc, pr), (dist, cal) = axes
    if labels.kind == "regression":
        for name, (y, p) in pooled.items():
            roc.scatter(y, p, s=4, alpha=0.5, label=f"{name} (r {np.corrcoef(y, p)[0, 1]:.2f})")
        roc.set(xlabel="true value", ylabel="out-of-fold prediction", title="predicted vs true")
        roc.legend(fontsize=7)
        pr.axis("off")
        cal.axis("off")
    else:
        which = "" if labels.kind == "binary" else " (one-vs-rest, pooled)"
        for name, (y, p) in pooled.items():
            fpr, tpr, _ = roc_curve(y, p)
            roc.plot(fpr, tpr, lw=1.2, label=f"{name} {roc_auc_score(y, p):.3f}")
            precision, recall, _ = precision_recall_curve(y, p)
            pr.plot(recall, precision, lw=1.2, label=f"{name} {average_precision_score(y, p):.3f}")
            frac, mean = calibration_curve(y, np.clip(p, 0, 1), n_bins=10, strategy="quantile")
            cal.plot(mean, frac, marker="o", ms=3, lw=1, label=name)
        roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC{which}, AUC")
        prevalence = float(np.mean(next(iter(pooled.values()))[0]))
        pr.axhline(prevalence, color="grey", lw=0.8, ls=":")
        pr.set(xlabel="recall", ylabel="precision", title=f"precision-recall{which}, AP", ylim=(0, 1.02))
        cal.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        cal.set(xlabel="mean predicted probability (bin)", ylabel="observed frequency",
                title="calibration (out-of-fold)", xlim=(0, 1), ylim=(0, 1))
        for ax in (roc, pr, cal):
            ax.legend(fontsize=7, loc="lower right" if ax is roc else "best")
    _score_distribution(dist, labels, nodes, ranked)
    return save(fig, Path(run_dir) / REPORT)


def _score_distribution(ax, labels: Labels, nodes: np.ndarray, ranked: np.ndarray) -> None:
    """Histogram (density) of scores.csv's score: unlabelled genes, and labelled per class
    (out-of-fold)."""
    score = (ranked[:, 0] if labels.kind == "regression" else ranked[:, 1] if labels.kind == "binary"
             else ranked.max(1))
    unlabelled = np.ones(len(score), bool)
    unlabelled[nodes] = False
    bins = np.linspace(score.min(), score.max() + 1e-9, 31)
    ax.hist(score[unlabelled], bins=bins, density=True, color="lightgrey", label=f"unlabelled ({unlabelled.sum():,})")
    groups = [(labels.values, "labelled")] if labels.kind == "regression" else \
        [(labels.values[:, i] > 0 if labels.kind == "multilabel" else labels.values == i, c)
         for i, c in enumerate(labels.classes)]
    for mask, name in groups:
        chosen = score[nodes] if labels.kind == "regression" else score[nodes[mask]]
        ax.hist(chosen, bins=bins, density=True, histtype="step", lw=1.4, label=f"{name} ({len(chosen):,})")
    what = {"binary": f"P({labels.classes[-1]})" if labels.classes else "score", "multiclass": "top class probability",
            "multilabel": "top class probability",
            "regression": "prediction"}[labels.kind]
    ax.set(xlabel=f"score: {what} (as scores.csv)", ylabel="density",
           title="scores: labelled (out-of-fold) vs unlabelled")
    ax.legend(fontsize=7)
