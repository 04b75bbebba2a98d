"""A finished cross-validation as files a biologist can read (plain arrays in, files out).

Run directory::

    config.yaml  inputs.json  train.log  metrics.json
    genes_skipped.csv               genes of the task file left out (not a graph node, conflicting labels)
    report.png                      ROC, precision-recall, score distribution, calibration (genen_dgl.report)
    history.csv                     per split and epoch: training loss, validation loss and metrics
    predictions.csv                 out-of-fold prediction of each labelled gene (per seed)
    scores.csv                      every gene of the graph, ranked: mean over the fold models
    embeddings.oof.npy, embeddings.oof.genes.csv
                                    labelled genes' refined embeddings, each from the fold
                                    model that did not train on it (first seed)
    embeddings.npy, embeddings.genes.txt
                                    every gene, from one model refitted on all labelled
                                    genes (``--refit``, the default)
    fold{k}/ (seed{s}-fold{k}/ for later seeds), refit/: best.pt (last.pt: --keep-checkpoints last
                                    or while the split trains), result.json, history.json
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig
from genen_dgl.data.labels import Labels
from genen_dgl.evaluation import paired_test, summarize
from genen_dgl.provenance import environment
from genen_dgl.report import write_report
from genen_dgl.trainer import CrossValidation, Split

log = logging.getLogger(__name__)

SKIPPED = "genes_skipped.csv"


def run_meta(config: TrainConfig, seconds: float, device, **extra) -> dict:
    """What a report says about its run before its numbers (config.task is the resolved task),
    with the environment that computed them (version, commit, device, libraries)."""
    return {"task": config.task, "graph": config.graph, "model": config.model, "sampler": config.sampler,
            "edge_weight": config.edge_weight, "seeds": config.seeds, "seconds": round(seconds, 2),
            "device": str(device), "environment": environment(device), **extra}


def class_counts(labels: Labels, splits: list[Split]) -> dict:
    """Genes per class overall and in each split's train / validation / test part."""
    if labels.kind == "regression":
        return {}

    def count(rows) -> dict[str, int]:
        n = np.bincount(labels.values[rows], minlength=labels.num_classes)
        return {c: int(k) for c, k in zip(labels.classes, n)}

    return {"class_counts": count(np.arange(len(labels.values))),
            "fold_class_counts": [{"seed": s.seed, "fold": s.k, **{part: count(getattr(s.fold, part))
                                                                   for part in ("train", "val", "test")}}
                                  for s in splits]}


