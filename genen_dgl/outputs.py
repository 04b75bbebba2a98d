"""A finished cross-validation as files a biologist can read (plain arrays in, files out).

Run directory::

    config.yaml  inputs.json  train.log  metrics.json
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
from genen_dgl.evaluation import ANNOTATION_STRATA, TEXT_SOURCES, annotation_stratum, paired_test, strata, summarize
from genen_dgl.trainer import CrossValidation, Split

log = logging.getLogger(__name__)


def run_meta(config: TrainConfig, seconds: float, device, **extra) -> dict:
    """What a report says about its run before its numbers (config.task is the resolved task)."""
    return {"task": config.task, "graph": config.graph, "model": config.model, "sampler": config.sampler,
            "edge_weight": config.edge_weight, "seeds": config.seeds,
            "hide_test_annotations": config.hide_test_annotations, "seconds": round(seconds, 2),
            "device": str(device), **extra}


def out_of_fold(splits: list[Split], nodes: np.ndarray, outputs: list[tuple[np.ndarray, np.ndarray]]
                ) -> dict[int, np.ndarray]:
    """The GNN's out-of-fold outputs per seed, one row per labelled gene."""
    per_seed: dict[int, np.ndarray] = {}
    for split, (out, _) in zip(splits, outputs):
        rows = per_seed.setdefault(split.seed, np.zeros((len(nodes), out.shape[1]), out.dtype))
        rows[split.fold.test] = out[nodes[split.fold.test]]
    return per_seed


def stratified(labels: Labels, per_model: dict[str, dict[int, np.ndarray]], annotations: np.ndarray,
               sources: np.ndarray) -> dict:
    """metrics.json's ``strata``: each model's metric per annotation count and per text
    source of the labelled genes (:func:`genen_dgl.evaluation.strata`)."""
    out = {}
    for by, groups, names, what in (
            ("annotations", annotation_stratum(annotations), tuple(n for n, _, _ in ANNOTATION_STRATA),
             "GO terms annotated to the gene in the full graph (before any hiding)"),
            ("text_source", sources, TEXT_SOURCES, "where the gene's input text comes from")):
        per = {m: strata(labels.kind, labels.values, o, groups, names) for m, o in per_model.items()}
        out[by] = {"what": what, "genes": {n: next(iter(per.values()))[n]["genes"] for n in names},
                   **{m: {n: {k: v for k, v in e.items() if k != "genes"} for n, e in p.items()}
                      for m, p in per.items()}}
    return out


def write_outputs(run_dir: Path, meta: dict, labels: Labels, nodes: np.ndarray, gene_ids: list[str],
                  splits: list[Split], cv: CrossValidation, baselines: tuple[dict, dict],
                  groups: tuple[np.ndarray, np.ndarray], smoothed: dict | None = None) -> dict:
    """metrics.json (``meta`` first: task, graph, model, ...; then the splits' metrics, the
    baselines' and the paired tests, and the strata; with ``smoothed``, Correct & Smooth's
    per-fold metrics (:func:`genen_dgl.correct_smooth.apply_per_fold`), summarised and tested
    against the model and each baseline), predictions, scores and embeddings; returns the
    report. ``baselines``: their report and out-of-fold outputs
    (:func:`genen_dgl.baselines.baselines_for`); ``groups``: the labelled genes' annotation
    counts and text sources."""
    baselines, baseline_outputs = baselines
    key = "pearson" if labels.kind == "regression" else "auc"
    summary = summarize(cv.results)
    test_share = len(splits[0].fold.test) / len(nodes)
    comparisons = {name: paired_test([r[key] for r in cv.results], [f[key] for f in b["folds"]], test_share)
                   for name, b in baselines.items()}
    report = {
        **meta, "kind": labels.kind, "classes": labels.classes,
        **({"positive_class": labels.classes[1]} if labels.kind == "binary" else {}),
        "labelled_genes": int(len(nodes)), "folds": cv.results, "summary": summary,
        "baselines": baselines, "comparisons": {"metric": key, **comparisons},
        **({"correct_smooth": _smoothed_report(smoothed, cv.results, baselines, key, test_share)} if smoothed else {}),
        "embeddings": ({"file": "embeddings.npy", "model": f"refit on all labelled genes for {cv.refit[0]} epochs",
                        "layer": "last hidden layer, before its activation (width --hidden)"}
                       if cv.refit else None),
        "strata": stratified(labels, {"gnn": out_of_fold(splits, nodes, cv.outputs), **baseline_outputs}, *groups),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    _write_predictions(run_dir, labels, nodes, np.asarray(gene_ids), splits, cv.outputs)
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
             " | ".join(f"{name} {_fmt(b['summary'])}" for name, b in [*baselines.items()] +
                        ([("correct_smooth", report["correct_smooth"])] if smoothed else [])))
    return report


def _smoothed_report(smoothed: dict, results: list[dict], baselines: dict, key: str, test_share: float) -> dict:
    """C&S's folds and summary (test), its validation summary beside the model's (the
    share that chooses between them), and paired tests against the model and each baseline."""
    scores = [f[key] for f in smoothed["folds"]]
    tests = {"model": paired_test(scores, [r[key] for r in results], test_share),
             **{name: paired_test(scores, [f[key] for f in b["folds"]], test_share) for name, b in baselines.items()}}
    return {"graph": smoothed["graph"], "alpha": smoothed["alpha"], "folds": smoothed["folds"],
            "summary": summarize(smoothed["folds"]),
            "val_summary": summarize(smoothed["val"]) if smoothed["val"] else {},
            "val_summary_model": summarize(smoothed["val_model"]) if smoothed["val_model"] else {},
            "comparisons": {"metric": key, **tests}}


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
