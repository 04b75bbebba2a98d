"""The experiment commands end to end on the sample dataset, with tiny training settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import image

from genen_dgl.baselines import fit_predict, views
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import load_full_graph, load_graph
from genen_dgl.data.spec import load_spec
from genen_dgl.evaluation import metrics
from genen_dgl.experiments.__main__ import main
from genen_dgl.experiments.masking import DEFAULT_RATES, parse_rates
from genen_dgl.splits import cut_splits

SMALL = ["--epochs", "2", "--folds", "2", "--sampler", "full", "--hidden", "16", "--threads", "1"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(command: str, spec: Path, out: Path, *extra: str) -> int:
    return main([command, "--data", str(spec), "--out", str(out), *SMALL, *extra])


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000
    pixels = image.imread(path)
    assert pixels.shape[0] > 150 and pixels.shape[1] > 150
    assert pixels[..., :3].std() > 0.05  # something is drawn


def mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/metrics.json"))}


@pytest.fixture(scope="module")
def labelled(sample_spec) -> tuple[np.ndarray, object, np.ndarray]:
    """Node ids, labels and summary word counts of the sample's membrane (first) task."""
    data = load_graph(sample_spec, "go_ppi")
    nodes, labels = data.labels()
    return nodes, labels, data.summary_words()[nodes]


