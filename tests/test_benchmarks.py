"""The benchmark scripts run end to end and record what BENCHMARKS.md reads (no timings
are checked here: those belong to the benchmark runs themselves)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("model,sampler", [("gcn", "neighbor"), ("gat", "device"), ("gcn", "full")])
def test_throughput_rows(sample_spec, tmp_path, model, sampler):
    out = tmp_path / "rows.jsonl"
    run("benchmarks/throughput.py", "--data", str(sample_spec), "--model", model, "--sampler", sampler,
        "--threads", "1", "--warmup", "1", "--max-batches", "2", "--hidden", "16", "--out", str(out), "--tag", "t")
    rows = {r["impl"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"genen", "dgl.nn"}
    genen, ref = rows["genen"], rows["dgl.nn"]
    assert genen["config"]["model"] == model and genen["config"]["sampler"] == sampler
    assert "benchmarks/throughput.py" in genen["command"] and genen["machine"]["cores"] >= 1
    assert set(genen["stages_s"]) == {"sample", "convert", "copy", "gather", "forward", "backward"}
    assert genen["batches"] == ref["batches"] == 2
    # the same seeds through the same sampler: the same sampled edges (DGL's blocks carry no self-loops)
    if sampler == "neighbor":
        assert genen["edges_per_batch"] == ref["edges_per_batch"] > 0
    assert genen["speedup_vs_dgl_nn"] == pytest.approx(ref["batch_s_mean"] / genen["batch_s_mean"], rel=1e-2)
    report = run("benchmarks/report.py", "--throughput", str(out), "--scaling", str(tmp_path / "none.jsonl"),
                 "--tag", "t")
    assert report.count(f"| {model} {sampler} cpu") == 4  # two rows in the table, two in the stages


def test_sampling_only_rows(sample_spec, tmp_path):
    out = tmp_path / "rows.jsonl"
    run("benchmarks/throughput.py", "--data", str(sample_spec), "--sampling-only", "--threads", "1",
        "--warmup", "0", "--max-batches", "2", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["impl"] for r in rows] == ["sampler: DGL NeighborSampler (blocks)",
                                         "sampler: DGL NeighborSampler + to_message_block",
                                         "sampler: DeviceBatches (torch ops)"]
    assert all(r["bench"] == "sampling" and r["edges_per_batch"] > 0 for r in rows)
