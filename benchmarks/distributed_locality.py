"""Issue 26: how local a distributed run's sampling is, before and after.

For each mode (``SEEDS:PREDICT``, e.g. ``global:batched`` = the behaviour before issue 26,
``partition:auto`` = after) one ``python -m genen_dgl.distributed.launch --parts DIR --local N`` run,
then from its ``metrics.json`` (``distributed.per_rank``, summed over ranks):

* ``local_input_share``: share of the training minibatches' sampled input nodes that the
  trainer's own partition owns;
* ``remote_feature_mb_per_epoch``: input-feature bytes pulled from other partitions per
  epoch (all ranks), training minibatches;
* ``predict_all_s``: wall time to predict every gene after a split (mean over splits,
  slowest rank), against ``train_s_per_fold`` (training epochs of a fold, sampling and
  steps, no validation);
* ``predict_eval_s_per_fold``: validation/test inference per fold;
* ``auc_mean``, ``wall_s``.

Rows go to ``benchmarks/results/distributed_locality.jsonl`` (``--tag`` names the setup);
``--plot`` draws every row of the file to ``benchmarks/results/distributed_locality.png``.

    python benchmarks/distributed_locality.py --parts /tmp/parts/s002-2 --tag sample-0.02-2parts \\
        --modes global:batched,partition:auto -- --epochs 10 --folds 3
    python benchmarks/distributed_locality.py --plot
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, append_jsonl, machine_info  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ROWS = RESULTS / "distributed_locality.jsonl"


def summarise(metrics: dict) -> dict:
    dist = metrics["distributed"]
    ranks = dist["per_rank"]
    total = {k: sum(r.get(k, 0) for r in ranks) for k in ranks[0] if k != "predict_all_s"}
    folds = len(metrics["folds"])
    epochs = max(r.get("epochs", 0) for r in ranks)  # per rank (every rank runs every epoch)
    predict_all = [max(r["predict_all_s"][i] for r in ranks) for i in range(len(ranks[0]["predict_all_s"]))]
    return {
        "world_size": dist["world_size"], "num_parts": dist["num_parts"],
        "local_input_share": total.get("train_local_input_nodes", 0) / max(total.get("train_input_nodes", 0), 1),
        "local_seed_share": total.get("local_seeds", 0) / max(total.get("seeds", 0), 1),
        "remote_feature_mb_per_epoch": total.get("train_remote_feature_bytes", 0) / max(epochs, 1) / 1e6,
        "input_nodes_per_epoch": total.get("train_input_nodes", 0) / max(epochs, 1),
        "train_s_per_fold": max(r.get("train_s", 0) for r in ranks) / max(len(predict_all), folds),
        "predict_all_s": sum(predict_all) / max(len(predict_all), 1), "predict_all_s_each": predict_all,
        "predict_eval_s_per_fold": max(r.get("predict_eval_s", 0) for r in ranks) / folds,
        "layerwise_remote_feature_mb": total.get("layerwise_remote_feature_bytes", 0) / 1e6,
        "epochs_total": epochs, "folds": folds,
        "auc_mean": metrics["summary"].get("auc_mean"), "auc_std": metrics["summary"].get("auc_std"),
    }


def run_mode(args, mode: str, out: Path) -> dict:
    seeds, predict = mode.split(":")
    cmd = [sys.executable, "-m", "genen_dgl.distributed.launch", "--parts", str(args.parts), "--local", str(args.local),
           "--timeout", str(args.timeout), "--", "--seeds-from", seeds, "--predict", predict, "--out", str(out),
           *args.train]
    start = time.perf_counter()
    while True:  # another distributed job holds this host's DGL locks: wait for it
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if "already runs a distributed genen-dgl job" not in proc.stderr + proc.stdout:
            break
        time.sleep(5)
        start = time.perf_counter()
    wall = time.perf_counter() - start
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: launch exited {proc.returncode}; log {out.parent / (out.name + '.log')}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"tag": args.tag, "mode": mode, "seeds_from": seeds, "predict": predict, "wall_s": wall,
            **summarise(metrics), "parts": str(args.parts), "train_args": args.train, "run": str(out),
            "machine": machine_info()}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("local_input_share", "own-partition share of sampled inputs"),
              ("remote_feature_mb_per_epoch", "features pulled from other parts (MB/epoch)"),
              ("predict_all_s", "predict every gene (s) [x: train s/fold]"), ("auc_mean", "AUC")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    labels = [f"{r['tag']}\n{r['mode']}" for r in rows]
    for ax, (key, title) in zip(axes, panels):
        values = [r.get(key) or 0 for r in rows]
        colors = ["tab:gray" if r["seeds_from"] == "global" else "tab:blue" for r in rows]
        ax.barh(range(len(rows)), values, color=colors)
        if key == "predict_all_s":
            ax.scatter([r["train_s_per_fold"] for r in rows], range(len(rows)), marker="x", color="k", zorder=3)
        if key == "local_input_share":
            ax.set_xlim(0, 1)
        if key == "auc_mean":
            ax.set_xlim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.02))
        ax.set_yticks(range(len(rows)), labels if ax is axes[0] else [""] * len(rows), fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    train = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=Path, help="partition folder (python -m genen_dgl.partition)")
    parser.add_argument("--local", type=int, help="logical machines (default: the partitions')")
    parser.add_argument("--modes", default="global:batched,partition:auto", help="SEEDS:PREDICT,...")
    parser.add_argument("--tag", default="run", help="names the setup in the rows")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-data/distributed_locality"),
                        help="where the runs go")
    parser.add_argument("--rows", type=Path, default=ROWS)
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--plot", action="store_true", help="(only) draw the rows file's plot")
    args = parser.parse_args(argv)
    args.train = train
    if not args.plot:
        if args.parts is None:
            parser.error("--parts is required (or --plot)")
        args.local = args.local or json.loads((args.parts / "genen-partition.json").read_text())["num_parts"]
        for mode in args.modes.split(","):
            out = args.out / f"{args.tag}-{mode.replace(':', '-')}-{int(time.time())}"
            out.parent.mkdir(parents=True, exist_ok=True)
            row = run_mode(args, mode, out)
            append_jsonl(args.rows, row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("machine", "train_args")}), flush=True)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()] if args.rows.exists() else []
    if rows:
        plot(rows, args.rows.with_suffix(".png"))
        print(f"plot: {args.rows.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
