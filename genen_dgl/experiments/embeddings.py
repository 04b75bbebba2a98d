"""Embedding maps (paper Fig. 3): t-SNE of labelled genes' input features and of their
refined embeddings, coloured by class, on genes the model did not train on: each fold
model's embeddings of its own test genes (the run's ``embeddings.oof.npy``).

Trains one run, or reads a finished one given with ``--run``. The silhouette score of the
classes in each full embedding space (not the 2-d map) puts a number on the separation:
computed per fold (each fold model has its own embedding space) and averaged; the map
shows fold 0's test genes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import load_graph
from genen_dgl.schema import VARIANTS
from genen_dgl.data.sample import ensure_sample
from genen_dgl.errors import InputError
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import train, write_csv

log = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "metrics.json", "embeddings.oof.npy", "embeddings.oof.genes.csv")


def add_arguments(parser) -> None:
    parser.add_argument("--graph", choices=VARIANTS, default="go_ppi", help="graph variant of the GNN (default go_ppi)")
    parser.add_argument("--run", type=Path, help="a finished training run to map instead of training one")
    parser.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default 30; capped for few genes)")


def tsne(x: np.ndarray, perplexity: float, seed: int, threads: int | None = None) -> np.ndarray:
    """2-d t-SNE map (after PCA to 50 dimensions where wider). OpenMP threads are capped
    (default 1): on a busy machine sklearn's spinning threads make it ~10x slower."""
    x = x - x.mean(0)
    with threadpool_limits(threads or 1):
        if x.shape[1] > 50:  # the usual PCA step before t-SNE
            x = PCA(50, random_state=seed).fit_transform(x)
        perplexity = min(perplexity, (len(x) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def load_run(run_dir: Path) -> tuple[TrainConfig, dict, pd.DataFrame, np.ndarray]:
    missing = [f for f in RUN_FILES if not (run_dir / f).exists()]
    if missing:
        raise InputError(f"not a finished training run: {missing[0]} is missing", run_dir)
    config = TrainConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    report = json.loads((run_dir / "metrics.json").read_text())
    rows = pd.read_csv(run_dir / "embeddings.oof.genes.csv", dtype={"gene": str}, keep_default_na=False)
    refined = np.load(run_dir / "embeddings.oof.npy")
    if len(rows) != len(refined):
        raise InputError(f"{len(rows)} genes for {len(refined)} embeddings", run_dir / "embeddings.oof.genes.csv")
    return config, report, rows, refined


def maps(run_dir: Path, perplexity: float) -> tuple[pd.DataFrame, dict]:
    """Rows (gene, fold, label, input_x, input_y, refined_x, refined_y) of fold 0's test
    genes, and run facts with the per-fold silhouette scores' mean and std."""
    config, report, rows, refined = load_run(run_dir)
    data = load_graph(config.data or ensure_sample(), report["graph"])
    nodes, labels = data.labels(config.task)
    index = {g: i for i, g in enumerate(labels.genes)}
    missing = [g for g in rows["gene"] if g not in index]
    if missing:
        raise InputError(f"gene {missing[0]} is not labelled for {report['task']}", run_dir / "embeddings.oof.genes.csv")
    pos = np.array([index[g] for g in rows["gene"]])
    kind = report["kind"]
    x_in = data.graph.nodes["gene"].data["feat"].numpy()[nodes[pos]]
    label = labels.values[pos]
    facts = {"task": report["task"], "kind": kind, "model": report["model"], "graph": report["graph"],
             "genes": int((rows["fold"] == 0).sum())}
    if kind != "regression":
        for name, x in (("input", x_in), ("refined", refined)):
            per_fold = [silhouette_score(x[part], label[part], random_state=config.seed)
                        for part in (rows["fold"].to_numpy() == k for k in sorted(rows["fold"].unique()))
                        if len(set(label[part])) > 1]
            if per_fold:
                facts[f"{name}_silhouette"] = float(np.mean(per_fold))
                facts[f"{name}_silhouette_std"] = float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0
    first = (rows["fold"] == 0).to_numpy()
    frame = pd.DataFrame({"gene": rows["gene"][first].to_numpy(), "fold": 0, "label": label[first] if kind == "regression"
                          else np.array(report["classes"])[label[first].astype(int)]})
    for name, x in (("input", x_in[first]), ("refined", refined[first])):
        xy = tsne(x, perplexity, config.seed, config.threads)
        frame[f"{name}_x"], frame[f"{name}_y"] = xy[:, 0], xy[:, 1]
    return frame, facts


def plot(frame: pd.DataFrame, facts: dict, path: Path) -> Path:
    fig, axes = plotting.figure(2, (4.4, 4.0))
    titles = {"input": "input features", "refined": f"Genen ({facts['model'].upper()}, {facts['graph']}; "
              "fold 0's test genes)"}
    for ax, name in zip(axes, ("input", "refined")):
        if facts["kind"] == "regression":
            points = ax.scatter(frame[f"{name}_x"], frame[f"{name}_y"], c=frame["label"], s=6, cmap="viridis")
            fig.colorbar(points, ax=ax, shrink=0.8)
        else:
            for cls, part in frame.groupby("label", sort=True):
                ax.scatter(part[f"{name}_x"], part[f"{name}_y"], s=6, label=str(cls), alpha=0.8)
            ax.legend(fontsize=8, markerscale=2, title=facts["task"], title_fontsize=8)
        score = facts.get(f"{name}_silhouette")
        spread = facts.get(f"{name}_silhouette_std")
        ax.set_title(titles[name] + (f"\nsilhouette {score:.2f} ± {spread:.2f} over folds" if score is not None else ""),
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return plotting.save(fig, path)


def main(args, base: TrainConfig) -> int:
    run_dir = args.run
    if run_dir is None:
        config = dataclasses.replace(base, graph=args.graph).resolved()
        run_dir = args.out / "runs" / f"{args.graph}-{config.model}"
        train(config, run_dir)
    frame, facts = maps(run_dir, args.perplexity)
    write_csv(frame, args.out / "embeddings.csv")
    plot(frame, facts, args.out / "embeddings.png")
    scores = ", ".join(f"{k} {v:.3f} ± {facts[k + '_std']:.3f}" for k, v in facts.items() if k.endswith("silhouette"))
    print(f"embeddings {facts['task']}: {facts['genes']} test genes of fold 0 mapped, from {run_dir}"
          + (f"; {scores}" if scores else ""))
    print(f"outputs: {args.out / 'embeddings.csv'}, {args.out / 'embeddings.png'}")
    return 0
