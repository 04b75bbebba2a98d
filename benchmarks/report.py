"""Markdown tables from the benchmark results: ``python benchmarks/report.py``.

Reads ``benchmarks/results/throughput.jsonl`` and ``scaling.jsonl`` (or ``--throughput`` /
``--scaling``) and prints the tables BENCHMARKS.md quotes, one row per measured line.
``--plot-steps PNG`` draws the sampled training steps of ``--throughput`` (and of every
``--before`` file): seeds per second over all batches (mean batch time) and for a whole
batch in the median batch time, one bar pair per configuration (the last row of each).
``--plot-ops PNG`` draws the torch operators per training step of the rows of ``--throughput``
counted with ``--count-ops`` (``--tag`` filters them), stacked by stage, one bar per
configuration and tag (the last row of each).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def fmt(v, spec=".2f", none="–"):
    return none if v is None else format(v, spec)


def config_label(r: dict) -> str:
    c = r["config"]
    threads = c.get("threads") or r["machine"]["torch_threads"]
    return (f"{c['model']} {c['sampler']} {c['device']} L{c['layers']} f{','.join(map(str, c['fanouts']))} "
            f"b{c['batch_size']} h{c['hidden']} t{threads}")


def throughput_tables(rows: list[dict]) -> str:
    out = ["| date | config | impl | s/batch mean | median | CPU s | seeds/s | sampled edges/s | epoch s (est.) "
           "| peak RSS MiB | dgl.nn / impl (mean, median, CPU) | load avg |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("bench") != "throughput":
            continue
        ratio = "–"
        if "speedup_vs_dgl_nn" in r:
            ratio = f"{r['speedup_vs_dgl_nn']:.2f}, {r['speedup_vs_dgl_nn_median']:.2f}, {r['speedup_vs_dgl_nn_cpu']:.2f}"
        load = r["machine"].get("loadavg_start", [None])[0]
        out.append(f"| {r['date'][:16]} | {config_label(r)} | {r['impl']} | {fmt(r['batch_s_mean'])} | "
                   f"{fmt(r.get('batch_s_median'))} | {fmt(r.get('batch_cpu_s_mean'))} | {fmt(r['seeds_per_s'], '.1f')} | "
                   f"{fmt(r.get('sampled_edges_per_s'), ',.0f')} | {fmt(r.get('epoch_s_est'), '.0f')} | "
                   f"{fmt(r.get('peak_rss_mb'), '.0f')} | {ratio} | {fmt(load, '.1f')} |")
    stages = ["", "Per-batch stages (mean seconds):", "",
              "| config | impl | sample | convert | copy | gather | forward | backward+step | edges/batch | input nodes |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("bench") == "throughput" and "stages_s" in r:
            s = r["stages_s"]
            stages.append(f"| {config_label(r)} | {r['impl']} | " + " | ".join(
                fmt(s[k], ".3f") for k in ("sample", "convert", "copy", "gather", "forward", "backward"))
                + f" | {r['edges_per_batch']:,} | {r['input_nodes_per_batch']:,} |")
    return "\n".join(out + stages)


def sampling_table(rows: list[dict]) -> str:
    out = ["| date | threads | sampler | s/batch mean | median | CPU s | seeds/s | sampled edges/s | edges/batch |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("bench") != "sampling":
            continue
        threads = r["config"].get("threads") or r["machine"]["torch_threads"]
        out.append(f"| {r['date'][:16]} | {threads} | {r['impl'].removeprefix('sampler: ')} | {fmt(r['batch_s_mean'], '.3f')} "
                   f"| {fmt(r['batch_s_median'], '.3f')} | {fmt(r['batch_cpu_s_mean'], '.3f')} | "
                   f"{fmt(r['seeds_per_s'], '.0f')} | {fmt(r['sampler_edges_per_s'], ',.0f')} | {r['edges_per_batch']:,} |")
    return "\n".join(out)


def latest(rows: list[dict], bench: str, key) -> list[dict]:
    """The last row of ``bench`` per ``key(row)``, in first-seen key order (as the plots use)."""
    last: dict = {}
    for r in rows:
        if r.get("bench") == bench:
            last[key(r)] = r
    return list(last.values())


def scaling_tables(rows: list[dict]) -> str:
    out = ["| scale | directed PPI edges | impl | s/batch mean | median | seeds/s | sampled edges/s | edges/batch "
           "| peak RSS GB (process) | dgl.nn / genen (mean, median) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in latest(rows, "scaling-size", lambda r: (r["scale"], r.get("impl"))):
        if r.get("status") != "ok":
            out.append(f"| {r['scale']:g} | | {r.get('status')}: {r.get('reason', '')} | | | | | | | |")
            continue
        ratio = f"{r['speedup_vs_dgl_nn']:.2f}, {r['speedup_vs_dgl_nn_median']:.2f}" if "speedup_vs_dgl_nn" in r else "–"
        out.append(f"| {r['scale']:g} | {r['graph']['ppi_edges']:,} | {r['impl']} | {fmt(r['batch_s_mean'])} | "
                   f"{fmt(r['batch_s_median'])} | {fmt(r['seeds_per_s'], '.1f')} | {fmt(r['sampled_edges_per_s'], ',.0f')} | "
                   f"{r['edges_per_batch']:,} | {fmt(r['process']['peak_rss_gb'])} | {ratio} |")
    out += ["", "| trainers | status | epoch s | speedup | parallel efficiency | dataset | note |",
            "|---|---|---|---|---|---|---|"]
    for r in latest(rows, "scaling-trainers", lambda r: r.get("trainers")):
        out.append(f"| {r.get('trainers', '–')} | {r['status']} | {fmt(r.get('epoch_s'))} | {fmt(r.get('speedup'))} | "
                   f"{fmt(r.get('efficiency'))} | {Path(r.get('dataset', '')).parent.name} | {r.get('reason', '')} |")
    return "\n".join(out)


def step_label(r: dict) -> str:
    c = r["config"]
    how = "CUDA graph" if c.get("cuda_graph") else "eager"
    return f"{c['model'].upper()} {c['sampler']} {c.get('precision', 'fp32')} {how}, b{c['batch_size']}"


def plot_steps(groups: list[tuple[str, list[dict]]], path: Path) -> Path:
    """Horizontal bars, seeds/s over all batches and for a whole batch in the median time, of the last
    ``genen`` row per configuration of each ``(name, rows)`` group (sampled steps only)."""
    from genen_dgl.experiments.plotting import figure, save

    bars = []
    for name, rows in groups:
        last = {}
        for r in rows:
            if r.get("bench") == "throughput" and r["impl"] == "genen" and r["config"]["sampler"] != "full":
                last[step_label(r)] = r
        bars += [(f"{label} ({name})", r) for label, r in sorted(last.items())]
    fig, (ax,) = figure(1, (9.0, 0.45 * len(bars) + 1.2))
    y = list(range(len(bars)))[::-1]
    full = [min(r["config"]["batch_size"], r["graph"]["train_seeds"]) for _, r in bars]  # a whole batch's seeds
    ax.barh([v + 0.2 for v in y], [r["seeds_per_s"] for _, r in bars], 0.4, label="all batches (mean time)")
    ax.barh([v - 0.2 for v in y], [n / r["batch_s_median"] for n, (_, r) in zip(full, bars)], 0.4,
            label="a whole batch / the median batch time")
    ax.set_yticks(y, [label for label, _ in bars], fontsize=8)
    ax.set_xlabel("training seeds / s")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_ops(rows: list[dict], path: Path) -> Path:
    """Horizontal bars of the operators per step, stacked by stage, of the last ``genen`` row
    per configuration and tag that has ``ops_by_stage``."""
    from genen_dgl.experiments.plotting import figure, save

    last = {}
    for r in rows:
        if r.get("impl") == "genen" and r.get("ops_by_stage"):
            last[f"{step_label(r)} ({r.get('tag') or r['date'][:10]})"] = r
    stages = list(dict.fromkeys(k for r in last.values() for k, v in r["ops_by_stage"].items() if v))
    fig, (ax,) = figure(1, (9.0, 0.4 * len(last) + 1.4))
    y = list(range(len(last)))[::-1]
    left = [0] * len(last)
    for stage in stages:
        counts = [r["ops_by_stage"].get(stage, 0) for r in last.values()]
        ax.barh(y, counts, 0.6, left=left, label=stage)
        left = [a + b for a, b in zip(left, counts)]
    for v, total in zip(y, left):
        ax.text(total, v, f" {total:,}", va="center", fontsize=7)
    ax.set_yticks(y, list(last), fontsize=7)
    ax.set_xlabel("torch operators per training step (--count-ops)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--throughput", type=Path, default=RESULTS / "throughput.jsonl")
    p.add_argument("--scaling", type=Path, default=RESULTS / "scaling.jsonl")
    p.add_argument("--tag", help="only the rows of runs made with this --tag")
    p.add_argument("--plot-steps", type=Path, help="PNG of the sampled steps' seeds/s (see above)")
    p.add_argument("--before", type=Path, nargs="*", default=[], help="earlier rows for --plot-steps")
    p.add_argument("--plot-ops", type=Path, help="PNG of the counted steps' operators by stage (see above)")
    args = p.parse_args(argv)
    t = [r for r in load(args.throughput) if args.tag is None or r.get("tag") == args.tag]
    if args.plot_ops:
        print(plot_ops(t, args.plot_ops))
        return
    if args.plot_steps:
        groups = [(f.stem, load(f)) for f in args.before] + [(args.throughput.stem, t)]
        print(plot_steps(groups, args.plot_steps))
        return
    print("## Throughput\n\n" + throughput_tables(t) + "\n\n## Samplers\n\n" + sampling_table(t))
    print("\n## Scaling\n\n" + scaling_tables(load(args.scaling)))


if __name__ == "__main__":
    main()
