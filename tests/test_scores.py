"""What scores.csv tells a user: out-of-fold scores, calibrated probabilities, popularity;
and multilabel tasks end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr

from genen_dgl.calibration import Calibrator, brier, cross_fit, ece
from genen_dgl.config import TrainConfig
from genen_dgl.data.labels import read_labels
from genen_dgl.evaluation import split_folds
from genen_dgl.local import LocalBackend
from genen_dgl.outputs import CALL_THRESHOLD, LIKE_RANGE
from genen_dgl.train import main as train_main
from genen_dgl.training.fold import FoldTrainer

TINY = ["--folds", "2", "--epochs", "3", "--hidden", "16", "--sampler", "full"]


def train(spec: Path, out: Path, *args: str) -> dict:
    assert train_main(["--data", str(spec), "--out", str(out), *args]) == 0
    return json.loads((out / "metrics.json").read_text())


def read_scores(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "scores.csv", dtype={"label": str, "y_pred": str}, keep_default_na=False)


@pytest.fixture(scope="module")
def binary_run(sample_spec, tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("scores") / "run"
    return run, train(sample_spec, run, *TINY, "--seeds", "2")


def test_labelled_genes_score_out_of_fold(sample_spec, binary_run):
    """A labelled gene's score is the mean over seeds of the fold model that held it out,
    not the mean of every fold model; an unlabelled gene's is the mean of every fold model."""
    run, m = binary_run
    config = TrainConfig(data=str(sample_spec), folds=2, seeds=2, hidden=16, epochs=3, sampler="full").resolved()
    data = LocalBackend(config)
    every = np.arange(data.num_genes)
    outputs = []
    for split in data.splits:
        trainer = FoldTrainer.of(data, split, run)
        trainer.load_best()
        outputs.append(trainer.predictor.predict(trainer.model, every)[0][:, 1])
    held_out = np.zeros(len(data.nodes))
    for split, out in zip(data.splits, outputs):
        held_out[split.fold.test] += out[data.nodes[split.fold.test]] / 2
    scores = read_scores(run).set_index("gene")
    genes = np.asarray(data.data.gene_ids)
    positive = f"p_{m['positive_class']}"
    np.testing.assert_allclose(scores.loc[data.labels.genes, positive], held_out, rtol=1e-5, atol=1e-6)
    assert (scores.loc[data.labels.genes, "score_source"] == "out-of-fold").all()
    mean_all = np.mean(outputs, axis=0)
    assert not np.allclose(mean_all[data.nodes], held_out, atol=1e-3)  # the old score would differ
    unlabelled = np.setdiff1d(every, data.nodes)
    np.testing.assert_allclose(scores.loc[genes[unlabelled], positive], mean_all[unlabelled], rtol=1e-5, atol=1e-6)
    assert (scores.loc[genes[unlabelled], "score_source"] == "mean of fold models").all()


