"""Cross-validation splits, metrics, summaries and paired tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr, wilcoxon
from scipy.stats import t as student_t
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, mean_squared_error, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split


@dataclass
class Fold:
    train: np.ndarray  # positions into the labelled-gene arrays
    val: np.ndarray
    test: np.ndarray


def split_folds(y: np.ndarray, kind: str, folds: int, seed: int, val_share: float = 0.15) -> list[Fold]:
    """Seeded (stratified, for classes) K-fold; a validation share is carved from each
    training part, so early stopping never sees the test fold."""
    positions = np.arange(len(y))
    classes = kind != "regression"
    kfold = StratifiedKFold(folds, shuffle=True, random_state=seed) if classes else KFold(folds, shuffle=True, random_state=seed)
    out = []
    for i, (train, test) in enumerate(kfold.split(positions, y if classes else None)):
        train, val = train_test_split(
            train, test_size=val_share, random_state=seed + i, stratify=y[train] if classes else None,
        )
        out.append(Fold(np.sort(train), np.sort(val), np.sort(test)))
    return out


def split_problem(y: np.ndarray, kind: str, classes: list[str], folds: int, val_share: float) -> str | None:
    """Why :func:`split_folds` cannot cut ``y`` (None when it can): for classes, each class
    needs a gene in every test fold and two in every training part (to stratify its
    validation share), and the validation and fitting shares of the smallest training part
    one gene per class; for regression, a gene per test fold and two to fit on."""
    n = len(y)
    if kind == "regression":
        counts, shown = np.array([n]), f"{n} genes"
    else:
        counts = np.bincount(y, minlength=len(classes))
        order = np.argsort(counts, kind="stable")[:4]  # the smallest classes
        shown = (f"{n} genes in {len(classes)} classes ({'smallest: ' if len(classes) > 4 else ''}"
                 + ", ".join(f"{classes[i]!r}: {counts[i]}" for i in order) + ("..." if len(classes) > 4 else "") + ")")
        need = folds
        while need - -(-need // folds) < 2:
            need += 1
        if counts.min() < need:
            hint = ("; are these regression values? set the task's type: regression"
                    if kind == "multiclass" and np.mean(counts <= 1) > 0.5 else "; lower folds or label more genes")
            return (f"{shown}; folds = {folds} needs at least {need} genes per class (one in every test fold, two "
                    f"in every training part){hint}")
    if n < folds:
        return f"{shown}; folds = {folds} needs at least {folds} genes (one per test fold)"
    train = n - int(np.sum(-(-counts // folds)))  # the smallest training part
    val = int(np.ceil(val_share * train))
    per = 1 if kind == "regression" else len(classes)
    fit_need = 2 if kind == "regression" else per
    if val < per or train - val < fit_need:
        return (f"{shown}; val_share = {val_share:g} of a training part of {train} genes leaves {val} to validate "
                f"and {train - val} to fit on; it needs at least {per} to validate and {fit_need} to fit on: "
                "change val_share")
    return None


def metrics(kind: str, y_true: np.ndarray, output: np.ndarray) -> dict:
    """Classification: ``output`` are probabilities over every declared class (its width);
    AUC (one-vs-rest macro when multiclass), for binary tasks AUPRC (average precision of
    the positive class, index 1: the area under the precision-recall curve, which
    imbalanced tasks need beside AUC), macro F1 over all declared classes (a class
    absent from the fold still counts, with F1 0), accuracy, and for binary
    tasks the F1 of the positive class (index 1). Regression: ``output`` are predictions;
    Pearson, MSE. A metric the fold cannot define is NaN, and ``undefined`` says why."""
    undefined = {}
    if kind == "regression":
        pred = output.reshape(-1)
        if np.std(pred) > 0 and np.std(y_true) > 0:
            r = float(pearsonr(y_true, pred).statistic)
        else:
            r = float("nan")
            undefined["pearson"] = "constant predictions" if np.std(pred) == 0 else "constant targets"
        out = {"pearson": r, "mse": float(mean_squared_error(y_true, pred))}
    else:
        classes = np.arange(output.shape[1])
        pred = output.argmax(1)
        missing = np.setdiff1d(classes, y_true)
        if len(missing):
            auc = float("nan")
            undefined["auc"] = f"class {', '.join(map(str, missing))} absent from the test fold"
        elif len(classes) == 2:
            auc = float(roc_auc_score(y_true, output[:, 1]))
        else:
            auc = float(roc_auc_score(y_true, output, multi_class="ovr", average="macro", labels=classes))
        out = {"auc": auc,
               "f1": float(f1_score(y_true, pred, labels=classes, average="macro", zero_division=0.0)),
               "accuracy": float(accuracy_score(y_true, pred))}
        if len(classes) == 2:
            out["auprc"] = float("nan") if len(missing) else float(average_precision_score(y_true, output[:, 1]))
            if len(missing):
                undefined["auprc"] = undefined["auc"]
            out["f1_positive"] = float(f1_score(y_true, pred, pos_label=1, average="binary", zero_division=0.0))
    if undefined:
        out["undefined"] = undefined
    return out


def score_outputs(kind: str, y: np.ndarray, out: np.ndarray) -> dict:
    """:func:`metrics` plus the loss (cross-entropy of the probabilities, or MSE)."""
    if kind == "regression":
        loss = float(np.mean((out[:, 0] - y) ** 2))
    else:
        loss = float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-12, None))))
    return {**metrics(kind, y, out), "loss": loss}


def summarize(fold_metrics: list[dict]) -> dict:
    """Mean, sample standard deviation (ddof = 1) and count ``n`` of each metric over the
    folds (x seeds) where it is defined; ``undefined`` lists, per metric, the folds left out
    and why (nothing is dropped silently)."""
    keys = [k for k in fold_metrics[0] if isinstance(fold_metrics[0][k], float)]
    out: dict = {}
    for k in keys:
        values = np.array([m[k] for m in fold_metrics], dtype=float)
        ok = values[np.isfinite(values)]
        out[f"{k}_mean"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{k}_std"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
        out[f"{k}_n"] = int(len(ok))
    undefined: dict[str, list[str]] = {}
    for i, m in enumerate(fold_metrics):
        for k, why in m.get("undefined", {}).items():
            undefined.setdefault(k, []).append(f"fold {m.get('fold', i)}: {why}")
    if undefined:
        out["undefined"] = undefined
    return out


def paired_test(model: list[float], other: list[float], test_share: float) -> dict:
    """Paired comparison of two methods' scores on the same folds (x seeds): the mean
    difference, a Wilcoxon signed-rank test, and Nadeau & Bengio's corrected resampled t-test
    (the variance of the differences inflated by ``test/train`` size, since repeated K-fold
    training sets overlap). Pairs where either score is undefined are left out.
    With 5 pairs the smallest two-sided Wilcoxon p is 0.0625: use ``--seeds`` for more."""
    a, b = np.asarray(model, float), np.asarray(other, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    out = {"pairs": int(ok.sum()), "mean_difference": float(d.mean()) if len(d) else float("nan"),
           "wilcoxon_p": float("nan"), "corrected_t_p": float("nan")}
    if len(d) < 2:
        return out
    if np.any(d != 0):
        out["wilcoxon_p"] = float(wilcoxon(d).pvalue)
    var = d.var(ddof=1) * (1 / len(d) + test_share / (1 - test_share))
    if var > 0:
        t = d.mean() / np.sqrt(var)
        out["corrected_t_p"] = float(2 * student_t.sf(abs(t), len(d) - 1))
    return out
