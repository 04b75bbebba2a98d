"""The benchmark scripts run end to end and record what BENCHMARKS.md reads (no timings
are checked here: those belong to the benchmark runs themselves)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]


def _opcount():
    spec = importlib.util.spec_from_file_location("opcount", REPO / "benchmarks" / "opcount.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
                                         "sampler: DGL NeighborSampler + reading the blocks' relations",
                                         "sampler: DGL NeighborSampler + to_message_block",
                                         "sampler: to_message_block alone (per block set)",
                                         "sampler: floor: reading the blocks + one copy per entry array",
                                         "sampler: DeviceBatches (torch ops)"]
    assert all(r["bench"] == "sampling" and r["edges_per_batch"] > 0 for r in rows)


def test_count_ops_counts_top_level_operators():
    """Three top-level ops (linear, relu, sum), each with nested aten ops inside (linear ->
    t, addmm, ...): three counted; with backward, the autograd engine's ops count too;
    with a region, only what runs inside its ranges."""
    opcount = _opcount()
    w, b, x = torch.randn(3, 4, requires_grad=True), torch.randn(3, requires_grad=True), torch.randn(5, 4)

    def three():
        return torch.relu(F.linear(x, w, b)).sum()

    three()  # warm-up
    with torch.no_grad():
        counts, y = opcount.count_ops(three)
    assert counts["ops"] == 3 and counts["aten_events"] > 3 and y.ndim == 0
    assert counts["cuda_launches"] is None and counts["cuda_syncs"] is None
    with_backward, _ = opcount.count_ops(lambda: three().backward())
    assert with_backward["ops"] > 3 + 3  # forward, ones_like for the seed gradient, backward ops

    def marked():
        torch.zeros(3).add_(1)  # two ops outside the region
        with torch.profiler.record_function("stage::f"):
            return three()

    with torch.no_grad():
        inside, _ = opcount.count_ops(marked, region="stage::")
        everything, _ = opcount.count_ops(marked)
    assert inside["ops"] == 3 and everything["ops"] == 5 and inside["by_region"]["f"]["ops"] == 3


def test_gpu_busy_is_the_union_of_device_activity():
    """Kernels and copies count once where they overlap; annotations (stage ranges) and host
    events do not count."""
    from types import SimpleNamespace as E

    from torch.autograd import DeviceType
    opcount = _opcount()

    def ev(name, a, b, device=DeviceType.CUDA, note=False):
        return E(name=name, time_range=E(start=a, end=b), device_type=device, is_user_annotation=note)

    events = [ev("gemm", 0, 10), ev("copy", 5, 12), ev("spmm", 20, 25), ev("stage::forward", 0, 40, note=True),
              ev("aten::mm", 0, 40, DeviceType.CPU), ev("gemm", 30, 31)]
    assert opcount.busy_us(events) == 12 + 5 + 1


def test_regions_are_the_host_ranges():
    """A range's device-side copy lasts until its kernels end: a synchronisation the host
    makes after the range, while the device still runs it, is not the range's."""
    from types import SimpleNamespace as E

    from torch.autograd import DeviceType
    opcount = _opcount()

    def ev(name, a, b, device=DeviceType.CPU):
        return E(name=name, time_range=E(start=a, end=b), device_type=device, cpu_parent=None)

    events = [ev("stage::step", 0, 10), ev("stage::step", 2, 30, DeviceType.CUDA), ev("cudaLaunchKernel", 5, 6),
              ev("aten::mm", 4, 8), ev("cudaDeviceSynchronize", 20, 31)]
    counts = opcount.count_events(events, "stage::")
    assert counts["by_region"]["step"]["cuda_launches"] == 1 and counts["ops"] == 1
    assert counts["cuda_syncs"] == 0


def test_throughput_counts_ops(sample_spec, tmp_path):
    out = tmp_path / "rows.jsonl"
    stdout = run("benchmarks/throughput.py", "--data", str(sample_spec), "--sampler", "device", "--threads", "1",
                 "--warmup", "1", "--max-batches", "1", "--hidden", "16", "--count-ops", "--out", str(out))
    rows = {r["impl"]: r for r in map(json.loads, out.read_text().splitlines())}
    for row in rows.values():
        assert row["ops_per_step"] > 0 and row["aten_events_per_step"] >= row["ops_per_step"]
        assert row["cuda_launches_per_step"] is None  # on the CPU
        assert sum(row["ops_by_stage"].values()) == row["ops_per_step"] and row["ops_by_stage"]["backward"] > 0
    assert stdout.count("torch ops") == 2
    png = tmp_path / "ops.png"
    assert run("benchmarks/report.py", "--throughput", str(out), "--plot-ops", str(png)).strip().endswith("ops.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