def test_probability_calls_and_calibration_report(binary_run):
    run, m = binary_run
    scores = read_scores(run)
    p = scores["probability"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    called = np.where(p >= CALL_THRESHOLD, m["classes"][1], m["classes"][0])
    assert (scores["y_pred"] == called).all()
    c = m["calibration"]
    labelled = scores[scores["labelled"]]
    y = (labelled["label"] == m["positive_class"]).to_numpy()
    assert c["after"]["brier"] == pytest.approx(brier(labelled["probability"].to_numpy(), y))
    assert c["before"]["ece"] == pytest.approx(ece(labelled[f"p_{m['positive_class']}"].to_numpy(), y), abs=1e-6)
    unlabelled = scores[~scores["labelled"]]
    assert c["unlabelled_called_positive"]["after"] == pytest.approx(np.mean(unlabelled["probability"] >= 0.5))
    assert (run / "calibration.png").stat().st_size > 0


def test_like_labelled_follows_the_rule(binary_run):
    """like_labelled: text source seen among labelled genes, annotation count inside their
    5th-95th percentiles; the Spearman of unlabelled scores and counts as reported."""
    run, m = binary_run
    scores = read_scores(run)
    labelled = scores[scores["labelled"]]
    low, high = np.percentile(labelled["go_annotations"], LIKE_RANGE)
    expected = (scores["text_source"].isin(set(labelled["text_source"]))
                & scores["go_annotations"].between(low, high))
    assert (scores["like_labelled"] == expected).all()
    assert 0 < (~expected).sum() < len(scores)  # the rule rejects some genes and accepts others
    assert set(scores["text_source"]) <= {"summary", "protein_name", "none"}
    unlabelled = scores[~scores["labelled"]]
    rho = spearmanr(unlabelled["score"], unlabelled["go_annotations"]).statistic
    assert m["popularity"]["spearman_unlabelled"] == pytest.approx(rho)
    assert m["popularity"]["like_labelled_unlabelled"] == int(unlabelled["like_labelled"].sum())


def test_ece_and_brier_formulas():
    p, y = np.array([0.1, 0.9, 0.8, 0.3]), np.array([0, 1, 0, 1])
    # bins of width 1/15: 0.1, 0.3, 0.8 and 0.9 each fall alone
    assert ece(p, y) == pytest.approx(np.mean(np.abs(y - p)))
    assert brier(p, y) == pytest.approx(np.mean((p - y) ** 2))
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    assert brier(probs, np.array([0, 2])) == pytest.approx(((0.3**2 + 0.04 + 0.01) + (0.04 + 0.25 + 0.49)) / 2)
    assert ece(probs, np.array([0, 2])) == pytest.approx((0.3 + 0.5) / 2)  # top class right, then wrong


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_fixes_a_miscalibrated_score(method):
    """Overconfident, shifted scores: the cross-fitted calibrator lowers ECE and Brier."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    score = 1 / (1 + np.exp(-(3 * z + 1.5)))
    fold_of = rng.integers(0, 5, 4000)
    calibrated = cross_fit(score, y, fold_of, method)
    assert ece(calibrated, y) < ece(score, y) / 3
    assert brier(calibrated, y) < brier(score, y)
    if method == "platt":  # the true map: logit(q) = (logit(p) - 1.5) / 3
        fit = Calibrator().fit(score, y).describe()
        assert fit["slope"] == pytest.approx(1 / 3, abs=0.05) and fit["intercept"] == pytest.approx(-0.5, abs=0.1)


# -- multilabel ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def multilabel_spec(sample_spec, tmp_path_factory) -> Path:
    """A copy of the sample with a task ``both``: each gene's localisation and membrane
    class, on two rows for half the genes and in one '|'-separated cell for the others."""
    folder = tmp_path_factory.mktemp("multilabel") / "data"
    shutil.copytree(Path(sample_spec).parent, folder)
    spec = yaml.safe_load((folder / "dataset.yaml").read_text())
    loc = pd.read_csv(folder / spec["tasks"]["localization"]["file"])
    mem = pd.read_csv(folder / spec["tasks"]["membrane"]["file"])
    both = loc.merge(mem, on="Gene name", suffixes=("_loc", "_mem"))
    rows = []
    for i, (gene, a, b) in enumerate(both[["Gene name", "StrLabel_loc", "StrLabel_mem"]].itertuples(index=False)):
        rows += [(gene, f"{a}|{b}")] if i % 2 else [(gene, a), (gene, b)]
    pd.DataFrame(rows, columns=["Gene name", "Label"]).to_csv(folder / "labels/both.csv", index=False)
    spec["tasks"] = {"both": {"file": "labels/both.csv", "label_column": "Label", "type": "multilabel"}}
    (folder / "dataset.yaml").write_text(yaml.safe_dump(spec))
    return folder / "dataset.yaml"


def test_multilabel_labels_and_folds(multilabel_spec):
    labels = read_labels(Path(multilabel_spec).parent / "labels/both.csv", kind="multilabel")
    assert labels.kind == "multilabel" and labels.values.shape == (len(labels.genes), len(labels.classes))
    assert (labels.values.sum(1) == 2).all()  # one localisation, one membrane class each, either way written
    assert labels.classes == sorted(labels.classes) and "Membrane" in labels.classes
    for fold in split_folds(labels.values, "multilabel", 3, seed=0):
        assert (labels.values[fold.test].sum(0) > 0).all()  # every class in every test fold


def test_multilabel_end_to_end(multilabel_spec, tmp_path):
    m = train(multilabel_spec, tmp_path / "run", *TINY)
    classes = m["classes"]
    assert m["kind"] == "multilabel" and len(classes) == 5
    for summary in [m["summary"]] + [b["summary"] for b in m["baselines"].values()]:
        for key in ["auc_mean", "auc_micro_mean"] + [f"auc_{c}_mean" for c in classes]:
            assert np.isfinite(summary[key]), key
    fold = m["folds"][0]
    assert fold["auc"] == pytest.approx(np.mean([fold[f"auc_{c}"] for c in classes]))
    preds = pd.read_csv(tmp_path / "run/predictions.csv")
    probs = preds[[f"p_{c}" for c in classes]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and not np.allclose(probs.sum(1), 1)  # sigmoids, not a softmax
    scores = read_scores(tmp_path / "run")
    assert scores.loc[scores["labelled"], "label"].str.count(";").eq(1).all()
    assert m["calibration"]["before"]["brier"] > 0 and "probability" not in scores.columns