@pytest.fixture(scope="module")
def bias_out(sample_spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bias")
    assert run("bias", sample_spec, out) == 0
    return out


def test_default_rates_and_bad_rates(sample_spec, tmp_path, capsys):
    assert parse_rates(None) == list(DEFAULT_RATES) == [0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9]
    assert all(type(r) is float for r in parse_rates(None))  # numpy floats break config.yaml
    assert run("masking", sample_spec, tmp_path, "--rates", "0,1.5") == 2
    assert "expected shares in [0, 1)" in capsys.readouterr().err
    assert run("masking", sample_spec, tmp_path, "--variants", "ppi,foo") == 2
    assert "graph variant 'foo'" in capsys.readouterr().err


def test_masking(sample_spec, tmp_path):
    assert run("masking", sample_spec, tmp_path, "--rates", "0,0.9", "--nodes", "all,go") == 0
    frame = pd.read_csv(tmp_path / "masking.csv")
    assert {"rate", "variant", "nodes", "fold", "auc", "f1"} <= set(frame.columns)
    # all: 3 variants; go: go and go_ppi (ppi has no GO nodes); 5 baselines per (nodes, rate); 2 folds
    assert len(frame) == (3 * 2 + 2 * 2 + 5 * 2 * 2) * 2
    for (variant, nodes), part in frame.groupby(["variant", "nodes"]):
        assert sorted(part["rate"].unique()) == [0.0, 0.9], (variant, nodes)
        assert sorted(part["fold"]) == [0, 0, 1, 1]
    assert not ((frame["variant"] == "ppi") & (frame["nodes"] == "go")).any()
    assert frame[["auc", "f1"]].notna().all().all()
    base = frame[frame["variant"] == "text LR"].set_index(["nodes", "rate", "fold"])["f1"]
    assert np.allclose(base.loc["go", 0.0], base.loc["go", 0.9])  # GO masking leaves gene features alone
    assert not np.allclose(base.loc["all", 0.0], base.loc["all", 0.9])  # 90% of gene features zeroed
    go = frame[frame["variant"] == "GO-annotation LR"].set_index(["nodes", "rate", "fold"])["f1"]
    assert np.allclose(go.loc["all", 0.0], go.loc["all", 0.9])  # annotations are not features
    truth = [pd.read_csv(tmp_path / f"runs/go_ppi-all-{r}/predictions.csv")["y_true"] for r in ("0", "0.9")]
    assert truth[0].equals(truth[1])  # labels are never masked
    assert_png(tmp_path / "masking.png")
    # a rerun with the same options reuses every finished run
    before, csv = mtimes(tmp_path), (tmp_path / "masking.csv").read_text()
    assert len(before) == 10
    assert run("masking", sample_spec, tmp_path, "--rates", "0,0.9", "--nodes", "all,go") == 0
    assert mtimes(tmp_path) == before
    assert (tmp_path / "masking.csv").read_text() == csv


def test_bias_split_and_scores(bias_out, labelled, sample_spec):
    nodes, labels, words = labelled
    frame = pd.read_csv(bias_out / "bias.csv")
    assert {"model", "group", "fold", "n", "words_threshold", "auc", "f1", "accuracy"} <= set(frame.columns)
    assert set(frame["model"]) == {"gcn", "text", "ppi_smoothed", "go_annotations"}
    threshold = np.median(words)
    assert frame["words_threshold"].eq(threshold).all()
    less = int((words <= threshold).sum())
    for _, part in frame.groupby("model"):
        sizes = part.groupby("group")["n"].sum()
        assert sizes["less-studied"] == less and sizes["well-studied"] == len(nodes) - less
        assert sizes.sum() == len(nodes) == 360
    assert_png(bias_out / "bias.png")

    # the out-of-fold baselines reproduce the trainer's, split by split
    report = json.loads((bias_out / "runs/go_ppi-gcn/metrics.json").read_text())
    splits = cut_splits(labels, TrainConfig(folds=2))
    full = load_full_graph(load_spec(sample_spec))[0]
    inputs = views(full, full.nodes["gene"].data["feat"].numpy(), nodes)
    assert set(inputs) | {"lp_ppi", "lp_go"} == set(report["baselines"])  # label propagation: tests/test_regimes.py
    for name, x in inputs.items():
        for split, expected in zip(splits, report["baselines"][name]["folds"]):
            out = fit_predict(x, labels.values, labels.kind, split.fold, 2, split.seed)  # validation, then test rows
            got = metrics(labels.kind, labels.values[split.fold.test], out[len(split.fold.val):])
            assert {"seed": split.seed, "fold": split.k, **got} == pytest.approx(expected)


def test_bias_threshold_reuses_training(bias_out, labelled, sample_spec):
    words = labelled[2]
    before = mtimes(bias_out)
    assert run("bias", sample_spec, bias_out, "--threshold", "20") == 0
    assert mtimes(bias_out) == before
    frame = pd.read_csv(bias_out / "bias.csv")
    gnn = frame[frame["model"] == "gcn"].groupby("group")["n"].sum()
    assert gnn["less-studied"] == (words <= 20).sum() and gnn.sum() == len(words)


def test_embeddings(bias_out, labelled, sample_spec, tmp_path, capsys):
    before = mtimes(bias_out)
    assert run("embeddings", sample_spec, bias_out) == 0  # same options as bias: its run is reused
    assert mtimes(bias_out) == before
    frame = pd.read_csv(bias_out / "embeddings.csv", dtype={"label": str})
    assert list(frame.columns) == ["gene", "fold", "label", "input_x", "input_y", "refined_x", "refined_y"]
    # the map shows genes the fold-0 model did not train on: its test fold
    test = cut_splits(labelled[1], TrainConfig(folds=2))[0].fold.test
    assert sorted(frame["gene"]) == sorted(labelled[1].genes[test])
    assert set(frame["label"]) == {"0", "1"}
    assert np.isfinite(frame.iloc[:, 3:].to_numpy()).all()
    assert_png(bias_out / "embeddings.png")
    assert main(["embeddings", "--out", str(tmp_path), "--run", str(tmp_path)]) == 2
    assert "not a finished training run" in capsys.readouterr().err


def test_leakage(sample_spec, tmp_path, capsys):
    data_dir = sample_spec.parent
    original = sample_spec.read_bytes()
    files_before = {p for p in data_dir.rglob("*") if ".cache" not in p.parts}
    assert run("leakage", sample_spec, tmp_path) == 0
    assert sample_spec.read_bytes() == original
    assert {p for p in data_dir.rglob("*") if ".cache" not in p.parts} == files_before
    frame = pd.read_csv(tmp_path / "leakage.csv")
    assert {"filter", "go_nodes", "model", "fold", "auc", "f1"} <= set(frame.columns)
    assert len(frame) == 2 * 6 * 2  # filter on/off x GNN and 5 baselines x folds
    go = frame.groupby("filter")["go_nodes"].first()
    assert go["off"] > go["on"]  # the filter really removes GO terms
    edges = frame.groupby("filter")["gene_go_edges"].first()
    assert edges["off"] >= edges["on"]
    spec = load_spec(tmp_path / "dataset.unfiltered.yaml")
    assert spec.exclude_words == [] and spec.cache == load_spec(sample_spec).cache
    assert all(t.file.is_absolute() and t.file.exists() for t in spec.tasks.values())
    assert yaml.safe_load(sample_spec.read_text())["go"]["exclude_words"]
    assert_png(tmp_path / "leakage.png")
    # a spec without a filter has nothing to compare
    assert run("leakage", tmp_path / "dataset.unfiltered.yaml", tmp_path / "again") == 2
    assert "there is no filter to compare against" in capsys.readouterr().err


@pytest.mark.slow
def test_table(sample_spec, tmp_path):
    assert main(["table", "--data", str(sample_spec), "--out", str(tmp_path), *SMALL, "--epochs", "1"]) == 0
    frame = pd.read_csv(tmp_path / "table.csv", keep_default_na=False, na_values=[""])
    tasks = ["membrane", "localization", "conservation"]
    gnn = frame[frame["model"].isin(["gcn", "gat"])]
    assert len(gnn) == 3 * 2 * 3
    assert not gnn.duplicated(["task", "model", "variant"]).any()
    # each GNN row has its ensemble with the baselines beside it, chosen on validation as a configuration is
    ranked = frame[frame["model"].isin(["gcn+baselines", "gat+baselines"])]
    assert list(ranked["model"].str[:3]) == list(gnn["model"]) and list(ranked["variant"]) == list(gnn["variant"])
    assert ranked["val_mean"].notna().all() and ranked["p_vs_go_annotations"].notna().all()
    assert ranked["f1_mean"].isna().all()  # a ranking: no threshold to cut at
    baseline = frame[~frame["model"].isin(["gcn", "gat", "gcn+baselines", "gat+baselines"])]
    names = ["text", "ppi_smoothed", "go_annotations", "lp_ppi", "lp_go"]
    assert list(baseline["task"]) == [t for t in tasks for _ in range(len(names))]
    assert list(baseline["model"]) == names * 3
    assert gnn[[f"p_vs_{n}" for n in names]].notna().all().all()
    assert gnn["val_mean"].notna().all() and (frame["regime"] == "standard").all()
    assert (frame["metric"] == np.where(frame["task"] == "conservation", "pearson", "auc")).all()
    scored = frame[(frame["task"] != "conservation") & ~frame.index.isin(ranked.index)]
    assert scored[["mean", "std", "f1_mean", "f1_std"]].notna().all().all()
    assert frame.loc[frame["task"] == "conservation", "f1_mean"].isna().all()
    md = (tmp_path / "table.md").read_text()
    assert md.count("| Model | membrane | localization | conservation (Pearson) |") == 2
    # AUC and F1; the tests table, a row per task; the strata by annotations and by text source, a row per task
    assert md.count("| GAT · go_ppi |") == 2 + 3 + 2 * 3
    assert md.count("| text LR |") == 2 + 3 + 2 * 3 and md.count("| PPI label propagation |") == 2 + 3 + 2 * 3
    assert_png(tmp_path / "table.png")


def test_table_sets_the_papers_rows_beside_ours():
    from genen_dgl.experiments.table import markdown, paper_rows, row

    summary = {"auc_mean": 0.95, "auc_std": 0.01, "auc_n": 5, "f1_mean": 0.9, "f1_std": 0.02}
    frame = pd.DataFrame([row("solubility", "binary", "gcn", "go", summary, 5),
                          *paper_rows("solubility", "binary", 5), *paper_rows("membrane", "binary", 5)])
    assert list(frame["model"]) == ["gcn", "paper_gcn", "paper_best"]  # no paper row for a task it lacks
    md = markdown(frame)
    assert "| paper: GCN | 0.99 ± 0.02 |" in md and "| paper: best other | 0.89 ± 0.01 (GeneLLM) |" in md
    assert "| paper: GCN | 0.95 ± 0.01 |" in md  # its F1 (Table A.1)
