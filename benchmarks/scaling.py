"""Throughput against graph size and against the number of trainers (issue 6).

``python benchmarks/scaling.py [--part size|trainers|all]``

* ``size``: the paper's node sets with 0.25x, 0.5x, 1x and 2x its PPI edges (generated
  with ``python -m genen_dgl.data.sample --scale S`` under ``--scratch``, outside the
  repo). Each scale runs
  ``benchmarks/throughput.py`` in a fresh process (its own peak RSS), genen and the
  dgl.nn reference side by side. Plot: ``results/scaling_size.png``.
* ``trainers``: 1, 2 and 4 trainers on this host with the local launcher
  (``python -m genen_dgl.partition`` into N parts, then ``python -m genen_dgl.distributed.launch
  --local N --parts DIR -- <trainer options>``): the mean epoch time the distributed
  trainer reports (``metrics.json`` -> ``distributed.epoch_seconds_mean``, a global batch
  split over the ranks), the speedup over one trainer and the parallel efficiency
  ``speedup / N``. A failed partition or launch is recorded as such. Plot: ``results/scaling_trainers.png``.

Rows are appended to ``--out`` (JSON lines) with the machine info and the commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SCRATCH, append_jsonl, command_line, machine_info  # noqa: E402

from genen_dgl.config import parse_ints  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/scaling.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", default="all", choices=["size", "trainers", "all"])
    p.add_argument("--scales", type=_floats, default=[0.25, 0.5, 1.0, 2.0], help="x the paper's edges")
    p.add_argument("--trainers", type=parse_ints, default=[1, 2, 4], help="trainer counts (--local N)")
    p.add_argument("--scratch", type=Path, default=SCRATCH, help="where generated datasets and partitions go")
    p.add_argument("--model", default="gcn", choices=["gcn", "gat"])
    p.add_argument("--sampler", default="neighbor", choices=["neighbor", "device"])
    p.add_argument("--threads", type=int, default=1, help="torch threads of each benchmark process")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-batches", type=int, default=6)
    p.add_argument("--no-baseline", action="store_true", help="size part: skip the dgl.nn reference")
    p.add_argument("--trainer-scale", type=float, default=0.25, help="dataset (x paper edges) of the trainers part")
    p.add_argument("--trainer-epochs", type=int, default=1, help="epochs per fold in the trainers part")
    p.add_argument("--trainer-args", default="--folds 2 --patience 100",
                   help="extra options for the distributed trainer")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per launcher run")
    p.add_argument("--lock-retries", type=int, default=20, help="retries (60 s apart) while another run holds the host")
    p.add_argument("--min-free-gb", type=float, default=4.0, help="refuse a scale whose estimated peak leaves less")
    p.add_argument("--out", type=Path, default=RESULTS / "scaling.jsonl")
    p.add_argument("--plots", type=Path, default=RESULTS)
    p.add_argument("--plot-only", action="store_true", help="redraw the plots from --out, run nothing")
    return p


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def run_measured(cmd: list[str], log: Path, timeout: float | None = None, env: dict | None = None) -> dict:
    """Run ``cmd`` (output to ``log``), returning its exit code, wall time and peak RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                os.killpg(proc.pid, 15)
                time.sleep(10)
                if proc.poll() is None:
                    os.killpg(proc.pid, 9)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def dataset(scale: float, scratch: Path, min_free_gb: float, history: dict[float, float]) -> tuple[Path, dict]:
    """The dataset for ``scale`` (generated if missing; refused when RAM would run short)."""
    out = scratch / f"scale{scale:g}"
    spec = out / "dataset.yaml"
    if spec.exists():
        return spec, {}
    if history:  # peak RSS grows ~linearly with the edges: extrapolate from the largest done
        s0 = max(history)
        need = history[s0] * scale / s0
        free = mem_available_gb()
        if free - need < min_free_gb:
            raise MemoryError(f"x{scale:g}: generation needs ~{need:.1f} GB, {free:.1f} GB available")
    cmd = [sys.executable, "-m", "genen_dgl.data.sample", "--out", str(out), "--scale", str(scale), "--build"]
    print(f"generating x{scale:g}: {' '.join(cmd)}", flush=True)
    info = run_measured(cmd, out.parent / f"generate-x{scale:g}.log")
    if info["rc"] != 0:
        raise RuntimeError(f"generation of x{scale:g} failed (rc {info['rc']}); see {out.parent}/generate-x{scale:g}.log")
    return spec, {"generate": {"command": " ".join(cmd), **info}}


