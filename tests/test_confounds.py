"""Confound warnings before training, and a run that accounts for every gene: a planted
confound is reported (log line and metrics.json) and a balanced task is not; genes left
out are listed with the reason; data-preparation lines reach train.log."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from genen_dgl.confounds import check_confounds
from genen_dgl.data.graph import load_graph
from genen_dgl.data.labels import Labels
from genen_dgl.train import main as train_main

SMALL = ["--folds", "2", "--epochs", "2", "--hidden", "16", "--sampler", "full", "--threads", "1", "--no-refit"]


def labels(y) -> Labels:
    return Labels(np.array([f"G{i}" for i in range(len(y))]), np.asarray(y), "binary", ["neg", "pos"])


@pytest.mark.parametrize("planted", [True, False])
def test_text_source_confound(planted, caplog):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    source = np.where(y == 1, "protein_name", "summary") if planted else rng.choice(["summary", "protein_name"], 120)
    with caplog.at_level(logging.WARNING, logger="genen_dgl"):
        out = check_confounds("t", labels(y), source, None)
    r = out["text_source"]
    assert r["warning"] is planted and (r["p"] < 1e-3) is planted
    assert r["per_class"]["pos"]["protein_name"] == int(np.sum(source[y == 1] == "protein_name"))
    lines = [m for m in caplog.messages if "text source" in m]
    assert len(lines) == int(planted)
    if planted:
        assert "neg: summary 60, protein_name 0, none 0; pos: summary 0, protein_name 60, none 0" in lines[0]


@pytest.mark.parametrize("planted", [True, False])
def test_annotation_count_confound(planted, caplog):
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 80)
    count = rng.poisson(np.where(y == 1, 12 if planted else 4, 4))
    with caplog.at_level(logging.WARNING, logger="genen_dgl"):
        out = check_confounds("t", labels(y), None, count)
    r = out["annotation_count"]
    assert r["warning"] is planted and r["test"] == "mann-whitney"
    assert (r["p"] < 1e-3) is planted and (abs(r["auc"] - 0.5) > 0.3) is planted
    assert len([m for m in caplog.messages if "annotation count" in m]) == int(planted)


def test_multiclass_and_regression(caplog):
    y = np.repeat([0, 1, 2], 40)
    lab = Labels(np.arange(120).astype(str), y, "multiclass", ["a", "b", "c"])
    out = check_confounds("t", lab, None, y * 5 + np.random.default_rng(2).poisson(1, 120))
    assert out["annotation_count"]["test"] == "kruskal-wallis" and out["annotation_count"]["warning"]
    reg = Labels(np.arange(5).astype(str), np.zeros(5, np.float32), "regression", [])
    assert check_confounds("t", reg, None, np.arange(5))["checked"] is False


def test_own_task_run_warns_lists_skipped_genes_and_logs_preparation(sample_spec, tmp_path):
    """A --labels task whose label is 'has many GO annotations', plus a gene the graph lacks."""
    graph = load_graph(sample_spec)
    count = graph.graph.out_degrees(etype=("gene", "annotated", "go")).numpy()
    genes = np.array(graph.gene_ids)
    pick = np.random.default_rng(0).choice(len(genes), 200, replace=False)
    y = np.where(count[pick] > np.median(count), "many", "few")
    task = pd.DataFrame({"Gene name": np.append(genes[pick], "NOTAGENE"), "Label": np.append(y, "few")})
    task.to_csv(tmp_path / "depth.csv", index=False)
    out = tmp_path / "run"
    assert train_main(["--data", str(sample_spec), "--labels", str(tmp_path / "depth.csv"), *SMALL,
                       "--out", str(out)]) == 0
    log = (out / "train.log").read_text()
    assert "confound: task depth's classes differ in GO annotation count" in log
    assert "1 gene of 201 labelled are not graph nodes, skipped: NOTAGENE" in log
    assert "GeneGraph sample/go_ppi" in log and log.index("GeneGraph") < log.index("run " + str(out))  # preparation first
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["confounds"]["annotation_count"]["warning"] is True
    assert metrics["class_counts"] == {"few": int((y == "few").sum()), "many": int((y == "many").sum())}
    folds = metrics["fold_class_counts"]
    assert sum(f["test"]["many"] for f in folds) == int((y == "many").sum())
    assert pd.read_csv(out / "genes_skipped.csv").to_dict("records") == [{"gene": "NOTAGENE",
                                                                         "reason": "not a graph node"}]
    assert metrics["skipped_genes"]["count"] == 1
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "auprc_mean" in metrics["summary"] and "auprc_mean" in metrics["baselines"]["text"]["summary"]
    env = metrics["environment"]
    assert env["device"] == "cpu" and env["libraries"]["torch"] and env["genen_dgl"]
    assert json.loads((out / "inputs.json").read_text())["environment"]["device"] == "cpu"


def test_dropped_duplicates_are_listed(sample_spec, tmp_path):
    """``duplicates: drop`` through a spec with ``base:``: the dropped gene is named and listed."""
    membrane = pd.read_csv(sample_spec.parent / "labels/membrane.csv")
    conflict = membrane.iloc[[0]].assign(Label=1 - membrane["Label"].iloc[0])
    pd.concat([membrane, conflict]).to_csv(tmp_path / "dup.csv", index=False)
    (tmp_path / "mine.yaml").write_text(f"base: {sample_spec}\ntasks:\n  dup: {{file: {tmp_path / 'dup.csv'}, "
                                        "type: binary, duplicates: drop}\n")
    out = tmp_path / "run"
    assert train_main(["--data", str(tmp_path / "mine.yaml"), *SMALL, "--out", str(out)]) == 0
    gene = membrane["Gene name"].iloc[0]
    skipped = pd.read_csv(out / "genes_skipped.csv")
    assert skipped.to_dict("records") == [{"gene": gene, "reason": "conflicting labels (duplicates: drop)"}]
    assert f"listed with conflicting labels, dropped (duplicates: drop): {gene}" in (out / "train.log").read_text()
