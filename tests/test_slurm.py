"""The distributed job script under a real SLURM cluster (``.ci/slurm-up.sh`` starts a
one-node one). Skipped where ``sbatch`` is not on PATH or the cluster is not up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genen_dgl.distributed.launch import leftovers
from genen_dgl.partition import main as partition

ROOT = Path(__file__).resolve().parents[1]
UP_STATES = {"idle", "mixed", "allocated", "completing"}


def cluster_up() -> str | None:
    """Why SLURM cannot run jobs here, or None when it can."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    states = {s.strip("*~#!%$@^-") for s in out.stdout.split()}
    if not states & UP_STATES:
        return f"no SLURM node is up (states: {sorted(states) or 'none'})"
    return None


pytestmark = pytest.mark.skipif(cluster_up() is not None, reason=cluster_up() or "")


@pytest.mark.slow
def test_distributed_job_script_under_sbatch(sample_spec, tmp_path):
    """2 partitions, 2 SLURM tasks on one node, 1 trainer each; metrics.json as a
    single-machine run's, per-task logs, and nothing left running afterwards."""
    parts, out, logs = tmp_path / "parts", tmp_path / "run", tmp_path / "logs"
    assert partition(["--data", str(sample_spec), "--num-parts", "2", "--out", str(parts)]) == 0
    logs.mkdir()
    env = {**os.environ, "PARTS": str(parts), "OUT": str(out), "TRAINERS": "1", "TIMEOUT": "240",
           "PYTHON": sys.executable, "LOG_DIR": str(logs), "GENEN_DGL_REPO": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = ["sbatch", "--wait", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--mem=0",
           "--time=00:10:00", f"--output={logs}/%x-%j.out", f"--chdir={ROOT}", "jobs/train-dist.sbatch",
           "--epochs", "3", "--folds", "2", "--hidden", "32"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as err:  # do not leave the job running
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        if out.strip():
            subprocess.run(["scancel", out.strip().split(";")[0]], check=False)
        raise
    job = proc.stdout.strip().split(";")[0]
    task_logs = sorted(logs.glob(f"genen-dist-{job}-*.out"))
    text = "\n".join(p.read_text()[-3000:] for p in sorted(logs.iterdir()))
    assert proc.returncode == 0, proc.stderr + text
    assert [p.name for p in task_logs] == [f"genen-dist-{job}-0.out", f"genen-dist-{job}-1.out"]
    assert "[trainer 0]" in task_logs[0].read_text() and "[server 1]" in task_logs[1].read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and 0.5 < metrics["summary"]["auc_mean"] <= 1.0
    assert set(metrics["baselines"]) == {"text", "ppi_smoothed", "go_annotations", "lp_ppi", "lp_go"}
    assert "auc_mean" in metrics["baselines"]["text"]["summary"] and metrics["distributed"]["world_size"] == 2
    assert leftovers("genen") == ([], [])