def read_rows(path: Path, tag: str) -> list[dict]:
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("tag") == tag]


# -- size ------------------------------------------------------------------------------------
def size_part(args, machine: dict, run_id: str) -> None:
    gen_peaks: dict[float, float] = {}
    for scale in args.scales:
        tag = f"scaling-size x{scale:g} {run_id}"
        try:
            spec, extra = dataset(scale, args.scratch, args.min_free_gb, gen_peaks)
        except (MemoryError, RuntimeError) as err:
            print(f"x{scale:g}: skipped: {err}", flush=True)
            append_jsonl(args.out, {"date": now(), "bench": "scaling-size", "scale": scale, "status": "skipped",
                                    "reason": str(err), "machine": machine, "command": command_line()})
            continue
        if "generate" in extra:
            gen_peaks[scale] = extra["generate"]["peak_rss_gb"]
        tmp_out = args.scratch / f"throughput-{run_id}.jsonl"
        cmd = [sys.executable, "benchmarks/throughput.py", "--data", str(spec), "--model", args.model,
               "--sampler", args.sampler, "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--max-batches", str(args.max_batches), "--out", str(tmp_out),
               "--tag", tag] + (["--no-baseline"] if args.no_baseline else [])
        print(f"x{scale:g}: {' '.join(cmd)}", flush=True)
        info = run_measured(cmd, args.scratch / f"throughput-x{scale:g}-{run_id}.log")
        rows = read_rows(tmp_out, tag)
        if info["rc"] != 0 or not rows:
            print(f"x{scale:g}: throughput.py failed (rc {info['rc']}); see its log", flush=True)
            append_jsonl(args.out, {"date": now(), "bench": "scaling-size", "scale": scale, "status": "failed",
                                    "rc": info["rc"], "machine": machine, "command": " ".join(cmd)})
            continue
        for r in rows:
            r.update({"bench": "scaling-size", "scale": scale, "status": "ok", "process": info, **extra,
                      "scaling_command": command_line()})
            append_jsonl(args.out, r)
            print(f"  {r['impl']:16s} {r['batch_s_mean']:7.2f} s/batch  {r['seeds_per_s']:7.1f} seeds/s  "
                  f"{r['sampled_edges_per_s']:10.0f} edges/s  peak RSS {info['peak_rss_gb']:.1f} GB", flush=True)


