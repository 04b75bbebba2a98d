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
    training part, so early stopping never sees the test fold. A multilabel task is
    stratified on each gene's rarest label (:func:`rarest_label`)."""
    positions = np.arange(len(y))
    classes = kind != "regression"
    y = rarest_label(y) if kind == "multilabel" else y
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
    one gene per class; for regression, a gene per test fold and two to fit on. A
    multilabel task's classes here are the strata its folds are cut on (each gene's rarest
    label, :func:`rarest_label`)."""
    if kind == "multilabel":
        present = np.unique(rarest_label(y))
        y, classes = np.searchsorted(present, rarest_label(y)), [classes[i] for i in present]
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


def rarest_label(y: np.ndarray) -> np.ndarray:
    """Of each gene's labels (rows of a 0/1 matrix), the one fewest genes have."""
    counts = y.sum(0)
    return np.where(y > 0, counts[None, :], np.inf).argmin(1)


def multilabel_metrics(y_true: np.ndarray, output: np.ndarray, classes: list[str] | None = None) -> dict:
    """One sigmoid per class: macro AUC (the mean over the classes where it is defined:
    both values present), micro AUC (every gene-class pair pooled), ``auc_CLASS`` per
    class, macro F1 of the calls at 0.5, and accuracy as the share of genes whose called
    set is exactly right."""
    names = classes or [str(c) for c in range(y_true.shape[1])]
    undefined, per_class = {}, {}
    for c, name in enumerate(names):
        if 0 < y_true[:, c].sum() < len(y_true):
            per_class[f"auc_{name}"] = float(roc_auc_score(y_true[:, c], output[:, c]))
        else:
            per_class[f"auc_{name}"] = float("nan")
            where = "absent from" if y_true[:, c].sum() == 0 else "on every gene of"
            undefined[f"auc_{name}"] = f"class {name} {where} the test fold"
    defined = [v for v in per_class.values() if np.isfinite(v)]
    calls = output >= 0.5
    out = {"auc": float(np.mean(defined)) if defined else float("nan"),
           "auc_micro": float(roc_auc_score(y_true.ravel(), output.ravel())),
           "f1": float(f1_score(y_true, calls, average="macro", zero_division=0.0)),
           "accuracy": float(np.mean((calls == (y_true > 0)).all(1))), **per_class}
    if undefined:
        out["undefined"] = undefined
    return out


def metrics(kind: str, y_true: np.ndarray, output: np.ndarray, classes: list[str] | None = None) -> dict:
    """Classification: ``output`` are probabilities over every declared class (its width);
    AUC (one-vs-rest macro when multiclass), for binary tasks AUPRC (average precision of
    the positive class, index 1: the area under the precision-recall curve, which
    imbalanced tasks need beside AUC), macro F1 over all declared classes (a class
    absent from the fold still counts, with F1 0), accuracy, and for binary
    tasks the F1 of the positive class (index 1). Regression: ``output`` are predictions;
    Pearson, MSE. Multilabel: :func:`multilabel_metrics` (``classes`` name the per-class
    AUCs). A metric the fold cannot define is NaN, and ``undefined`` says why."""
    if kind == "multilabel":
        return multilabel_metrics(y_true, output, classes)
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


def score_outputs(kind: str, y: np.ndarray, out: np.ndarray, classes: list[str] | None = None) -> dict:
    """:func:`metrics` plus the loss (cross-entropy of the probabilities, binary
    cross-entropy per class for multilabel, or MSE)."""
    if kind == "regression":
        loss = float(np.mean((out[:, 0] - y) ** 2))
    elif kind == "multilabel":
        p = np.clip(out, 1e-12, 1 - 1e-12)
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    else:
        loss = float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-12, None))))
    return {**metrics(kind, y, out, classes), "loss": loss}


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


def headline_metric(kind: str) -> str:
    """The metric a run is summarised, compared and chosen by: Pearson for regression, else AUC."""
    return "pearson" if kind == "regression" else "auc"


ANNOTATION_STRATA = (("0", 0, 0), ("1-5", 1, 5), ("6-20", 6, 20), (">20", 21, np.inf))


def annotation_stratum(counts: np.ndarray) -> np.ndarray:
    """Each gene's stratum by its number of GO annotations: ``0``, ``1-5``, ``6-20``, ``>20``."""
    out = np.empty(len(counts), dtype=object)
    for name, low, high in ANNOTATION_STRATA:
        out[(counts >= low) & (counts <= high)] = name
    return out


def strata(kind: str, y: np.ndarray, per_seed: dict[int, np.ndarray], groups: np.ndarray,
           names: tuple[str, ...]) -> dict:
    """The headline metric within each stratum ``names`` (``groups``: each labelled gene's),
    on the out-of-fold outputs pooled over the folds of each seed, then mean and sample std
    over seeds; ``genes`` counts the stratum (they add up to the labelled genes). A stratum
    with under two genes, or one its metric cannot be defined on, is NaN with the reason."""
    key = headline_metric(kind)
    out = {}
    for name in names:
        rows = np.flatnonzero(groups == name)
        entry: dict = {"genes": int(len(rows))}
        if len(rows) < 2:
            entry.update({key: float("nan"), f"{key}_std": float("nan"), "undefined": "fewer than 2 genes"})
        else:
            scores = [metrics(kind, y[rows], o[rows]) for o in per_seed.values()]
            values = np.array([s[key] for s in scores], float)
            ok = values[np.isfinite(values)]
            entry[key] = float(ok.mean()) if len(ok) else float("nan")
            entry[f"{key}_std"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
            why = {s["undefined"][key] for s in scores if key in s.get("undefined", {})}
            if why:
                entry["undefined"] = "; ".join(sorted(why))
        out[name] = entry
    return out
