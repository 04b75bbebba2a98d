"""The GNN and the baselines as one ranking: the mean of their ranks, a rule fixed in
advance (no weight is fitted, so nothing is learnt from any label beyond what each model
learnt from its split's training genes).

Per split, over the genes it holds out :math:`R` (validation and test, no label read):
for each model :math:`m` (the GNN and every baseline that scores the genes of :math:`R`
differently: a GO-derived baseline in the novel-gene regime, which sees none of their
annotations, does not) and each score column :math:`c` (binary: the positive class;
otherwise every class, or the prediction),

.. math:: r_{mic} = \\frac{\\operatorname{rank}_{j \\in R}(s_{mjc})_i}{|R|}, \\qquad
          \\bar r_{ic} = \\frac{1}{|M|} \\sum_m r_{mic}

(ties share their mean rank). :math:`\\bar r` is what the ensemble's metrics read: binary
``[1 - r, r]``, multiclass each row over its sum, multilabel and regression as it is. It
is a ranking, not a probability: its F1 cuts at the middle rank, and only its AUC (Pearson)
is meant to be compared. The validation rows are scored as the test rows, so a run's
validation share says whether the ensemble beats the GNN alone
(:mod:`genen_dgl.experiments.choose`); the GNN's own validation metric is a little
optimistic there (its epoch was picked on those genes), which favours the GNN alone.
scores.csv's ``ensemble`` column is the same rule over every gene node
(:func:`genen_dgl.baselines.every_gene`, :func:`genen_dgl.outputs.score_table`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from genen_dgl.baselines import held_out
from genen_dgl.evaluation import metrics

SUFFIX = "+baselines"  # a table row of the ensemble: the GNN's model name and this


def columns(output: np.ndarray, kind: str) -> np.ndarray:
    """The score columns a model's ``output`` is ranked on (binary: the positive class)."""
    return output[:, 1:2] if kind == "binary" else output


def mean_rank(outputs: list[np.ndarray], kind: str) -> np.ndarray:
    """:math:`\\bar r` over the rows of ``outputs`` (each model's outputs on the same genes);
    a model that scores every gene alike is left out (all alike: every rank 1/2)."""
    ranked = [rankdata(c, axis=0) / len(c) for out in outputs if np.ptp(c := columns(out, kind), axis=0).any()]
    r = np.mean(ranked, axis=0) if ranked else np.full_like(columns(outputs[0], kind), 0.5, dtype=np.float64)
    if kind == "binary":
        return np.hstack([1 - r, r])
    if kind == "multiclass":
        return r / r.sum(1, keepdims=True)
    return r


def apply_per_fold(gnn: list[np.ndarray], baselines: dict[str, list[np.ndarray]], splits, nodes: np.ndarray,
                   y: np.ndarray, kind: str, classes: list[str] | None = None) -> dict:
    """Per split, the metrics of :func:`mean_rank` over the GNN's outputs (``gnn``: every
    gene node's) and the baselines' (``baselines``: per name, per split, rows of every
    labelled gene): on the test genes (``folds``) and on the validation genes (``val``)."""
    out: dict[str, list] = {"models": ["gnn", *baselines], "folds": [], "val": []}
    for i, (split, z) in enumerate(zip(splits, gnn)):
        f, rows = split.fold, held_out(split.fold)
        score = mean_rank([z[nodes[rows]], *(b[i][rows] for b in baselines.values())], kind)
        at = {"seed": split.seed, "fold": split.k}
        out["folds"].append({**at, **metrics(kind, y[f.test], score[len(f.val):], classes)})
        if len(f.val):
            out["val"].append({**at, **metrics(kind, y[f.val], score[:len(f.val)], classes)})
    return out
