"""Metrics over every declared class, undefined folds reported, sample std, paired tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import f1_score

from genen_dgl.evaluation import metrics, paired_test, summarize


def onehot(pred: list[int], width: int) -> np.ndarray:
    out = np.full((len(pred), width), 0.1 / (width - 1))
    out[np.arange(len(pred)), pred] = 0.9
    return out


def test_macro_f1_counts_a_class_missing_from_the_fold():
    y = np.array([0, 0, 1, 1, 0, 1])
    out = onehot([0, 0, 1, 1, 0, 0], 3)  # class 2 is declared but neither true nor predicted here
    m = metrics("multiclass", y, out)
    two_class = f1_score(y, out.argmax(1), average="macro")
    assert m["f1"] == pytest.approx(two_class * 2 / 3)  # the third class counts, with F1 0
    assert np.isnan(m["auc"]) and "class 2 absent" in m["undefined"]["auc"]


def test_binary_reports_positive_class_f1_beside_macro():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    out = onehot([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], 2)
    m = metrics("binary", y, out)
    assert m["f1_positive"] == pytest.approx(f1_score(y, out.argmax(1)))  # 2 * 1/2 * 1/3 / (1/2 + 1/3) = 0.4
    assert m["f1_positive"] == pytest.approx(0.4)
    assert m["f1"] == pytest.approx(f1_score(y, out.argmax(1), average="macro"))
    assert m["f1"] != pytest.approx(m["f1_positive"])
    assert "undefined" not in m


def test_summary_uses_sample_std_and_reports_undefined_folds():
    folds = [{"fold": k, "auc": v, "f1": v} for k, v in enumerate([0.8, 0.9, 0.7])]
    folds.append({"fold": 3, "auc": float("nan"), "f1": 0.5, "undefined": {"auc": "class 2 absent from the test fold"}})
    s = summarize(folds)
    assert s["auc_mean"] == pytest.approx(0.8) and s["auc_n"] == 3
    assert s["auc_std"] == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))  # 0.1, not ddof=0's 0.0816
    assert s["f1_n"] == 4 and s["f1_std"] == pytest.approx(np.std([0.8, 0.9, 0.7, 0.5], ddof=1))
    assert s["undefined"] == {"auc": ["fold 3: class 2 absent from the test fold"]}


def test_constant_regression_predictions_are_undefined_not_dropped():
    m = metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([[2.0], [2.0], [2.0]]))
    assert np.isnan(m["pearson"]) and m["undefined"] == {"pearson": "constant predictions"}
    assert m["mse"] == pytest.approx(2 / 3)


def test_paired_test():
    model = [0.90, 0.92, 0.88, 0.91, 0.93]
    other = [0.80, 0.85, 0.83, 0.86, 0.84]
    t = paired_test(model, other, test_share=0.2)
    d = np.subtract(model, other)
    assert t["pairs"] == 5 and t["mean_difference"] == pytest.approx(d.mean())
    assert t["wilcoxon_p"] == pytest.approx(wilcoxon(d).pvalue) == pytest.approx(0.0625)  # 5 pairs: the floor
    # Nadeau & Bengio: the variance is inflated by test/train = 0.25, so p exceeds the naive paired t's
    from scipy.stats import ttest_rel
    assert t["corrected_t_p"] > ttest_rel(model, other).pvalue
    assert t["corrected_t_p"] < 0.05
    same = paired_test(model, model, 0.2)
    assert same["mean_difference"] == 0 and np.isnan(same["wilcoxon_p"])
    skipped = paired_test(model + [float("nan")], other + [0.5], 0.2)
    assert skipped["pairs"] == 5


def test_binary_reports_auprc_and_leaves_it_undefined_without_positives():
    y = np.array([0, 0, 1, 0, 1, 0, 0, 0])
    p = np.array([0.1, 0.4, 0.35, 0.2, 0.8, 0.05, 0.3, 0.6])
    m = metrics("binary", y, np.stack([1 - p, p], 1))
    # ranked by p: 0.8 (pos), 0.6, 0.4, 0.35 (pos), ...: precision 1 at recall 1/2, 2/4 at recall 1
    assert m["auprc"] == pytest.approx((1.0 + 0.5) / 2)
    none = metrics("binary", np.zeros(4, int), np.full((4, 2), 0.5))
    assert np.isnan(none["auprc"]) and "absent from the test fold" in none["undefined"]["auprc"]
