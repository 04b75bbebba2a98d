"""Embedding maps (paper Fig. 3): t-SNE of the labelled genes' input features and of their
refined embeddings (the run's ``embeddings.npy``, from its best fold), coloured by class.

Trains one run, or reads a finished one given with ``--run``. The silhouette score of the
classes in each full embedding space (not the 2-d map) puts a number on the separation.
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
from genen_dgl.data.graph import VARIANTS, load_graph
from genen_dgl.data.sample import ensure_sample
from genen_dgl.errors import InputError
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import train, write_csv

log = logging.getLogger(__name__)

RUN_FILES = ("config.yaml", "metrics.json", "predictions.csv", "embeddings.npy", "embeddings.genes.txt")


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


def load_run(run_dir: Path) -> tuple[TrainConfig, dict, pd.DataFrame, np.ndarray, list[str]]:
    missing = [f for f in RUN_FILES if not (run_dir / f).exists()]
    if missing:
        raise InputError(f"not a finished training run: {missing[0]} is missing", run_dir)
    config = TrainConfig(**yaml.safe_load((run_dir / "config.yaml").read_text()))
    report = json.loads((run_dir / "metrics.json").read_text())
    preds = pd.read_csv(run_dir / "predictions.csv", dtype={"gene": str}, keep_default_na=False)
    refined = np.load(run_dir / "embeddings.npy")
    ids = (run_dir / "embeddings.genes.txt").read_text().split("\n")[: len(refined)]
    return config, report, preds, refined, ids


def maps(run_dir: Path, perplexity: float) -> tuple[pd.DataFrame, dict]:
    """Rows (gene, label, input_x, input_y, refined_x, refined_y) and run facts."""
    config, report, preds, refined, ids = load_run(run_dir)
    data = load_graph(config.data or ensure_sample(), report["graph"])
    if data.gene_ids != ids:
        raise InputError("embeddings.genes.txt does not match the dataset's genes", run_dir)
    index = {g: i for i, g in enumerate(ids)}
    rows = np.array([index[g] for g in preds["gene"]])
    kind = report["kind"]
    x_in = data.graph.nodes["gene"].data["feat"].numpy()[rows]
    x_out = refined[rows]
    label = preds["y_true"].to_numpy()
    frame = pd.DataFrame({"gene": preds["gene"], "label": label if kind == "regression"
                          else np.array(report["classes"])[label.astype(int)]})
    facts = {"task": report["task"], "kind": kind, "model": report["model"], "graph": report["graph"],
             "fold": report["embedding_fold"], "genes": len(frame)}
    for name, x in (("input", x_in), ("refined", x_out)):
        xy = tsne(x, perplexity, config.seed, config.threads)
        frame[f"{name}_x"], frame[f"{name}_y"] = xy[:, 0], xy[:, 1]
        if kind != "regression" and len(set(label)) > 1:
            facts[f"{name}_silhouette"] = float(silhouette_score(x, label, random_state=config.seed))
    return frame, facts


def plot(frame: pd.DataFrame, facts: dict, path: Path) -> Path:
    fig, axes = plotting.figure(2, (4.4, 4.0))
    titles = {"input": "input features", "refined": f"Genen ({facts['model'].upper()}, {facts['graph']}, "
              f"fold {facts['fold']})"}
    for ax, name in zip(axes, ("input", "refined")):
        if facts["kind"] == "regression":
            points = ax.scatter(frame[f"{name}_x"], frame[f"{name}_y"], c=frame["label"], s=6, cmap="viridis")
            fig.colorbar(points, ax=ax, shrink=0.8)
        else:
            for cls, part in frame.groupby("label", sort=True):
                ax.scatter(part[f"{name}_x"], part[f"{name}_y"], s=6, label=str(cls), alpha=0.8)
            ax.legend(fontsize=8, markerscale=2, title=facts["task"], title_fontsize=8)
        score = facts.get(f"{name}_silhouette")
        ax.set_title(titles[name] + (f"\nsilhouette {score:.2f}" if score is not None else ""), fontsize=10)
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
    scores = ", ".join(f"{k} {v:.3f}" for k, v in facts.items() if k.endswith("silhouette"))
    print(f"embeddings {facts['task']}: {facts['genes']} labelled genes from {run_dir}"
          + (f"; {scores}" if scores else ""))
    print(f"outputs: {args.out / 'embeddings.csv'}, {args.out / 'embeddings.png'}")
    return 0
