"""The training CLI end to end on the embedded sample dataset."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from genen_dgl.config import TrainConfig
from genen_dgl.train import main as train_main
from genen_dgl.local import LocalBackend
from genen_dgl.training.fold import FoldTrainer

SMALL = ["--folds", "2", "--epochs", "6", "--hidden", "32", "--batch-size", "64"]


def train(spec: Path, out: Path, *args: str) -> dict:
    assert train_main(["--data", str(spec), "--out", str(out), *args]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_outputs_and_config(sample_spec, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": "gat", "hidden": 64, "epochs": 2, "folds": 3}))
    m = train(sample_spec, tmp_path / "run", "--config", str(config), "--hidden", "32", "--task", "localization")
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert saved["model"] == "gat" and saved["hidden"] == 32 and saved["epochs"] == 2 and saved["layers"] == 2
    assert m["kind"] == "multiclass" and len(m["folds"]) == 3
    assert set(m["baselines"]) == {"text", "ppi_smoothed", "go_annotations", "lp_ppi", "lp_go"}
    for key in ("auc_mean", "auc_std", "f1_mean", "f1_std", "accuracy_mean"):
        assert np.isfinite(m["summary"][key])
        assert all(np.isfinite(b["summary"][key]) for b in m["baselines"].values())
    assert m["baselines"]["text"]["model"] == "logistic_regression"
    preds = pd.read_csv(tmp_path / "run/predictions.csv")
    assert len(preds) == m["labelled_genes"] and preds["gene"].is_unique
    assert sorted(preds["fold"].unique()) == [0, 1, 2]
    probs = preds[[c for c in preds.columns if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    emb = np.load(tmp_path / "run/embeddings.npy")
    genes = (tmp_path / "run/embeddings.genes.txt").read_text().split()
    assert emb.shape == (len(genes), 32) and np.isfinite(emb).all()
    for k in range(3):
        assert (tmp_path / f"run/fold{k}/best.pt").exists() and (tmp_path / f"run/fold{k}/result.json").exists()
    assert "fold2: best epoch" in (tmp_path / "run/train.log").read_text()


def test_regression_and_full_graph(sample_spec, tmp_path):
    m = train(sample_spec, tmp_path / "run", *SMALL, "--task", "conservation", "--sampler", "full", "--graph", "ppi")
    assert m["kind"] == "regression" and set(m["summary"]) >= {"pearson_mean", "mse_mean"}
    assert {n: b["model"] for n, b in m["baselines"].items()} == {
        "text": "ridge", "ppi_smoothed": "ridge", "go_annotations": "ridge", "lp_ppi": "label_propagation",
        "lp_go": "label_propagation"}


def test_learned_edge_weights_are_trained(sample_spec, tmp_path):
    config = TrainConfig(data=str(sample_spec), graph="ppi", edge_weight="learned", hidden=16, folds=2).resolved()
    data = LocalBackend(config)
    trainer = FoldTrainer.of(data, data.splits[0], tmp_path)
    theta = trainer.model.edge_theta["gene:interacts:gene"]
    before = theta.detach().clone()
    trainer.train_epoch()
    assert theta.grad is not None and not torch.equal(before, theta.detach())


def test_rejects_an_existing_run(sample_spec, tmp_path, capsys):
    train(sample_spec, tmp_path / "run", *SMALL)
    assert train_main(["--data", str(sample_spec), "--out", str(tmp_path / "run")]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: --device cuda is valid here")
def test_rejects_cuda_without_a_gpu(sample_spec, tmp_path, capsys):
    assert train_main(["--data", str(sample_spec), "--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 2
    assert "no GPU" in capsys.readouterr().err


def kill_when(path: Path, cmd: list[str]) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``path`` exists."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["full", "device", "neighbor"])
def test_killed_run_resumes(sample_spec, tmp_path, sampler):
    """SIGKILL mid-training, then --resume. Full-graph training and the torch-op sampler
    are deterministic, so the metrics equal an uninterrupted run's exactly. DGL 2.1's CPU
    neighbour sampler is not reproducible under dgl.seed (its per-thread engines), so there
    folds finished before the kill are identical and the rest agree closely."""
    args = ["--data", str(sample_spec), *SMALL, "--epochs", "10", "--patience", "100", "--sampler", sampler]
    train = [sys.executable, "-m", "genen_dgl.train", *args]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*train, "--out", str(whole)], check=True, capture_output=True)
    kill_when(cut / "fold1" / "last.pt", [*train, "--out", str(cut)])
    assert not (cut / "metrics.json").exists(), "the run finished before it could be killed"
    torch.load(cut / "fold1" / "last.pt", weights_only=True)  # the checkpoint on disk is whole, tensors only
    subprocess.run([sys.executable, "-m", "genen_dgl.train", "--resume", "--out", str(cut)], check=True,
                   capture_output=True)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, cut))
    if sampler != "neighbor":
        assert a["folds"] == b["folds"] and a["summary"] == b["summary"]
    else:
        assert a["folds"][0]["epochs_run"] == b["folds"][0]["epochs_run"] == 10
        assert abs(a["summary"]["auc_mean"] - b["summary"]["auc_mean"]) < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gcn", "gat"])
@pytest.mark.parametrize("task", ["membrane", "localization"])
def test_gnn_beats_the_feature_baseline(sample_spec, tmp_path, model, task):
    """The quality bar: on go_ppi, message passing beats logistic regression on the features."""
    m = train(sample_spec, tmp_path / "run", "--model", model, "--task", task, "--folds", "3", "--epochs", "25")
    assert m["summary"]["auc_mean"] > m["baselines"]["text"]["summary"]["auc_mean"] + 0.05


def test_seeds_baselines_and_every_gene_scored(sample_spec, tmp_path):
    """--seeds 2 repeats the folds; baselines share the splits; scores.csv ranks every gene."""
    m = train(sample_spec, tmp_path / "run", "--folds", "2", "--seeds", "2", "--epochs", "3", "--hidden", "16",
              "--sampler", "full")
    assert [(r["seed"], r["fold"]) for r in m["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert m["summary"]["auc_n"] == 4 and m["positive_class"] == m["classes"][1]
    for name, b in m["baselines"].items():
        assert [(f["seed"], f["fold"]) for f in b["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert m["comparisons"][name]["pairs"] == 4
        assert m["comparisons"][name]["mean_difference"] == pytest.approx(
            m["summary"]["auc_mean"] - b["summary"]["auc_mean"])
    for d in ("fold0", "fold1", "seed1-fold0", "seed1-fold1", "refit"):  # --keep-checkpoints best: no last.pt
        assert (tmp_path / "run" / d / "best.pt").exists() and not (tmp_path / "run" / d / "last.pt").exists()
    history = pd.read_csv(tmp_path / "run/history.csv")
    assert {"seed", "fold", "epoch", "loss", "val_loss", "val_auc"} <= set(history.columns)
    assert len(history) == sum(r["epochs_run"] for r in m["folds"])
    preds = pd.read_csv(tmp_path / "run/predictions.csv")
    assert preds.groupby("seed")["gene"].nunique().tolist() == [m["labelled_genes"]] * 2
    scores = pd.read_csv(tmp_path / "run/scores.csv", dtype={"label": str}, keep_default_na=False)
    genes = (tmp_path / "run/embeddings.genes.txt").read_text().split()
    assert sorted(scores["gene"]) == sorted(genes) and scores["rank"].tolist() == list(range(1, len(genes) + 1))
    assert scores["labelled"].sum() == m["labelled_genes"] and (scores["score"].diff().dropna() <= 0).all()
    oof = pd.read_csv(tmp_path / "run/embeddings.oof.genes.csv")
    assert len(oof) == m["labelled_genes"] and np.load(tmp_path / "run/embeddings.oof.npy").shape == (len(oof), 16)
    assert "refit" in m["embeddings"]["model"]
