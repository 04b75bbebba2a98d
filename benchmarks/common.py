"""Shared pieces of the benchmark scripts: machine info, memory peaks, stage timers, the
DGL reference model (``dgl.nn.HeteroGraphConv`` over ``GraphConv`` / ``GATConv``), and
dataset lookup. Not part of the package: ``python benchmarks/<script>.py`` from the repo root.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout, package not installed
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from genen_dgl.dgl_compat import dgl  # noqa: E402

# generated datasets, partitions and logs: outside the repo, several GB at paper scale
SCRATCH = Path(os.environ.get("GENEN_DGL_BENCH_DIR", "/tmp/bench-data"))


# -- machine -------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _mem_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return float("nan")


def machine_info() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gb": _mem_total_gb(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "loadavg_start": list(os.getloadavg()),
    }


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def append_jsonl(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


# -- memory --------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size (VmHWM) of this process, MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- timing --------------------------------------------------------------------------------
class Stages:
    """Wall time per named stage, synchronising the GPU around each one. ``mark``: each
    stage also a profiler range ``stage::NAME`` (inside the synchronisations), so that
    an operator count can keep to the stages (``opcount.count_ops(region="stage::")``)."""

    def __init__(self, device: torch.device, mark: bool = False):
        self.cuda = torch.device(device).type == "cuda"
        self.mark = mark
        self.times: dict[str, float] = {}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def __call__(self, name: str):
        self.sync()
        start = time.perf_counter()
        try:
            if self.mark:
                with torch.profiler.record_function(f"stage::{name}"):
                    yield
            else:
                yield
        finally:
            self.sync()
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


# -- the DGL reference model ----------------------------------------------------------------
class DGLHeteroModel(nn.Module):
    """GenenGNN's architecture with DGL's own modules: HeteroGraphConv (sum over relations)
    of GraphConv (norm="both", edge weights) or GATConv, same layers, widths, activations."""

    def __init__(self, model: str, in_dim: int, hidden: int, out_dim: int, num_layers: int,
                 etypes, heads: int = 4, dropout: float = 0.5, target: str = "gene"):
        super().__init__()
        self.model, self.target, self.dropout, self.num_layers = model, target, dropout, num_layers
        names = [e[1] for e in etypes]
        self.layers = nn.ModuleList()
        dim = in_dim
        for i in range(num_layers):
            last = i == num_layers - 1
            if model == "gcn":
                width = out_dim if last else hidden
                mods = {n: dgl.nn.GraphConv(dim, width, norm="both", allow_zero_in_degree=True) for n in names}
                dim = width
            else:
                width = out_dim if last else hidden // heads
                mods = {n: dgl.nn.GATConv(dim, width, heads, allow_zero_in_degree=True) for n in names}
                dim = width * heads
            self.layers.append(dgl.nn.HeteroGraphConv(mods, aggregate="sum"))

    def forward(self, blocks, x, edge_weight: dict | None = None):
        h = x
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            kwargs = {}
            if self.model == "gcn" and edge_weight:
                kwargs = {e[1]: {"edge_weight": w(block, e) if callable(w) else w}
                          for e, w in edge_weight.items() if e in block.canonical_etypes}
            h = layer(block, h, mod_kwargs=kwargs)
            if i < self.num_layers - 1:
                act = F.relu if self.model == "gcn" else F.elu
                h = {t: F.dropout(act(v.flatten(1)), self.dropout, self.training) for t, v in h.items()}
        out = h[self.target]
        return out.mean(1) if out.dim() == 3 else out


def dgl_edge_weights(graph, weights: dict) -> dict:
    """Per-block edge-weight functions (parent-edge-id lookup) for DGLHeteroModel."""
    def lookup(w):
        def f(block, etype):
            if block.is_block:
                return w[block.edges[etype].data[dgl.EID]]
            return w
        return f
    return {e: lookup(w) for e, w in weights.items()}
