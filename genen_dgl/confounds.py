"""Confound checks before training: do a task's classes differ in how much is known about
their genes, beyond chance? A model (and the text baseline) can then learn the text's
source or the annotation depth instead of the biology.

* **Text source**: each gene's text is its summary, its protein name
  (``summaries.fallback``) or nothing; a chi-square test of class x source, with Cramér's
  :math:`V = \\sqrt{\\chi^2 / (n (\\min(r, c) - 1))}` as the effect size.
* **GO annotation count** (the gene's annotated terms in the graph): Mann-Whitney U for two
  classes, effect size the AUC :math:`U / (n_0 n_1)` (0.5: none); Kruskal-Wallis H for more,
  effect size :math:`\\varepsilon^2 = H / (n - 1)`.

A check warns (one log line, the numbers per class) when p < :data:`P_MAX` and the effect
is at least :data:`EFFECT_MIN`'s; metrics.json holds the same numbers. Regression tasks
are not checked (no classes); multilabel tasks class by class, each against the rest.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, kruskal, mannwhitneyu

from genen_dgl.data.genes import TEXT_SOURCES
from genen_dgl.schema import ANNOTATED
from genen_dgl.data.labels import Labels
from genen_dgl.data.spec import DatasetSpec

log = logging.getLogger(__name__)

P_MAX = 1e-3
EFFECT_MIN = {"cramers_v": 0.1, "auc_distance": 0.1, "epsilon_squared": 0.01}
SOURCES = TEXT_SOURCES


def text_source_check(y: np.ndarray, classes: list[str], source: np.ndarray) -> dict:
    """Class x text source counts and the chi-square test (None when one source only)."""
    table = np.array([[int(np.sum((y == i) & (source == s))) for s in SOURCES] for i in range(len(classes))])
    out: dict = {"per_class": {c: dict(zip(SOURCES, map(int, row))) for c, row in zip(classes, table)}}
    used = table[:, table.sum(0) > 0]
    if used.shape[1] < 2:
        return {**out, "p": None, "cramers_v": None, "warning": False}
    chi2, p = chi2_contingency(used)[:2]
    v = float(np.sqrt(chi2 / (used.sum() * (min(used.shape) - 1))))
    return {**out, "test": "chi-square", "p": float(p), "cramers_v": v,
            "warning": bool(p < P_MAX and v >= EFFECT_MIN["cramers_v"])}


def annotation_check(y: np.ndarray, classes: list[str], count: np.ndarray) -> dict:
    """Annotation count per class and the rank test."""
    groups = [count[y == i] for i in range(len(classes))]
    out: dict = {"per_class": {c: {"median": float(np.median(g)), "mean": round(float(np.mean(g)), 2),
                                   "zero": int(np.sum(g == 0))} for c, g in zip(classes, groups) if len(g)}}
    if np.ptp(count) == 0:
        return {**out, "p": None, "warning": False}
    if len(classes) == 2:
        u, p = mannwhitneyu(groups[1], groups[0])
        auc = float(u / (len(groups[0]) * len(groups[1])))
        return {**out, "test": "mann-whitney", "p": float(p), "auc": auc,
                "warning": bool(p < P_MAX and abs(auc - 0.5) >= EFFECT_MIN["auc_distance"])}
    h, p = kruskal(*[g for g in groups if len(g)])
    eps = float(h / (len(count) - 1))
    return {**out, "test": "kruskal-wallis", "p": float(p), "epsilon_squared": eps,
            "warning": bool(p < P_MAX and eps >= EFFECT_MIN["epsilon_squared"])}


def dataset_confounds(task: str, labels: Labels, spec: DatasetSpec, full_graph, info: pd.DataFrame,
                      nodes: np.ndarray) -> dict:
    """:func:`check_confounds` for the labelled genes (node ids ``nodes``) from the per-gene
    ``info`` (:func:`genen_dgl.data.graph.gene_info`): text source unless the dataset has no
    text, annotation count unless it has no annotations."""
    texts = spec.zero_features is None and bool(spec.text_sources() or spec.text_fallback != "none")
    annotated = ANNOTATED in full_graph.canonical_etypes
    rows = info.iloc[nodes]
    return check_confounds(task, labels, rows["text_source"].to_numpy() if texts else None,
                           rows["go_annotations"].to_numpy() if annotated else None)


def check_confounds(task: str, labels: Labels, source: np.ndarray | None, count: np.ndarray | None) -> dict:
    """Both checks for the labelled genes (``source``, ``count``: one per labelled gene, or
    None where the dataset has no text / no annotations); logs one warning line per
    confound found and returns the numbers for metrics.json."""
    if labels.kind == "regression":
        return {"checked": False, "why": "regression task: no classes to compare"}
    if labels.kind == "multilabel":  # each class against the rest, as a binary task
        return {"checked": True, "one_vs_rest": {
            c: check_confounds(f"{task} ({c} vs rest)", Labels(labels.genes, labels.values[:, i].astype(np.int64),
                                                              "binary", [f"not {c}", c]), source, count)
            for i, c in enumerate(labels.classes)}}
    out: dict = {"checked": True, "p_max": P_MAX, "effect_min": EFFECT_MIN}
    if source is not None:
        out["text_source"] = r = text_source_check(labels.values, labels.classes, source)
        if r["warning"]:
            per = "; ".join(f"{c}: " + ", ".join(f"{s} {n}" for s, n in row.items()) for c, row in r["per_class"].items())
            log.warning("confound: task %s's classes differ in text source (%s; chi-square p = %.1e, Cramér's V = "
                        "%.2f): the text's source predicts the label", task, per, r["p"], r["cramers_v"])
    if count is not None:
        out["annotation_count"] = r = annotation_check(labels.values, labels.classes, count)
        if r["warning"]:
            per = "; ".join(f"{c}: median {row['median']:g}, mean {row['mean']:g}, {row['zero']} without"
                            for c, row in r["per_class"].items())
            effect = f"AUC {r['auc']:.2f}" if "auc" in r else f"epsilon² {r['epsilon_squared']:.3f}"
            log.warning("confound: task %s's classes differ in GO annotation count (%s; %s p = %.1e, %s): how well "
                        "studied a gene is predicts the label", task, per, r["test"], r["p"], effect)
    return out
