"""Knowledge bias (paper Fig. 4a): test genes split by summary length into less-studied
(word count <= threshold) and well-studied, scored per group and split for the GNN (its
out-of-fold predictions.csv) and for each linear baseline (:mod:`genen_dgl.baselines`,
out-of-fold here on the trainer's own splits: same ``cut_splits`` call)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.baselines import baseline_inputs, fitted, out_of_fold
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import load_full_graph, load_graph
from genen_dgl.schema import VARIANTS
from genen_dgl.errors import InputError
from genen_dgl.evaluation import headline_metric, metrics
from genen_dgl.splits import cut_splits
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import mean_std, train, write_csv

log = logging.getLogger(__name__)

GROUPS = ("less-studied", "well-studied")


def add_arguments(parser) -> None:
    parser.add_argument("--graph", choices=VARIANTS, default="go_ppi", help="graph variant of the GNN (default go_ppi)")
    parser.add_argument("--threshold", type=float,
                        help="summary word count up to which a gene is less-studied (default: the median "
                             "among the task's labelled genes)")


def read_predictions(run_dir: Path, genes: np.ndarray, classes: list[str], kind: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seed, fold, outputs) per row of the run's out-of-fold predictions.csv, ordered by
    seed, then as ``genes``."""
    frame = pd.read_csv(run_dir / "predictions.csv", dtype={"gene": str}, keep_default_na=False)
    cols = ["y_pred"] if kind == "regression" else [f"p_{c}" for c in classes]
    seeds, folds, outs = [], [], []
    for seed, part in frame.groupby("seed", sort=True):
        part = part.set_index("gene")
        missing = np.setdiff1d(genes, part.index)
        if len(missing):
            raise InputError(f"gene {missing[0]} has no out-of-fold prediction for seed {seed}",
                             run_dir / "predictions.csv")
        part = part.loc[genes]
        seeds.append(np.full(len(genes), seed))
        folds.append(part["fold"].to_numpy())
        outs.append(part[cols].to_numpy(np.float64))
    return np.concatenate(seeds), np.concatenate(folds), np.concatenate(outs)


def split(words: np.ndarray, threshold: float | None) -> tuple[np.ndarray, float]:
    """Group name of each gene and the threshold used."""
    threshold = float(np.median(words)) if threshold is None else float(threshold)
    return np.where(words <= threshold, GROUPS[0], GROUPS[1]), threshold


def evaluate(base: TrainConfig, out: Path, graph: str, threshold: float | None) -> pd.DataFrame:
    """Train the GNN once; rows (model, group, seed, fold, n, words_threshold, metrics...)."""
    config = dataclasses.replace(base, graph=graph).resolved()
    run_dir = out / "runs" / f"{graph}-{config.model}"
    train(config, run_dir)
    data = load_graph(config.data, graph)
    nodes, labels = data.labels(config.task)
    groups, threshold = split(data.summary_words()[nodes], threshold)
    splits = cut_splits(labels, config)
    seed_of, fold_of, gnn = read_predictions(run_dir, labels.genes, labels.classes, labels.kind)
    for s in splits:
        mine = np.flatnonzero(seed_of == s.seed)
        if not np.array_equal(np.sort(np.flatnonzero(fold_of[mine] == s.k)), s.fold.test):
            raise InputError("predictions.csv folds differ from the trainer's splits: its splits changed", run_dir)
    full = load_full_graph(data.spec)[0]
    outputs = {config.model: {s.seed: gnn[seed_of == s.seed] for s in splits},
               **out_of_fold(fitted(baseline_inputs(full, config, nodes, splits), labels.values, labels.kind,
                                    labels.width, splits, config.hide_test_annotations), splits)}
    rows = []
    for model, per_seed in outputs.items():
        for s in splits:
            for g in GROUPS:
                test = s.fold.test[groups[s.fold.test] == g]
                scores = metrics(labels.kind, labels.values[test], per_seed[s.seed][test]) if len(test) > 1 else {}
                scores.pop("undefined", None)
                rows.append({"model": model, "graph": graph if model == config.model else "", "group": g,
                             "seed": s.seed, "fold": s.k, "n": len(test), "words_threshold": threshold, **scores})
    log.info("threshold %g words: %d less-studied, %d well-studied of %d labelled genes", threshold,
             (groups == GROUPS[0]).sum(), (groups == GROUPS[1]).sum(), len(groups))
    return pd.DataFrame(rows)


def plot(frame: pd.DataFrame, path: Path, title: str) -> Path:
    names = [m for m in ("auc", "f1", "accuracy", "pearson") if m in frame.columns]
    fig, axes = plotting.figure(len(names))
    first = frame[(frame["model"] == frame["model"].iloc[0]) & (frame["seed"] == frame["seed"].iloc[0])]
    sizes = first.groupby("group", sort=False)["n"].sum()
    models = [plotting.pretty(m) + (f" ({g})" if g else "") for m, g in zip(frame["model"], frame["graph"])]
    frame = frame.assign(group=frame["group"].map(lambda g: f"{g}\n(n={sizes[g]})"), model=models)
    for ax, name in zip(axes, names):
        plotting.grouped_bars(ax, mean_std(frame, ["group", "model"], name), "group", "model",
                              name.upper() if name == "auc" else name.capitalize())
    plotting.legend_outside(axes)
    axes[0].set_title(title, fontsize=10, loc="left")
    return plotting.save(fig, path)


def main(args, base: TrainConfig) -> int:
    frame = evaluate(base, args.out, args.graph, args.threshold)
    write_csv(frame, args.out / "bias.csv")
    c = base.resolved()
    meta = json.loads((args.out / "runs" / f"{args.graph}-{c.model}" / "metrics.json").read_text())
    threshold = frame["words_threshold"].iloc[0]
    plot(frame, args.out / "bias.png", f"{meta['task']}: summary <= {threshold:g} words = less-studied")
    metric = headline_metric(meta["kind"])
    names = [m for m in (metric, "f1", "accuracy") if m in frame.columns]
    for (model, group), part in frame.groupby(["model", "group"], sort=False):
        values = ", ".join(f"{m} {part[m].mean():.3f}±{part[m].std(ddof=1):.3f}" for m in names)
        print(f"bias {model:<20} {group:<13} n={part['n'].sum() // part['seed'].nunique():<5} {values}")
    print(f"outputs: {args.out / 'bias.csv'}, {args.out / 'bias.png'}")
    return 0
