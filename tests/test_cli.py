"""The training command as a user meets it: options checked before anything is written,
resume that refuses a different run, Ctrl-C, progress without a terminal, and what a run
leaves on disk."""

from __future__ import annotations

import json
import os
import shutil
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

from genen_dgl.config import OPTIONS, TrainConfig, build_parser
from genen_dgl.train import main as train_main

SMALL = ["--folds", "2", "--epochs", "3", "--hidden", "16", "--batch-size", "64", "--threads", "1"]


def run(spec: Path, out: Path, *args: str) -> int:
    return train_main(["--data", str(spec), "--out", str(out), *args])


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--epochs", "-1"], "argument --epochs: expected an integer >= 1, got '-1'"),
    (["--patience", "0"], "argument --patience: expected an integer >= 1"),
    (["--layers", "0"], "argument --layers: expected an integer >= 1"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
    (["--dropout", "1.5"], "argument --dropout: expected a number >= 0 and < 1, got '1.5'"),
    (["--lr", "-5"], "argument --lr: expected a number > 0"),
    (["--folds", "1"], "argument --folds: expected an integer >= 2"),
    (["--val-share", "1"], "argument --val-share: expected a number > 0 and < 1"),
    (["--mask-rate", "1"], "argument --mask-rate: expected a number >= 0 and < 1"),
    (["--fanouts", "10,0,10"], "argument --fanouts: expected integers >= 1 (or -1: every neighbour)"),
    (["--fanouts", "10,10"], "fanouts [10, 10]: expected one per layer (3)"),
    (["--fanout-rel", "nosuchrel=5,5,5"], "--fanout-rel nosuchrel: no such relation in this graph; relations: "),
    (["--fanout-rel", "interacts=5,5"], "fanout_rel interacts=[5, 5]: expected one fanout per layer (3)"),
    (["--model", "gat", "--edge-weight", "fixed"], "GAT has no edge weights"),
    (["--sampler", "nope"], "argument --sampler: invalid choice: 'nope'"),
    (["--task", "nosuchtask"], "unknown task 'nosuchtask'"),
    (["--cuda-graph"], "cuda_graph: replays steps of the device sampler; expected sampler = device, got 'neighbor'"),
    (["--cuda-graph", "--sampler", "device", "--device", "cpu"], "cuda_graph: CUDA graphs need a GPU; the model runs on cpu"),
    (["--text-column", "Summary"], "--text-column: describes a --labels file; none is given"),
    (["--labels", "no/such.csv"], "such.csv: --labels names a missing file"),
    (["--labels", "my.csv", "--task", "membrane"], "task = 'membrane': --labels trains the task 'my' (the file's name)"),
    (["--type", "binary", "--labels", "x.csv", "--gene-column", "G"], "x.csv: --labels names a missing file"),
])
def test_nonsense_is_refused_in_one_line_and_leaves_nothing(sample_spec, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) if args[0] in ("--sampler",) or "argument" in message else _nothing():
        code = run(sample_spec, tmp_path / "run", *args)
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "run").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_parse_errors_exit_2():
    with pytest.raises(SystemExit) as stop:
        build_parser("x", "").parse_args(["--epochs", "0"])
    assert stop.value.code == 2