def write_outputs(run_dir: Path, meta: dict, labels: Labels, nodes: np.ndarray, gene_ids: list[str],
                  splits: list[Split], cv: CrossValidation, baselines: dict,
                  baseline_oof: dict[str, dict[int, np.ndarray]]) -> dict:
    """metrics.json (``meta`` first: task, graph, model, ...; then the splits' metrics, the
    baselines' and the paired tests), predictions, scores, embeddings and report.png (with
    the baselines' out-of-fold outputs ``baseline_oof``); returns the report."""
    key = "pearson" if labels.kind == "regression" else "auc"
    summary = summarize(cv.results)
    test_share = len(splits[0].fold.test) / len(nodes)
    comparisons = {name: paired_test([r[key] for r in cv.results], [f[key] for f in b["folds"]], test_share)
                   for name, b in baselines.items()}
    report = {
        **meta, "kind": labels.kind, "classes": labels.classes,
        **({"positive_class": labels.classes[1]} if labels.kind == "binary" else {}),
        "labelled_genes": int(len(nodes)), **class_counts(labels, splits),
        "skipped_genes": {"count": len(labels.skipped), "file": SKIPPED}, "folds": cv.results, "summary": summary,
        "baselines": baselines, "comparisons": {"metric": key, **comparisons},
        "embeddings": ({"file": "embeddings.npy", "model": f"refit on all labelled genes for {cv.refit[0]} epochs",
                        "layer": "last hidden layer, before its activation (width --hidden)"}
                       if cv.refit else None),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    write_skipped(run_dir, labels)
    _write_predictions(run_dir, labels, nodes, np.asarray(gene_ids), splits, cv.outputs)
    write_report(run_dir, labels, nodes, splits, [out for out, _ in cv.outputs], baseline_oof)
    history = pd.DataFrame([{"seed": s.seed, "fold": s.k, **row} for s, h in zip(splits, cv.histories) for row in h])
    with atomic_path(run_dir / "history.csv") as tmp:
        history.to_csv(tmp, index=False)
    if cv.refit:
        with atomic_path(run_dir / "embeddings.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, cv.refit[1].astype(np.float32))
        with atomic_path(run_dir / "embeddings.genes.txt") as tmp:
            tmp.write_text("\n".join(gene_ids) + "\n")
    log.info("summary %s | %s", _fmt(summary),
             " | ".join(f"{name} {_fmt(b['summary'])}" for name, b in baselines.items()))
    return report


def write_skipped(run_dir: Path, labels: Labels) -> None:
    """genes_skipped.csv: every gene of the task file left out of the task, and why."""
    with atomic_path(run_dir / SKIPPED) as tmp:
        pd.DataFrame(labels.skipped, columns=["gene", "reason"]).to_csv(tmp, index=False)


def _write_predictions(run_dir: Path, labels: Labels, nodes: np.ndarray, genes: np.ndarray, splits: list[Split],
                       outputs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """predictions.csv (out-of-fold, labelled genes), embeddings.oof.* (first seed) and
    scores.csv (every gene, mean over the fold models, ranked)."""
    rows, oof, oof_rows = [], [], []
    first_seed = splits[0].seed
    for split, (out, hidden) in zip(splits, outputs):
        test = split.fold.test
        truth = labels.values[test] if labels.kind == "regression" else np.asarray(labels.classes)[labels.values[test]]
        frame = pd.DataFrame({"gene": labels.genes[test], "seed": split.seed, "fold": split.k, "y_true": truth})
        frame = pd.concat([frame, _output_columns(out[nodes[test]], labels)], axis=1)
        rows.append(frame)
        if split.seed == first_seed:
            oof.append(hidden[nodes[test]])
            oof_rows.append(pd.DataFrame({"gene": labels.genes[test], "fold": split.k}))
    with atomic_path(run_dir / "predictions.csv") as tmp:
        pd.concat(rows).sort_values(["seed", "gene"]).to_csv(tmp, index=False)
    with atomic_path(run_dir / "embeddings.oof.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(oof).astype(np.float32))
    with atomic_path(run_dir / "embeddings.oof.genes.csv") as tmp:
        pd.concat(oof_rows).to_csv(tmp, index=False)
    mean = np.mean([out for out, _ in outputs], axis=0)
    frame = pd.DataFrame({"gene": genes, "labelled": False, "label": ""})
    known = labels.classes if labels.kind != "regression" else None
    frame.loc[nodes, "labelled"] = True
    frame.loc[nodes, "label"] = [known[v] if known else f"{v:g}" for v in labels.values]
    frame = pd.concat([frame, _output_columns(mean, labels)], axis=1)
    rank = frame["y_pred"] if labels.kind == "regression" else (
        frame[f"p_{labels.classes[1]}"] if labels.kind == "binary" else frame.filter(like="p_").max(axis=1))
    frame = frame.assign(score=rank).sort_values("score", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    with atomic_path(run_dir / "scores.csv") as tmp:
        frame.to_csv(tmp, index=False)


def _output_columns(out: np.ndarray, labels: Labels) -> pd.DataFrame:
    """A model's outputs as columns: ``y_pred`` (class name or value), ``p_CLASS`` each."""
    if labels.kind == "regression":
        return pd.DataFrame({"y_pred": out[:, 0]})
    frame = pd.DataFrame({"y_pred": np.asarray(labels.classes, dtype=object)[out.argmax(1)]})
    for i, name in enumerate(labels.classes):
        frame[f"p_{name}"] = out[:, i]
    return frame


def _fmt(summary: dict) -> str:
    means = [k[:-5] for k in summary if k.endswith("_mean")]
    return ", ".join(f"{m}={summary[m + '_mean']:.3f}±{summary[m + '_std']:.3f}" for m in means)
