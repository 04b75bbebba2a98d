"""Cross-validation splits, metrics, and the logistic-regression baseline."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


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


def metrics(kind: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Classification: ``output`` are class probabilities; AUC (one-vs-rest macro when
    multiclass), macro F1, accuracy. Regression: ``output`` are predictions; Pearson, MSE."""
    if kind == "regression":
        pred = output.reshape(-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = pearsonr(y_true, pred).statistic if np.std(pred) > 0 else float("nan")
        return {"pearson": float(r), "mse": float(mean_squared_error(y_true, pred))}
    pred = output.argmax(1)
    try:
        if output.shape[1] == 2:
            auc = roc_auc_score(y_true, output[:, 1])
        else:
            auc = roc_auc_score(y_true, output, multi_class="ovr", average="macro", labels=np.arange(output.shape[1]))
    except ValueError:  # a class missing from this fold
        auc = float("nan")
    return {"auc": float(auc), "f1": float(f1_score(y_true, pred, average="macro")),
            "accuracy": float(accuracy_score(y_true, pred))}


def score_outputs(kind: str, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """:func:`metrics` plus the loss (cross-entropy of the probabilities, or MSE)."""
    if kind == "regression":
        loss = float(np.mean((out[:, 0] - y) ** 2))
    else:
        loss = float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-12, None))))
    return {**metrics(kind, y, out), "loss": loss}


def summarize(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in fold_metrics[0] if isinstance(fold_metrics[0][k], float)]
    out = {}
    for k in keys:
        values = np.array([m[k] for m in fold_metrics], dtype=float)
        out[f"{k}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        out[f"{k}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
    return out


def baseline_outputs(x: np.ndarray, y: np.ndarray, kind: str, folds: list[Fold], seed: int) -> np.ndarray:
    """Out-of-fold outputs (class probabilities, or predictions as one column) of
    logistic regression (ridge for regression) on the input features, fitted on each
    fold's train + validation parts."""
    width = 1 if kind == "regression" else int(y.max()) + 1
    out = np.full((len(y), width), np.nan)
    for fold in folds:
        fit = np.concatenate([fold.train, fold.val])
        if kind == "regression":
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[fit], y[fit])
            out[fold.test, 0] = model.predict(x[fold.test])
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
            model.fit(x[fit], y[fit])
            proba = np.zeros((len(fold.test), width))
            proba[:, model.classes_] = model.predict_proba(x[fold.test])
            out[fold.test] = proba
    return out


def baseline(x: np.ndarray, y: np.ndarray, kind: str, folds: list[Fold], seed: int) -> dict:
    """The baseline's metrics on the same folds as the GNN."""
    out = baseline_outputs(x, y, kind, folds, seed)
    results = [metrics(kind, y[f.test], out[f.test]) for f in folds]
    name = "ridge" if kind == "regression" else "logistic_regression"
    return {"model": name, "folds": results, "summary": summarize(results)}