def test_config_file_values_are_checked_by_the_same_table(sample_spec, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dropout": 1.5}))
    assert run(sample_spec, tmp_path / "run", "--config", str(config)) == 2
    assert "dropout = 1.5: expected a number >= 0 and < 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_missing_dataset_is_reported_before_any_run_directory(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")  # a finished run there
    assert train_main(["--data", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "dataset spec not found" in err and "already has results" not in err


def test_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser("python -m genen_dgl.train", "").parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    defaults = TrainConfig()
    for name in ("epochs", "batch_size", "lr", "hidden", "dropout", "patience", "folds"):
        assert f"(default: {getattr(defaults, name)})" in text, name
    assert "(default: GCN 3, GAT 2, the paper's best)" in text
    assert "(default:runs/DATASET-GRAPH-MODEL-TASK-SAMPLER)" in text.replace(" ", "")  # argparse wraps at hyphens
    assert set(OPTIONS) == {f.name for f in __import__("dataclasses").fields(TrainConfig)}


def test_config_yaml_is_resolved_and_resume_refuses_another_run(sample_spec, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(sample_spec, out, *SMALL) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["task"] == "membrane" and saved["data"] == str(sample_spec.resolve())
    assert saved["layers"] == 3 and saved["fanouts"] == [10, 10, 10] and saved["edge_weight"] == "none"
    assert saved["out"] == str(out)
    capsys.readouterr()
    # a different request on --resume: one line naming what differs
    assert train_main(["--resume", "--out", str(out), "--epochs", "5", "--model", "gat"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs: 3 -> 5" in err[0] and "model: 'gcn' -> 'gat'" in err[0], err
    other = sample_spec.parent.parent / "other"
    other.mkdir(exist_ok=True)
    (other / "dataset.yaml").write_text(f"base: {sample_spec}\nname: other\n")
    assert train_main(["--resume", "--out", str(out), "--data", str(other / "dataset.yaml")]) == 2
    assert "data: " in capsys.readouterr().err
    # the same request resumes (a finished run: reloaded, same numbers); device may change
    before = json.loads((out / "metrics.json").read_text())
    assert train_main(["--resume", "--out", str(out), "--device", "cpu"]) == 0
    after = json.loads((out / "metrics.json").read_text())
    assert after["folds"] == before["folds"] and after["summary"] == before["summary"]
    # the dataset's inputs changed since: refused
    label_file = Path(yaml.safe_load(sample_spec.read_text())["tasks"]["membrane"]["file"])
    label_file = sample_spec.parent / label_file
    os.utime(label_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert train_main(["--resume", "--out", str(out)]) == 2
    assert "input files changed" in capsys.readouterr().err


def test_default_run_directory_names_the_run(sample_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--data", str(sample_spec), *SMALL, "--sampler", "full", "--graph", "ppi"]) == 0
    assert (tmp_path / "runs" / "sample-ppi-gcn-membrane-full" / "metrics.json").exists()


def test_checkpoints_kept_and_history(sample_spec, tmp_path):
    for keep, files in (("best", {"best.pt"}), ("last", {"best.pt", "last.pt"}), ("none", set())):
        out = tmp_path / keep
        assert run(sample_spec, out, *SMALL, "--keep-checkpoints", keep, "--no-refit") == 0
        for k in (0, 1):
            assert {p.name for p in (out / f"fold{k}").glob("*.pt")} == files, keep
    history = pd.read_csv(tmp_path / "best" / "history.csv")
    assert list(history.columns[:5]) == ["seed", "fold", "epoch", "loss", "val_loss"] and "val_auc" in history
    assert len(history) == 2 * 3


def test_outputs_use_class_names_and_live_embeddings(sample_spec, tmp_path):
    out = tmp_path / "run"
    assert run(sample_spec, out, "--folds", "2", "--epochs", "5", "--threads", "1") == 0
    m = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv", dtype=str)
    assert set(preds["y_true"]) == set(m["classes"]) and set(preds["y_pred"]) <= set(m["classes"])
    emb = np.load(out / "embeddings.npy")
    dead = float((np.abs(emb).max(0) == 0).mean())
    assert emb.shape[1] == 256 and dead < 0.05, dead  # pre-activation: no unit is zero for every gene
    assert "before its activation" in m["embeddings"]["layer"]


def test_same_command_same_numbers_with_deterministic(sample_spec, tmp_path):
    args = [*SMALL, "--deterministic", "--sampler", "neighbor", "--no-refit"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(sample_spec, a, *args) == 0 and run(sample_spec, b, *args) == 0
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["folds"] == mb["folds"] and ma["summary"] == mb["summary"]
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()


def test_ctrl_c_stops_in_one_line_and_resumes(sample_spec, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genen_dgl.train", "--data", str(sample_spec), "--out", str(out), "--folds", "2",
           "--epochs", "100000", "--patience", "100000", "--hidden", "16", "--sampler", "full", "--threads", "1"]
    # (far more epochs than it gets: 200 full-graph epochs on the sample now take about a second)
    # SIGINT as a terminal delivers it: a child inherits an *ignored* SIGINT (Python then
    # installs no KeyboardInterrupt handler), and in CI's pytest process it was ignored
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (out / "fold0" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted after fold0 epoch ") and f"--resume --out {out}" in last, last
    state = torch.load(out / "fold0" / "last.pt", weights_only=True)  # the checkpoint on disk is whole
    assert state["epoch"] >= 1
    assert not (out / "metrics.json").exists()


def test_progress_lines_without_a_terminal(sample_spec, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "genen_dgl.train", "--data", str(sample_spec), "--out",
                           str(tmp_path / "run"), "--folds", "2", "--epochs", "12", "--patience", "100",
                           "--hidden", "16", "--sampler", "full", "--threads", "1", "--no-refit"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fold0 epoch 0/12: loss " in proc.stderr and "fold0 epoch 10/12: loss " in proc.stderr
    assert "val_loss " in proc.stderr and "val_auc " in proc.stderr


def test_version_names_the_package_and_the_checkout_commit(capsys):
    from genen_dgl import __version__
    from genen_dgl.provenance import git_commit

    with pytest.raises(SystemExit) as stop:
        build_parser("python -m genen_dgl.train", "").parse_args(["--version"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out.strip()
    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists() and shutil.which("git"):
        described = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                   text=True).stdout.strip()
        assert git_commit() == described and printed == f"genen-dgl {__version__} ({described})"
    else:
        assert printed == f"genen-dgl {__version__}"