# -- trainers --------------------------------------------------------------------------------
def trainers_part(args, machine: dict, run_id: str) -> None:
    spec, _ = dataset(args.trainer_scale, args.scratch, args.min_free_gb, {})
    name = f"x{args.trainer_scale:g}"
    base = None
    for n in args.trainers:
        parts = args.scratch / f"parts-{name}-{n}"
        part_cmd = [sys.executable, "-m", "genen_dgl.partition", "--data", str(spec), "--num-parts", str(n),
                    "--out", str(parts)]
        row = {"date": now(), "bench": "scaling-trainers", "trainers": n, "dataset": str(spec), "machine": machine,
               "command": command_line(), "partition_command": " ".join(part_cmd)}
        if not (parts / "genen-partition.json").exists():
            print(f"{n} trainer(s): {' '.join(part_cmd)}", flush=True)
            info = run_measured(part_cmd, args.scratch / f"partition-{name}-{n}.log", args.timeout)
            row["partition"] = info
            if info["rc"] != 0:
                print(f"  partitioning failed (rc {info['rc']}); see its log", flush=True)
                append_jsonl(args.out, {**row, "status": "failed", "reason": f"partition rc {info['rc']}"})
                continue
        run_dir = args.scratch / f"run-{name}-{n}-{run_id}"
        launch_cmd = [sys.executable, "-m", "genen_dgl.distributed.launch", "--local", str(n), "--parts", str(parts),
                      "--timeout", str(args.timeout), "--", "--model", args.model, "--epochs", str(args.trainer_epochs),
                      "--out", str(run_dir), *args.trainer_args.split()]
        print(f"{n} trainer(s): {' '.join(launch_cmd)}", flush=True)
        log = args.scratch / f"launch-{name}-{n}-{run_id}.log"
        for attempt in range(args.lock_retries + 1):  # one distributed run per host: wait for others' to end
            info = run_measured(launch_cmd, log, args.timeout + 60)
            if info["rc"] != 2 or "already runs a distributed genen-dgl job" not in log.read_text():
                break
            print(f"  another distributed run holds this host; retry in 60 s ({attempt + 1}/{args.lock_retries})",
                  flush=True)
            time.sleep(60)
        row.update({"launch_command": " ".join(launch_cmd), "launch": info})
        metrics = run_dir / "metrics.json"
        if info["rc"] != 0 or not metrics.exists():
            print(f"  launcher failed (rc {info['rc']}); see {args.scratch}/launch-{name}-{n}-{run_id}.log",
                  flush=True)
            append_jsonl(args.out, {**row, "status": "failed", "reason": f"launch rc {info['rc']}"})
            continue
        m = json.loads(metrics.read_text())
        epoch_s = m["distributed"]["epoch_seconds_mean"]
        train_seeds = m.get("labelled_genes")
        base = base or (n, epoch_s)
        speedup = base[1] / epoch_s * base[0]
        row.update({"status": "ok", "epoch_s": epoch_s, "speedup": round(speedup, 3),
                    "efficiency": round(speedup / n, 3), "distributed": m["distributed"],
                    "labelled_genes": train_seeds, "auc_mean": m["summary"].get("auc_mean")})
        append_jsonl(args.out, row)
        print(f"  epoch {epoch_s:.1f} s, speedup {speedup:.2f}, efficiency {speedup / n:.2f}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)


# -- plots -----------------------------------------------------------------------------------
def plot(args) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    made = []
    size = [r for r in rows if r.get("bench") == "scaling-size" and r.get("status") == "ok"]
    if size:
        latest = {}
        for r in size:  # the latest run per (scale, impl)
            latest[(r["scale"], r["impl"])] = r
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for impl in sorted({k[1] for k in latest}):
            pts = sorted((r["graph"]["ppi_edges"] / 1e6, r) for (s, i), r in latest.items() if i == impl)
            x = [p[0] for p in pts]
            axes[0].plot(x, [p[1]["seeds_per_s"] for p in pts], "o-", label=impl)
            axes[1].plot(x, [p[1]["edges_per_batch"] / 1e3 for p in pts], "o-", label=impl)
            axes[2].plot(x, [p[1]["process"]["peak_rss_gb"] for p in pts], "o-", label=impl)
        axes[0].set_ylabel("training seeds / s")
        axes[1].set_ylabel("sampled edges per batch (k)")
        axes[2].set_ylabel("peak RSS of the benchmark process (GB)")
        for ax in axes:
            ax.set_xlabel("directed PPI edges (M)")
            ax.grid(alpha=.3)
            ax.legend()
        any_row = next(iter(latest.values()))
        fig.suptitle(f"Throughput vs graph size ({any_row['config']['model']}, {any_row['config']['sampler']}, "
                     f"batch {any_row['config']['batch_size']}, {any_row['machine']['cpu']} "
                     f"{any_row['machine']['cores']} cores, threads {any_row['config']['threads']}; {any_row['date'][:10]})")
        fig.tight_layout()
        path = args.plots / "scaling_size.png"
        fig.savefig(path, dpi=110)
        made.append(path)
    tr = [r for r in rows if r.get("bench") == "scaling-trainers" and r.get("status") == "ok"]
    if tr:
        latest = {r["trainers"]: r for r in tr}
        ns = sorted(latest)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(ns, [latest[n]["speedup"] for n in ns], "o-", label="measured")
        axes[0].plot(ns, ns, "--", color="grey", label="ideal")
        axes[0].set_ylabel("speedup over 1 trainer (epoch time)")
        axes[1].plot(ns, [latest[n]["efficiency"] for n in ns], "o-")
        axes[1].axhline(1, ls="--", color="grey")
        axes[1].set_ylabel("parallel efficiency")
        for ax in axes:
            ax.set_xlabel("trainers (python -m genen_dgl.distributed.launch --local N)")
            ax.set_xticks(ns)
            ax.grid(alpha=.3)
        axes[0].legend()
        r0 = latest[ns[0]]
        fig.suptitle(f"Trainers on one host: N graph servers + N trainers, {Path(r0['dataset']).parent.name} "
                     f"({r0['machine']['cpu']}, {r0['machine']['cores']} cores; {r0['date'][:10]})")
        fig.tight_layout()
        path = args.plots / "scaling_trainers.png"
        fig.savefig(path, dpi=110)
        made.append(path)
    return made


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        machine, run_id = machine_info(), uuid.uuid4().hex[:8]
        if args.part in ("size", "all"):
            size_part(args, machine, run_id)
        if args.part in ("trainers", "all"):
            trainers_part(args, machine, run_id)
    for path in plot(args):
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
