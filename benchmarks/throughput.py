"""Training throughput of genen-dgl against the same model built from dgl.nn (issue 6).

``python benchmarks/throughput.py [--data DATASET.yaml | --scale S] [--model gcn|gat]
[--sampler neighbor|full|device] ...`` measures one configuration on the paper-scale
synthetic graph and appends one JSON line per implementation to ``--out``:

* ``genen``: the project's pipeline: DGL's ``NeighborSampler`` -> ``to_message_block``
  -> ``Batch.to(device)`` -> feature gather -> ``GenenGNN`` -> Adam step (``--sampler
  device``: ``DeviceBatches`` instead of the first two; ``full``: the whole-graph block).
* ``dgl.nn``: the same layers, widths, activations and sampler with DGL's own modules
  (``HeteroGraphConv`` over ``GraphConv(norm="both")`` / ``GATConv``) on the DGL blocks,
  on the same seeds, measured in the same invocation, batch by batch alternately (which
  goes first alternates too) so that load from other processes hits both alike.

Per batch the stages are timed synchronously (``torch.cuda.synchronize`` around each on a
GPU): sampling, conversion to MessageBlocks, host->device copy, feature gather, forward,
backward + optimiser step; wall and process CPU time. After ``--warmup`` batches,
``--max-batches`` are measured (a paper-scale epoch is ~60 batches of ~15 s on 2 cores);
the epoch time is then the mean batch time x batches per epoch (``--epochs N`` measures
whole epochs instead). ``--pipeline`` also times the trainer's own loop (``epoch(seed)``
with its prefetch thread). ``--sampling-only`` times only the samplers.

``--precision fp32|tf32|bf16`` as the trainer's (:mod:`genen_dgl.precision`: the forward
pass under bfloat16 autocast for bf16). ``--count-ops``: after the timed batches, one more
step per implementation (the first measured batch's seeds) under ``torch.profiler``,
counting the torch operators, and on CUDA the kernel launches and synchronising calls, of
its stages (:mod:`opcount`; the benchmark's own bookkeeping between stages is not counted).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO, SCRATCH, DGLHeteroModel, Stages, append_jsonl, command_line, dgl_edge_weights,
    machine_info, peak_rss_mb, reset_peak_rss,
)
from opcount import count_ops  # noqa: E402

import torch  # noqa: E402

from genen_dgl.config import TrainConfig, parse_ints  # noqa: E402
from genen_dgl.data.graph import load_graph  # noqa: E402
from genen_dgl.dgl_compat import dgl  # noqa: E402
from genen_dgl.errors import InputError  # noqa: E402
from genen_dgl.evaluation import split_folds  # noqa: E402
from genen_dgl.host_memory import keep_freed_memory  # noqa: E402
from genen_dgl.nn.model import GenenGNN  # noqa: E402
from genen_dgl.precision import PRECISIONS, autocast, set_matmul_precision  # noqa: E402
from genen_dgl.sampling.base import seed_chunks  # noqa: E402
from genen_dgl.sampling.blocks import fixed_weights, parse_fanouts, to_message_block  # noqa: E402
from genen_dgl.sampling.device import DeviceBatches  # noqa: E402
from genen_dgl.sampling.neighbor import NeighborBatches  # noqa: E402
from genen_dgl.training.objective import task_loss  # noqa: E402
from genen_dgl.training.optimise import OptimiserStep, adam  # noqa: E402
from genen_dgl.training.replay import GraphedStep  # noqa: E402
from genen_dgl.training.sources import SampledSteps  # noqa: E402

STAGES = ("sample", "convert", "copy", "gather", "forward", "backward")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "throughput.jsonl"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/throughput.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="dataset.yaml (default: the --scale dataset)")
    src.add_argument("--scale", type=float, default=1.0,
                     help=f"paper node sets x S edges, generated under {SCRATCH} ($GENEN_DGL_BENCH_DIR) if missing")
    p.add_argument("--graph", default="go_ppi", choices=["ppi", "go", "go_ppi"])
    p.add_argument("--task", help="task of the dataset (default: its first)")
    p.add_argument("--model", default="gcn", choices=["gcn", "gat"])
    p.add_argument("--sampler", default="neighbor", choices=["neighbor", "full", "device"])
    p.add_argument("--fanouts", type=parse_ints, help="per layer (default 10 each, as the trainer)")
    p.add_argument("--layers", type=int, help="default: GCN 3, GAT 2 (the trainer's)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--edge-weight", choices=["none", "fixed"], help="default: fixed for GCN, none for GAT")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's malloc as it is (the trainer keeps freed host memory: genen_dgl.host_memory)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="as the trainer's: fp32; tf32 (TF32 matmuls on CUDA, on the CPU the same as fp32); "
                        "bf16 (forward under bfloat16 autocast)")
    p.add_argument("--cuda-graph", action="store_true", help="--sampler device on a GPU: replay each whole "
                   "training step as one CUDA graph (genen_dgl.training.replay), timed as one stage")
    p.add_argument("--count-ops", action="store_true", help="also count one step's torch operators (and on "
                   "CUDA kernel launches and syncs) under torch.profiler")
    p.add_argument("--profile-table", type=Path, help="with --count-ops: append the counted step's profiler "
                   "table (40 costliest operators) to this file")
    p.add_argument("--warmup", type=int, default=2, help="batches (or full-graph steps) not measured")
    p.add_argument("--max-batches", type=int, default=10, help="measured batches (full: steps)")
    p.add_argument("--epochs", type=int, help="measure this many whole epochs instead of --max-batches")
    p.add_argument("--no-baseline", action="store_true", help="skip the dgl.nn reference")
    p.add_argument("--pipeline", action="store_true", help="also time the trainer's prefetching loop")
    p.add_argument("--sampling-only", action="store_true", help="time only DGL's sampler, +to_message_block, "
                   "and DeviceBatches")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="free text stored with the rows")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines file to append to")
    return p


def dataset_for_scale(scale: float) -> Path:
    """``SCRATCH/scale{S}/dataset.yaml``, generated on first use (outside the repo)."""
    out = SCRATCH / f"scale{scale:g}"
    spec = out / "dataset.yaml"
    if not spec.exists():
        print(f"generating the x{scale:g} dataset in {out} ...", flush=True)
        subprocess.run([sys.executable, "-m", "genen_dgl.data.sample", "--out", str(out), "--scale", str(scale)],
                       check=True, cwd=REPO)
    return spec


class Workload:
    """Graph, seed pool (training genes of fold 0, as the trainer's), labels, features."""

    def __init__(self, args):
        t0 = time.perf_counter()
        spec = args.data or dataset_for_scale(args.scale)
        self.spec = Path(spec)
        self.data = load_graph(self.spec, args.graph)
        self.graph = g = self.data.graph
        nodes, labels = self.data.labels(args.task)
        self.kind = labels.kind
        self.out_dim = 1 if labels.kind == "regression" else labels.num_classes
        fold = split_folds(labels.values, labels.kind, 5, args.seed)[0]
        self.train = nodes[fold.train]
        y = np.zeros(g.num_nodes("gene"), dtype=labels.values.dtype)
        y[nodes] = labels.values
        self.device = torch.device(args.device)
        self.y = torch.as_tensor(y).to(self.device)
        self.feats = {t: g.nodes[t].data["feat"].to(self.device) for t in g.ntypes}
        self.weights = fixed_weights(g, args.edge_weight)
        self.load_s = time.perf_counter() - t0
        g.create_formats_()  # DGL builds CSC/CSR lazily; do it before timing

    def loss(self, out, seeds):
        return task_loss(self.kind, out, self.y[seeds])

    def describe(self) -> dict:
        g = self.graph
        return {"dataset": str(self.spec), "nodes": {t: g.num_nodes(t) for t in g.ntypes},
                "edges": int(g.num_edges()), "ppi_edges": int(g.num_edges(("gene", "interacts", "gene")))
                if ("gene", "interacts", "gene") in g.canonical_etypes else 0,
                "feat_dim": int(self.feats["gene"].shape[1]), "train_seeds": int(len(self.train)),
                "kind": self.kind, "load_s": round(self.load_s, 2)}


# -- the two implementations -----------------------------------------------------------------
class Implementation:
    """A model of the workload's shape (``cls``: GenenGNN or DGLHeteroModel) and its Adam."""

    name: str

    def __init__(self, w: Workload, args, cls):
        self.w, self.args = w, args
        self.model = cls(args.model, w.feats["gene"].shape[1], args.hidden, w.out_dim, args.layers,
                         w.graph.canonical_etypes, args.heads).to(w.device)
        self.opt = adam(self.model.parameters(), lr=0.005, capturable=args.cuda_graph)

    def forward(self, *inputs):
        """The model's forward pass at ``--precision`` (bf16: under autocast)."""
        with autocast(self.args.precision, self.w.device):
            return self.model(*inputs)

    def optimise(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Genen(Implementation):
    name = "genen"

    def __init__(self, w: Workload, args, fanouts):
        super().__init__(w, args, GenenGNN)
        self.full = self.graphed = None
        if args.sampler == "device":
            self.batches = DeviceBatches(w.graph, w.train, fanouts, args.batch_size, w.weights, device=w.device)
            self.gen = torch.Generator(device=w.device).manual_seed(args.seed)
            # captured in the last warm-up batch
            self.graphed = GraphedStep(self.whole_step, [self.gen], max(args.warmup - 1, 1)) if args.cuda_graph else None
            self.inputs: dict[torch.Size, int] = {}  # input nodes per batch size (a replay runs no Python)
        elif args.sampler == "neighbor":
            self.batches = NeighborBatches(w.graph, w.train, fanouts, args.batch_size, w.weights)
        else:
            t0 = time.perf_counter()
            self.full = to_message_block(w.graph, w.weights).to(w.device)
            self.full_setup_s = time.perf_counter() - t0

    def whole_step(self, seeds: torch.Tensor) -> torch.Tensor:
        """Sample, gather, forward, loss, backward and Adam in one call (what ``--cuda-graph``
        captures): ``[loss, sampled edges]`` as one device tensor."""
        batch = self.batches.sample(seeds, self.gen)
        x = {t: self.w.feats[t][n] for t, n in batch.input_nodes.items()}
        loss = self.w.loss(self.forward(batch.blocks, x), batch.seeds)
        self.optimise(loss)
        self.inputs[seeds.shape] = sum(n.numel() for n in batch.input_nodes.values())  # the padded layout's
        return torch.stack([loss.detach().float(), sum(b.real_edges() for b in batch.blocks).float()])

    def step(self, seeds: torch.Tensor, st: Stages, bseed: int) -> dict:
        w = self.w
        if self.full is None and self.graphed is not None:
            seeds = seeds.to(w.device)
            with st("step"):
                out = self.graphed(seeds)
            loss, edges = out.tolist()
            return {"edges": int(edges), "inputs": self.inputs[seeds.shape], "loss": loss}
        if self.full is not None:
            blocks, x, out_nodes = [self.full] * self.args.layers, w.feats, seeds.to(w.device)
            with st("forward"):
                out = self.forward(blocks, x)[out_nodes]
                loss = w.loss(out, out_nodes)
            edges = int(self.full.real_edges()) * self.args.layers
            inputs = sum(self.full.num_src.values())
        else:
            if self.args.sampler == "device":
                with st("sample"):
                    batch = self.batches.sample(seeds, self.gen)
            else:
                with st("sample"):
                    dgl.seed(bseed)
                    sampled = self.batches.sample_blocks(seeds)
                with st("convert"):
                    batch = self.batches.convert(*sampled)
            with st("copy"):
                batch = batch.to(w.device)
            with st("gather"):
                x = {t: w.feats[t][n] for t, n in batch.input_nodes.items()}
            with st("forward"):
                out = self.forward(batch.blocks, x)
                loss = w.loss(out, batch.seeds)
            edges = sum(int(b.real_edges()) for b in batch.blocks)
            inputs = sum(n.numel() for n in batch.input_nodes.values())
        with st("backward"):
            self.optimise(loss)
        return {"edges": edges, "inputs": inputs, "loss": float(loss.detach())}

    def trainer_loop(self, n_batches: int, warmup: int, epoch_seed: int) -> tuple[list[float], int]:
        """The trainer's own steps, epoch after epoch: ``training.sources.SampledSteps`` over
        the sampler's (prefetching) epochs, run by ``training.optimise.OptimiserStep``, as
        ``FoldTrainer.train_epoch`` runs them; batch wall times."""
        w, times, seeds, i = self.w, [], 0, 0
        source = SampledSteps(self.batches, w.feats, w.y, w.device)
        step_fn = OptimiserStep(self.model, w.kind, lr=0.005, precision=self.args.precision)
        st = Stages(w.device)
        while len(times) < n_batches:
            start = time.perf_counter()
            for step in source.epoch(epoch_seed):
                step_fn(step)
                st.sync()
                now = time.perf_counter()
                if i >= warmup:
                    times.append(now - start)
                    seeds += len(step.targets)
                start, i = now, i + 1
                if len(times) >= n_batches:
                    break
            epoch_seed += 1
        return times, seeds


class DGLNN(Implementation):
    name = "dgl.nn"

    def __init__(self, w: Workload, args, fanouts):
        super().__init__(w, args, DGLHeteroModel)
        self.ew = dgl_edge_weights(w.graph, {e: v.to(w.device) for e, v in w.weights.items()})
        self.sampler = dgl.dataloading.NeighborSampler(fanouts)
        self.g_dev = w.graph.to(w.device) if args.sampler == "full" else None

    def step(self, seeds: torch.Tensor, st: Stages, bseed: int) -> dict:
        w = self.w
        if self.g_dev is not None:
            out_nodes = seeds.to(w.device)
            with st("forward"):
                out = self.forward([self.g_dev] * self.args.layers, w.feats, self.ew)[out_nodes]
                loss = w.loss(out, out_nodes)
            edges, inputs = w.graph.num_edges() * self.args.layers, w.graph.num_nodes()
        else:
            with st("sample"):
                dgl.seed(bseed)
                input_nodes, output_nodes, blocks = self.sampler.sample(w.graph, {"gene": seeds})
            with st("copy"):
                blocks = [b.to(w.device) for b in blocks]
                input_nodes = {t: n.to(w.device) for t, n in input_nodes.items()}
                out_nodes = output_nodes["gene"].to(w.device)
            with st("gather"):
                x = {t: w.feats[t][n] for t, n in input_nodes.items()}
            with st("forward"):
                out = self.forward(blocks, x, self.ew)
                loss = w.loss(out, out_nodes)
            edges = sum(b.num_edges() for b in blocks)
            inputs = sum(n.numel() for n in input_nodes.values())
        with st("backward"):
            self.optimise(loss)
        return {"edges": edges, "inputs": inputs, "loss": float(loss.detach())}


def dgl_has_cuda() -> bool:
    try:
        dgl.graph((torch.tensor([0]), torch.tensor([0]))).to("cuda")
        return True
    except Exception:  # noqa: BLE001  (DGL raises its own error types for a CPU-only build)
        return False


# -- measurement -------------------------------------------------------------------------------
class Tally:
    def __init__(self):
        self.wall: list[dict[str, float]] = []
        self.cpu: list[float] = []
        self.edges: list[int] = []
        self.inputs: list[int] = []
        self.seeds: list[int] = []
        self.peak_rss = 0.0
        self.peak_gpu = 0.0

    def summary(self, batches_per_epoch: int, full: bool) -> dict:
        totals = np.array([sum(s.values()) for s in self.wall])
        mean = float(totals.mean())
        stages = {k: round(float(np.mean([s.get(k, 0.0) for s in self.wall])), 4) for k in STAGES}
        sampling = stages["sample"] + stages["convert"]
        seeds = float(np.mean(self.seeds))
        edges = float(np.mean(self.edges))
        return {
            "batches": len(self.wall), "batch_s_mean": round(mean, 4), "batch_s_median": round(float(np.median(totals)), 4),
            "batch_s_min": round(float(totals.min()), 4), "batch_cpu_s_mean": round(float(np.mean(self.cpu)), 4),
            "seeds_per_s": round(seeds / mean, 2), "sampled_edges_per_s": round(edges / mean, 1),
            "sampler_edges_per_s": round(edges / sampling, 1) if sampling > 0 else None,
            "edges_per_batch": round(edges), "input_nodes_per_batch": round(float(np.mean(self.inputs))),
            "seeds_per_batch": round(seeds, 1), "stages_s": stages,
            "batches_per_epoch": batches_per_epoch,
            "epoch_s_est": round(mean * batches_per_epoch, 2),
            "peak_rss_mb": round(self.peak_rss, 1), "peak_gpu_mb": round(self.peak_gpu, 1) if self.peak_gpu else None,
        }


def run_step(impl, seeds, bseed, device, tally: Tally | None):
    st = Stages(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    cpu0 = time.process_time()
    info = impl.step(seeds, st, bseed)
    cpu = time.process_time() - cpu0
    if tally is not None:
        tally.wall.append(st.times)
        tally.cpu.append(cpu)
        tally.edges.append(info["edges"])
        tally.inputs.append(info["inputs"])
        tally.seeds.append(len(seeds))
        tally.peak_rss = max(tally.peak_rss, peak_rss_mb())
        if cuda:
            tally.peak_gpu = max(tally.peak_gpu, torch.cuda.max_memory_allocated() / 2**20)
    return st.times


def step_counts(impl, seeds, bseed, device, table: Path | None = None) -> dict:
    """One more training step of ``impl`` under the profiler: the torch operators (top-level
    and all ``aten::`` events) and, on CUDA, kernel launches and syncs, inside its stages;
    the top-level operators of each stage. ``table``: append the profiler's table of the
    step's 40 costliest operators to this file."""
    cuda = device.type == "cuda"
    counts, _ = count_ops(lambda: impl.step(seeds, Stages(device, mark=True), bseed), cuda=cuda, region="stage::",
                          table_rows=40 if table else 0)
    if table:
        with table.open("a") as f:
            f.write(f"== {impl.name}: {' '.join(sys.argv[1:])}\n{counts.pop('table')}\n")
    stages = counts.pop("by_region")
    return {**{f"{k}_per_step": v for k, v in counts.items()},
            "ops_by_stage": {stage: c["ops"] for stage, c in stages.items()}}


def epoch_batches(w: Workload, args, n: int) -> list[torch.Tensor]:
    """The first ``n`` batches of training seeds, epoch after epoch (epoch seeds
    ``args.seed``, ``args.seed + 1``, ...), in the order the batch iterators use."""
    out, epoch = [], 0
    while len(out) < n:
        out += seed_chunks(torch.as_tensor(w.train, dtype=torch.int64), args.batch_size, args.seed + epoch)
        epoch += 1
    return out[:n]


def measure(args, w: Workload, fanouts) -> list[dict]:
    impls = [Genen(w, args, fanouts)]
    if not args.no_baseline:
        if w.device.type == "cuda" and not dgl_has_cuda():
            print("dgl.nn reference skipped: this DGL build has no CUDA (the PyPI wheel is CPU-only; genen's "
                  "layers run on CUDA with it, DGL's own modules do not)", flush=True)
        elif args.model == "gat" and args.precision == "bf16":
            print("dgl.nn reference skipped: DGL's GATConv refuses bfloat16 features with float32 attention "
                  "(its edge softmax under autocast)", flush=True)
        else:
            impls.append(DGLNN(w, args, fanouts))
    tallies = {i.name: Tally() for i in impls}
    full = args.sampler == "full"
    per_epoch = 1 if full else math.ceil(len(w.train) / args.batch_size)
    if args.epochs:
        n = args.epochs * per_epoch
    else:
        n = args.max_batches
    chunks = epoch_batches(w, args, args.warmup + n) if not full else None
    train = torch.as_tensor(w.train)
    for i in range(args.warmup + n):
        seeds = train if full else chunks[i]
        order = impls if i % 2 == 0 else impls[::-1]
        for impl in order:
            times = run_step(impl, seeds, args.seed * 100_003 + i, w.device,
                             tallies[impl.name] if i >= args.warmup else None)
            print(f"  batch {i:3d} {'(warm-up) ' if i < args.warmup else ''}{impl.name:7s} "
                  + " ".join(f"{k} {v:.2f}" for k, v in times.items()) + f"  total {sum(times.values()):.2f}s",
                  flush=True)
    rows = []
    for impl in impls:
        row = {"impl": impl.name, **tallies[impl.name].summary(per_epoch, full)}
        if full and impl.name.startswith("genen"):
            row["full_block_setup_s"] = round(impl.full_setup_s, 2)
        if args.count_ops:
            seeds = train if full else chunks[args.warmup]
            row.update(step_counts(impl, seeds, args.seed * 100_003 + args.warmup, w.device, args.profile_table))
        rows.append(row)
    if args.pipeline and not full:
        times, seeds = impls[0].trainer_loop(n, args.warmup, args.seed)
        total = float(np.sum(times))
        rows.append({"impl": "genen (trainer loop, prefetch)", "batches": len(times),
                     "batch_s_mean": round(total / len(times), 4), "seeds_per_s": round(seeds / total, 2),
                     "batches_per_epoch": per_epoch, "epoch_s_est": round(total / len(times) * per_epoch, 2)})
    return rows


def measure_sampling(args, w: Workload, fanouts) -> list[dict]:
    """Samplers alone: DGL's (blocks); DGL's and a read of what ``to_message_block`` reads
    from each relation of each block through DGL's API (COO edges, parent edge and node
    ids: the floor of any conversion through it); DGL's + to_message_block (what the trainer
    uses); to_message_block alone (timed after DGL's sampling); the floor of any conversion
    (DGL's reads, then each entry's column and parent edge id copied once and a coefficient
    written, nothing computed); DeviceBatches (torch ops)."""
    nb = NeighborBatches(w.graph, w.train, fanouts, args.batch_size, w.weights)
    db = DeviceBatches(w.graph, w.train, fanouts, args.batch_size, w.weights, device=w.device)
    gen = torch.Generator(device=w.device).manual_seed(args.seed)
    st_sync = Stages(w.device)

    def dgl_only(seeds):
        return sum(b.num_edges() for b in nb.sample_blocks(seeds)[2])

    def dgl_read(seeds):
        blocks = nb.sample_blocks(seeds)[2]
        for b in blocks:
            for e in b.canonical_etypes:
                b.edges(etype=e), b.edges[e].data[dgl.EID], b.srcnodes[e[0]].data[dgl.NID], \
                    b.dstnodes[e[2]].data[dgl.NID]
        return sum(b.num_edges() for b in blocks)

    def dgl_convert(seeds):
        batch = nb.sample(seeds).to(w.device)  # on a GPU the trainer copies the blocks over
        return sum(int(b.real_edges()) for b in batch.blocks)

    def after_sampling(work):
        """A path that times itself: ``work(*DGL's sample)``, neither the sampling before it
        nor freeing what it made (after the clock stops) counted."""
        def path(seeds):
            sampled = nb.sample_blocks(seeds)
            t0, c0 = time.perf_counter(), time.process_time()
            made = work(*sampled)  # noqa: F841 (kept alive until the clock has stopped)
            return sum(b.num_edges() for b in sampled[2]), time.perf_counter() - t0, time.process_time() - c0
        return path

    def copy_each_array(input_nodes, output_nodes, blocks):  # what any conversion must do at least
        made = []
        for b in blocks:  # read each relation, write each entry's column, parent edge id, coefficient
            edges = [(b.edges(etype=e)[0], b.edges[e].data[dgl.EID]) for e in b.canonical_etypes]
            made.append((torch.cat([u for u, _ in edges]), torch.cat([i for _, i in edges]), torch.ones(b.num_edges())))
        return made

    def device(seeds):
        batch = db.sample(seeds, gen)
        return sum(int(b.real_edges()) for b in batch.blocks)

    paths = {"DGL NeighborSampler (blocks)": dgl_only,
             "DGL NeighborSampler + reading the blocks' relations": dgl_read,
             "DGL NeighborSampler + to_message_block" + (" + copy" if w.device.type == "cuda" else ""): dgl_convert,
             "to_message_block alone (per block set)": after_sampling(nb.convert),
             "floor: reading the blocks + one copy per entry array": after_sampling(copy_each_array),
             "DeviceBatches (torch ops)": device}
    n = args.max_batches
    chunks = epoch_batches(w, args, args.warmup + n)
    res = {k: ([], [], []) for k in paths}
    for i, seeds in enumerate(chunks):
        for name, f in (list(paths.items()) if i % 2 == 0 else list(paths.items())[::-1]):
            reset_peak_rss()
            st_sync.sync()
            t0, c0 = time.perf_counter(), time.process_time()
            edges = f(seeds)
            st_sync.sync()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if isinstance(edges, tuple):
                edges, wall, cpu = edges
            if i >= args.warmup:
                res[name][0].append(wall)
                res[name][1].append(cpu)
                res[name][2].append(edges)
    rows = []
    for name, (wall, cpu, edges) in res.items():
        rows.append({"impl": f"sampler: {name}", "batches": len(wall), "batch_s_mean": round(float(np.mean(wall)), 4),
                     "batch_s_median": round(float(np.median(wall)), 4),
                     "batch_cpu_s_mean": round(float(np.mean(cpu)), 4),
                     "seeds_per_s": round(args.batch_size / float(np.mean(wall)), 1),
                     "sampler_edges_per_s": round(float(np.sum(edges) / np.sum(wall)), 1),
                     "edges_per_batch": round(float(np.mean(edges)))})
    return rows


def resolve(args):
    """Layers, fanouts and edge weights defaulted as the trainer does (TrainConfig)."""
    if args.model == "gat":
        args.edge_weight = "none"  # GAT has no edge weights
    try:
        c = TrainConfig(graph=args.graph, model=args.model, layers=args.layers, fanouts=args.fanouts,
                        edge_weight=args.edge_weight).resolved()
    except InputError as err:
        raise SystemExit(str(err)) from None
    args.layers, args.fanouts, args.edge_weight = c.layers, c.fanouts, c.edge_weight
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU")
    if args.cuda_graph and (args.device != "cuda" or args.sampler != "device"):
        raise SystemExit("--cuda-graph: needs --device cuda and --sampler device (a step of static shapes)")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = resolve(build_parser().parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    set_matmul_precision(args.precision)
    if not args.system_malloc:
        keep_freed_memory()
    torch.manual_seed(args.seed)
    machine = machine_info()
    w = Workload(args)
    fanouts = parse_fanouts(args.fanouts, {}, w.graph)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("out", "pipeline", "tag", "count_ops", "profile_table")}
    print(f"{w.describe()}\nconfig {config}\nmachine {machine}", flush=True)
    rows = measure_sampling(args, w, fanouts) if args.sampling_only else measure(args, w, fanouts)
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    by = {r["impl"]: r for r in rows}
    if "dgl.nn" in by:
        ref, g = by["dgl.nn"], by["genen"]
        g["speedup_vs_dgl_nn"] = round(ref["batch_s_mean"] / g["batch_s_mean"], 3)
        g["speedup_vs_dgl_nn_median"] = round(ref["batch_s_median"] / g["batch_s_median"], 3)
        g["speedup_vs_dgl_nn_cpu"] = round(ref["batch_cpu_s_mean"] / g["batch_cpu_s_mean"], 3)
    machine["loadavg_end"] = list(__import__("os").getloadavg())
    for r in rows:
        append_jsonl(args.out, {"date": stamp, "bench": "sampling" if args.sampling_only else "throughput",
                                "tag": args.tag, "command": command_line(), "config": config, "graph": w.describe(),
                                "machine": machine, **r})
    print(f"\n{'impl':46s} {'batch s':>8s} {'median':>8s} {'cpu s':>8s} {'seeds/s':>8s} {'edges/s':>11s} {'epoch s':>9s}")
    for r in rows:
        print(f"{r['impl']:46s} {r['batch_s_mean']:8.3f} {r.get('batch_s_median', float('nan')):8.3f} "
              f"{r.get('batch_cpu_s_mean', float('nan')):8.3f} {r['seeds_per_s']:8.1f} "
              f"{r.get('sampled_edges_per_s', r.get('sampler_edges_per_s', float('nan'))):11.0f} "
              f"{r.get('epoch_s_est', float('nan')):9.1f}")
        if "stages_s" in r:
            print("    stages (mean s/batch): " + ", ".join(f"{k} {v:.3f}" for k, v in r["stages_s"].items())
                  + f"; peak RSS {r['peak_rss_mb']:.0f} MiB" + (f", peak GPU {r['peak_gpu_mb']:.0f} MiB"
                                                                 if r.get("peak_gpu_mb") else ""))
        if "ops_per_step" in r:
            print(f"    per step: {r['ops_per_step']} torch ops ({r['aten_events_per_step']} aten events)"
                  + (f", {r['cuda_launches_per_step']} kernel launches, {r['cuda_syncs_per_step']} syncs "
                     f"{r['sync_calls_per_step']}, GPU busy {r['gpu_busy_per_step']:.0%} of the step"
                     if r["cuda_launches_per_step"] is not None else "")
                  + "; ops by stage: " + ", ".join(f"{k} {v}" for k, v in r["ops_by_stage"].items()))
    if "speedup_vs_dgl_nn" in by.get("genen", {}):
        g = by["genen"]
        print(f"ratio dgl.nn / genen batch time: mean {g['speedup_vs_dgl_nn']:.3f}, median "
              f"{g['speedup_vs_dgl_nn_median']:.3f}, CPU time {g['speedup_vs_dgl_nn_cpu']:.3f} "
              "(>= 1.0: genen at least as fast)")
    print(f"appended {len(rows)} rows to {args.out}")
    return rows


if __name__ == "__main__":
    main()
