"""Probabilities a user can read: calibration of out-of-fold scores and how well it worked.

A model's scores rank genes; whether a score of 0.8 means "4 in 5 such genes are
positive" is what calibration measures and fixes. Two measures, lower is better:

* Brier score, the mean squared error of the probabilities,
  :math:`\\frac1n\\sum_i\\sum_c (p_{ic} - y_{ic})^2` over the classes (for a binary task the
  positive class only: :math:`\\frac1n\\sum_i (p_i - y_i)^2`);
* expected calibration error with :data:`BINS` equal-width bins :math:`B_b` of the
  confidence :math:`p` on [0, 1]:
  :math:`\\mathrm{ECE} = \\sum_b \\frac{|B_b|}{n}\\,\\bigl|\\bar y_{B_b} - \\bar p_{B_b}\\bigr|`,
  where for a binary task :math:`p` is the positive-class probability and :math:`y` the
  label, for several classes :math:`p` is the top class's probability and :math:`y`
  whether that class is the true one.

The calibrator (binary tasks) is Platt scaling, a 1-d logistic regression on the logit of
the score, :math:`q = \\sigma(a\\,\\operatorname{logit}(p) + b)`, or isotonic regression.
It is fitted on the labelled genes' out-of-fold scores; its own quality is measured
cross-fitted (:func:`cross_fit`): each fold's genes calibrated by a calibrator fitted on
the other folds' genes only.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

BINS = 15
METHODS = ("platt", "isotonic")
EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


class Calibrator:
    """Maps a binary task's positive-class scores to calibrated probabilities."""

    def __init__(self, method: str = "platt"):
        if method not in METHODS:
            raise ValueError(method)
        self.method = method

    def fit(self, p: np.ndarray, y: np.ndarray) -> "Calibrator":
        if self.method == "platt":  # barely regularised: two parameters, hundreds of genes
            self.model = LogisticRegression(C=1e6).fit(logit(p)[:, None], y)
        else:
            self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            return self.model.predict_proba(logit(p)[:, None])[:, 1]
        return self.model.predict(np.asarray(p, float))

    def describe(self) -> dict:
        if self.method == "platt":
            return {"method": "platt", "slope": float(self.model.coef_[0, 0]),
                    "intercept": float(self.model.intercept_[0])}
        return {"method": "isotonic"}


def cross_fit(p: np.ndarray, y: np.ndarray, fold_of: np.ndarray, method: str = "platt") -> np.ndarray:
    """Each gene's probability from a calibrator fitted on the genes of the other folds."""
    out = np.empty(len(p))
    for k in np.unique(fold_of):
        held = fold_of == k
        out[held] = Calibrator(method).fit(p[~held], y[~held])(p[held])
    return out


def confidence(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ECE bins: a binary task's positive-class probability and label (``p`` one
    column), or the top class's probability and whether it is right (``p`` per class)."""
    p = np.asarray(p, float)
    if p.ndim == 1:
        return p, np.asarray(y, float)
    return p.max(1), (p.argmax(1) == y).astype(float)


def ece(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error (module docstring) over ``bins`` equal-width bins."""
    conf, hit = confidence(p, y)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(hit[inside].mean() - conf[inside].mean())
    return float(total / len(conf))


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Brier score: ``p`` a binary task's positive-class probability, or one column per class."""
    p = np.asarray(p, float)
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(((p - onehot) ** 2).sum(1)))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Per non-empty bin: its lower edge, mean confidence, observed frequency and gene count."""
    conf, hit = confidence(p, y)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    found = np.unique(which)
    return {"bin_low": [float(b / bins) for b in found], "confidence": [float(conf[which == b].mean()) for b in found],
            "observed": [float(hit[which == b].mean()) for b in found],
            "genes": [int((which == b).sum()) for b in found]}


def quality(p: np.ndarray, y: np.ndarray) -> dict:
    return {"brier": brier(p, y), "ece": ece(p, y)}
