"""``--precision fp32|tf32|bf16``: one option, checked like the others, stored with the run,
and bf16 training (autocast) as good as fp32 on the sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn import functional as F

from genen_dgl.precision import autocast, set_matmul_precision
from genen_dgl.train import main as train_main

# minibatches through the trainer's step (the device sampler: reproducible), full-graph prediction
ARGS = ["--sampler", "device", "--folds", "2", "--epochs", "20", "--hidden", "32", "--no-refit", "--threads", "2"]


def train(spec: Path, out: Path, *args: str) -> dict:
    assert train_main(["--data", str(spec), "--out", str(out), *ARGS, *args]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def fp32_run(sample_spec, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fp32") / "run"
    return out, train(sample_spec, out, "--precision", "fp32")


def test_bf16_trains_as_well_as_fp32(sample_spec, tmp_path, fp32_run):
    _, fp32 = fp32_run
    assert fp32["summary"]["auc_mean"] > 0.8
    bf16 = train(sample_spec, tmp_path / "bf16", "--precision", "bf16")
    assert abs(bf16["summary"]["auc_mean"] - fp32["summary"]["auc_mean"]) <= 0.01, (bf16["summary"], fp32["summary"])


def test_tf32_on_the_cpu_is_fp32(sample_spec, tmp_path, fp32_run):
    if torch.cuda.is_available():
        pytest.skip("trains on the GPU here, where tf32 differs")
    _, fp32 = fp32_run
    tf32 = train(sample_spec, tmp_path / "tf32", "--precision", "tf32")
    assert tf32["folds"] == fp32["folds"]


def test_precision_is_stored_and_resume_compares_it(fp32_run, capsys):
    out, _ = fp32_run
    assert yaml.safe_load((out / "config.yaml").read_text())["precision"] == "fp32"
    capsys.readouterr()
    assert train_main(["--resume", "--out", str(out), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision: 'fp32' -> 'bf16'" in err[0], err


def test_unknown_precision_is_one_line(sample_spec, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--data", str(sample_spec), "--out", str(tmp_path / "run"), "--precision", "fp16"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision" in err[0] and "'fp16'" in err[0], err
    assert all(p in err[0] for p in ("fp32", "tf32", "bf16")), err
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"precision": "fp16"}))
    assert train_main(["--data", str(sample_spec), "--out", str(tmp_path / "run"), "--config", str(config)]) == 2
    assert "precision = 'fp16': expected one of fp32, tf32, bf16" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_precision_settings():
    try:
        set_matmul_precision("tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_matmul_precision("fp32")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        set_matmul_precision("fp32")
    x, w = torch.randn(4, 3), torch.randn(2, 3)
    with autocast("bf16", "cpu"):
        assert F.linear(x, w).dtype == torch.bfloat16
    with autocast("fp32", "cpu"), autocast("tf32", torch.device("cpu")):
        assert F.linear(x, w).dtype == torch.float32
