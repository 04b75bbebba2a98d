"""A finished cross-validation as files a biologist can read (plain arrays in, files out).

Run directory::

    config.yaml  inputs.json  train.log  metrics.json
    genes_skipped.csv               genes of the task file left out (not a graph node, conflicting labels)
    report.png                      ROC, precision-recall, score distribution, calibration (genen_dgl.report)
    history.csv                     per split and epoch: training loss, validation loss and metrics
    predictions.csv                 out-of-fold prediction of each labelled gene (per seed)
    scores.csv                      every gene of the graph, ranked: a labelled gene's out-of-fold
                                    score, an unlabelled gene's mean over the fold models;
                                    calibrated probability (binary tasks), GO annotation count,
                                    text source, whether it looks like the labelled genes
    calibration.png                 reliability diagram of the out-of-fold scores (classes)
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
from scipy.stats import spearmanr

from genen_dgl.atomic import atomic_path
from genen_dgl.baselines import NAMES, Baselines
from genen_dgl.calibration import BINS, Calibrator, cross_fit, quality, reliability
from genen_dgl.config import TrainConfig
from genen_dgl.data.genes import TEXT_SOURCES
from genen_dgl.data.labels import Labels
from genen_dgl.ensemble import columns, mean_rank
from genen_dgl.evaluation import ANNOTATION_STRATA, annotation_stratum, headline_metric, paired_test, strata, summarize
from genen_dgl.provenance import environment
from genen_dgl.report import write_report
from genen_dgl.splits import Split
from genen_dgl.training.fold import CrossValidation

log = logging.getLogger(__name__)

CALL_THRESHOLD = 0.5  # binary tasks: y_pred is the positive class where the calibrated probability is at least this
LIKE_RANGE = (5.0, 95.0)  # percentiles of the labelled genes' annotation counts that like_labelled accepts
SKIPPED = "genes_skipped.csv"


def run_meta(config: TrainConfig, seconds: float, device, **extra) -> dict:
    """What a report says about its run before its numbers (config.task is the resolved task),
    with the environment that computed them (version, commit, device, libraries)."""
    return {"task": config.task, "graph": config.graph, "model": config.model, "sampler": config.sampler,
            "edge_weight": config.edge_weight, "seeds": config.seeds,
            "hide_test_annotations": config.hide_test_annotations, "seconds": round(seconds, 2),
            "device": str(device), "environment": environment(device), **extra}


def class_counts(labels: Labels, splits: list[Split]) -> dict:
    """Genes per class overall and in each split's train / validation / test part."""
    if labels.kind == "regression":
        return {}

    def count(rows) -> dict[str, int]:
        y = labels.values[rows]
        n = y.sum(0) if labels.kind == "multilabel" else np.bincount(y, minlength=labels.num_classes)
        return {c: int(k) for c, k in zip(labels.classes, n)}

    return {"class_counts": count(np.arange(len(labels.values))),
            "fold_class_counts": [{"seed": s.seed, "fold": s.k, **{part: count(getattr(s.fold, part))
                                                                   for part in ("train", "val", "test")}}
                                  for s in splits]}


def per_seed_out_of_fold(splits: list[Split], nodes: np.ndarray, outputs: list[tuple[np.ndarray, np.ndarray]]
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
                  splits: list[Split], cv: CrossValidation, baselines: Baselines,
                  gene_info: pd.DataFrame, smoothed: dict | None = None, ensembled: dict | None = None) -> dict:
    """metrics.json (``meta`` first: task, graph, model, ...; then the splits' metrics, the
    baselines' and the paired tests, calibration, popularity and the strata; with
    ``smoothed``, Correct & Smooth's per-fold metrics
    (:func:`genen_dgl.correct_smooth.apply_per_fold`), with ``ensembled`` the ensemble's
    (:func:`genen_dgl.ensemble.apply_per_fold`), each summarised and tested against the
    model and each baseline), predictions, scores, the reliability diagram and embeddings;
    returns the report. ``baselines``: their report and outputs
    (:func:`genen_dgl.baselines.baselines_for`); ``gene_info``: per gene node,
    ``go_annotations`` (count) and ``text_source`` (:func:`genen_dgl.data.graph.gene_info`)."""
    every_gene, baseline_outputs, baselines = baselines.every_gene, baselines.per_seed, baselines.report
    key = headline_metric(labels.kind)
    summary = summarize(cv.results)
    test_share = len(splits[0].fold.test) / len(nodes)
    comparisons = {name: paired_test([r[key] for r in cv.results], [f[key] for f in b["folds"]], test_share)
                   for name, b in baselines.items()}
    oof = per_seed_out_of_fold(splits, nodes, cv.outputs)
    ranked = node_outputs(nodes, cv.outputs, oof)
    scores, calibration, curves = score_table(labels, nodes, np.asarray(gene_ids), splits, ranked,
                                              mean_rank([ranked, *every_gene.values()], labels.kind))
    scores, popularity = measure_popularity(scores, gene_info)
    report = {
        **meta, "kind": labels.kind, "classes": labels.classes,
        **({"positive_class": labels.classes[1]} if labels.kind == "binary" else {}),
        "labelled_genes": int(len(nodes)), **class_counts(labels, splits),
        "skipped_genes": {"count": len(labels.skipped), "file": SKIPPED}, "folds": cv.results, "summary": summary,
        "baselines": baselines, "comparisons": {"metric": key, **comparisons},
        **({"correct_smooth": _beside_model(smoothed, cv.results, baselines, key, test_share)} if smoothed else {}),
        **({"ensemble": _beside_model(ensembled, cv.results, baselines, key, test_share)} if ensembled else {}),
        "calibration": calibration, "popularity": popularity,
        "embeddings": ({"file": "embeddings.npy", "model": f"refit on all labelled genes for {cv.refit[0]} epochs",
                        "layer": "last hidden layer, before its activation (width --hidden)"}
                       if cv.refit else None),
        "strata": stratified(labels, {"gnn": oof, **baseline_outputs},
                             gene_info["go_annotations"].to_numpy()[nodes],
                             gene_info["text_source"].to_numpy()[nodes]),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    write_skipped(run_dir, labels)
    _write_predictions(run_dir, labels, nodes, splits, cv.outputs)
    with atomic_path(run_dir / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    if curves:
        reliability_diagram(run_dir / "calibration.png", curves, calibration)
    write_report(run_dir, labels, nodes, splits, [out for out, _ in cv.outputs], baseline_outputs, ranked)
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
                        [(k, report[k]) for k in ("correct_smooth", "ensemble") if k in report]))
    if calibration:
        log.info("calibration of the out-of-fold scores: %s", ", ".join(
            f"{k} Brier {calibration[k]['brier']:.4f}, ECE {calibration[k]['ece']:.4f}"
            for k in ("before", "after") if k in calibration))
    if popularity:
        log.info("popularity: Spearman %.3f between %d unlabelled genes' scores and their GO annotation counts; "
                 "%d of them look like the labelled genes", popularity["spearman_unlabelled"],
                 popularity["unlabelled_genes"], popularity["like_labelled_unlabelled"])
    return report


def _beside_model(derived: dict, results: list[dict], baselines: dict, key: str, test_share: float) -> dict:
    """A score derived from the model's outputs (Correct & Smooth, the ensemble): its folds
    and summary (test), its validation summary (beside the model's, where given: the share
    that chooses between them), and paired tests against the model and each baseline."""
    scores = [f[key] for f in derived["folds"]]
    tests = {"model": paired_test(scores, [r[key] for r in results], test_share),
             **{name: paired_test(scores, [f[key] for f in b["folds"]], test_share) for name, b in baselines.items()}}
    return {**{k: v for k, v in derived.items() if k not in ("folds", "val", "val_model")},
            "folds": derived["folds"], "summary": summarize(derived["folds"]),
            "val_summary": summarize(derived["val"]) if derived["val"] else {},
            **({"val_summary_model": summarize(derived["val_model"]) if derived["val_model"] else {}}
               if "val_model" in derived else {}),
            "comparisons": {"metric": key, **tests}}


def first_seed_folds(nodes: np.ndarray, splits: list[Split]) -> np.ndarray:
    """Each labelled gene's test fold in the first seed's folds (what calibration is
    cross-fitted over)."""
    fold_of = np.zeros(len(nodes), dtype=np.int64)
    for split in splits:
        if split.seed == splits[0].seed:
            fold_of[split.fold.test] = split.k
    return fold_of


def node_outputs(nodes: np.ndarray, outputs: list[tuple[np.ndarray, np.ndarray]],
                 per_seed: dict[int, np.ndarray]) -> np.ndarray:
    """What scores.csv ranks, per gene node: a labelled gene's output from the fold models
    that did not train on it (``per_seed``, :func:`per_seed_out_of_fold`, averaged over
    seeds), an unlabelled gene's mean over every fold model."""
    out = np.mean([o for o, _ in outputs], axis=0)
    out[nodes] = np.mean(list(per_seed.values()), axis=0)
    return out


def score_table(labels: Labels, nodes: np.ndarray, genes: np.ndarray, splits: list[Split],
                out: np.ndarray, ensemble: np.ndarray) -> tuple[pd.DataFrame, dict | None, dict]:
    """scores.csv as a frame (every gene, ranked), the calibration report and the curves
    of the reliability diagram, from ``out`` (:func:`node_outputs`). Binary
    tasks: ``probability`` is the Platt-calibrated positive-class probability (a labelled
    gene's cross-fitted, :func:`genen_dgl.calibration.cross_fit`) and ``y_pred`` the
    positive class where it is at least :data:`CALL_THRESHOLD`. ``ensemble``: every gene's
    mean rank under the GNN and the baselines (:func:`genen_dgl.ensemble.mean_rank`), as
    ``ensemble`` (binary: the positive class; regression) or ``ensemble_CLASS`` each."""
    oof, fold_of = out[nodes], first_seed_folds(nodes, splits)
    frame = pd.DataFrame({"gene": genes, "labelled": False, "label": "", "score_source": "mean of fold models"})
    frame.loc[nodes, "labelled"] = True
    frame.loc[nodes, "label"] = label_names(labels)
    frame.loc[nodes, "score_source"] = "out-of-fold"
    frame = pd.concat([frame, _output_columns(out, labels)], axis=1)
    if labels.kind in ("binary", "regression"):
        frame["ensemble"] = columns(ensemble, labels.kind)[:, 0]
    else:
        for i, name in enumerate(labels.classes):
            frame[f"ensemble_{name}"] = ensemble[:, i]
    calibration, curves = None, {}
    if labels.kind == "binary":
        y, positive = labels.values, labels.classes[1]
        honest = cross_fit(oof[:, 1], y, fold_of)
        calibrator = Calibrator().fit(oof[:, 1], y)
        probability = calibrator(out[:, 1])
        probability[nodes] = honest
        unlabelled = ~frame["labelled"].to_numpy()
        calibration = {
            "method": calibrator.describe(), "bins": BINS, "genes": int(len(y)),
            "before": quality(oof[:, 1], y), "after": quality(honest, y),
            "measured": "out-of-fold scores of the labelled genes (mean over seeds); 'after' cross-fitted over "
                        "the first seed's folds (each fold calibrated by a calibrator fitted on the others)",
            "call_threshold": CALL_THRESHOLD,
            "unlabelled_called_positive": {"before": _share(out[unlabelled, 1] >= 0.5),
                                           "after": _share(probability[unlabelled] >= CALL_THRESHOLD)},
            "labelled_prevalence": float(np.mean(y == 1)),
        }
        curves = {"out-of-fold score": reliability(oof[:, 1], y), "calibrated (cross-fitted)": reliability(honest, y)}
        frame["probability"] = probability
        frame["y_pred"] = np.where(probability >= CALL_THRESHOLD, positive, labels.classes[0])
    elif labels.kind == "multiclass":
        calibration = {"bins": BINS, "genes": int(len(nodes)), "before": quality(oof, labels.values),
                       "measured": "out-of-fold softmax probabilities; ECE on the top class"}
        curves = {"out-of-fold top class": reliability(oof, labels.values)}
    elif labels.kind == "multilabel":
        pairs = (oof.ravel(), labels.values.ravel())
        calibration = {"bins": BINS, "genes": int(len(nodes)), "before": quality(*pairs),
                       "measured": "out-of-fold sigmoid of each class, every gene-class pair pooled"}
        curves = {"out-of-fold, gene-class pairs": reliability(*pairs)}
    rank = frame["y_pred"] if labels.kind == "regression" else (
        frame[f"p_{labels.classes[1]}"] if labels.kind == "binary" else frame.filter(like="p_").max(axis=1))
    frame = frame.assign(score=rank).sort_values("score", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame, calibration, curves


def _share(flags: np.ndarray) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def label_names(labels: Labels) -> list[str]:
    """Each labelled gene's label as text (a multilabel gene's classes joined by ';')."""
    if labels.kind == "regression":
        return [f"{v:g}" for v in labels.values]
    if labels.kind == "multilabel":
        return _joined(labels.values > 0, labels.classes)
    return [labels.classes[v] for v in labels.values]


def _joined(hot: np.ndarray, classes: list[str]) -> list[str]:
    return [";".join(c for c, on in zip(classes, row) if on) for row in hot]


def measure_popularity(scores: pd.DataFrame, gene_info: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """scores.csv's ``go_annotations``, ``text_source`` and ``like_labelled`` columns, and the
    Spearman correlation between unlabelled genes' scores (and ``ensemble`` ranks, where
    one column) and their annotation counts.
    A gene looks like the labelled genes when its text source is one some labelled gene has
    and its annotation count lies within the labelled genes' LIKE_RANGE percentiles."""
    info = gene_info.reset_index(drop=True).loc[scores.index]
    scores = scores.assign(go_annotations=info["go_annotations"].to_numpy(), text_source=info["text_source"].to_numpy())
    labelled = scores["labelled"].to_numpy()
    counts = scores["go_annotations"].to_numpy()
    low, high = np.percentile(counts[labelled], LIKE_RANGE)
    sources = sorted(set(scores.loc[labelled, "text_source"]))
    like = scores["text_source"].isin(sources).to_numpy() & (counts >= low) & (counts <= high)
    scores["like_labelled"] = like
    unlabelled = ~labelled

    def rho(column: str) -> float:
        return float(spearmanr(scores.loc[unlabelled, column], counts[unlabelled]).statistic
                     if unlabelled.sum() > 2 else np.nan)

    return scores, {
        "spearman_unlabelled": rho("score"), "unlabelled_genes": int(unlabelled.sum()),
        **({"spearman_unlabelled_ensemble": rho("ensemble")} if "ensemble" in scores else {}),
        "median_annotations": {"labelled": float(np.median(counts[labelled])),
                               "unlabelled": float(np.median(counts[unlabelled])) if unlabelled.any() else None,
                               "top_100_unlabelled": float(np.median(counts[unlabelled][:100]))
                               if unlabelled.any() else None},
        "like_labelled_rule": {"text_sources": sources, "annotations_percentiles": list(LIKE_RANGE),
                               "annotations_range": [float(low), float(high)]},
        "like_labelled_unlabelled": int(like[unlabelled].sum()),
        "text_sources": {"labelled": _counts(scores.loc[labelled, "text_source"]),
                         "unlabelled": _counts(scores.loc[unlabelled, "text_source"])},
    }


def _counts(values: pd.Series) -> dict[str, int]:
    return {k: int(v) for k, v in values.value_counts().items()}


def reliability_diagram(path: Path, curves: dict[str, dict], calibration: dict) -> None:
    """calibration.png: observed frequency against mean confidence per bin, one line per
    curve, the diagonal for perfect calibration, the bins' gene counts below."""
    from genen_dgl.experiments.plotting import figure, save  # matplotlib only when a diagram is drawn

    fig, (ax, counts) = figure(2)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly calibrated")
    width = 1 / calibration["bins"]
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(c["confidence"], c["observed"], marker="o", ms=4, label=name)
        counts.bar(np.asarray(c["bin_low"]) + (i + 0.5) * width / len(curves), c["genes"], width / len(curves),
                   label=name)
    quality = ", ".join(f"{k}: Brier {calibration[k]['brier']:.3f}, ECE {calibration[k]['ece']:.3f}"
                        for k in ("before", "after") if k in calibration)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability (bin mean)", ylabel="observed frequency",
           title=quality)
    ax.legend(fontsize=8)
    counts.set(xlim=(0, 1), xlabel="predicted probability", ylabel="labelled genes per bin", yscale="log")
    save(fig, path)


def write_skipped(run_dir: Path, labels: Labels) -> None:
    """genes_skipped.csv: every gene of the task file left out of the task, and why."""
    with atomic_path(run_dir / SKIPPED) as tmp:
        pd.DataFrame(labels.skipped, columns=["gene", "reason"]).to_csv(tmp, index=False)


def _write_predictions(run_dir: Path, labels: Labels, nodes: np.ndarray, splits: list[Split],
                       outputs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """predictions.csv (out-of-fold, labelled genes, per seed) and embeddings.oof.* (first seed)."""
    rows, oof, oof_rows = [], [], []
    first_seed = splits[0].seed
    names = np.asarray(label_names(labels), dtype=object)
    for split, (out, hidden) in zip(splits, outputs):
        test = split.fold.test
        frame = pd.DataFrame({"gene": labels.genes[test], "seed": split.seed, "fold": split.k,
                              "y_true": labels.values[test] if labels.kind == "regression" else names[test]})
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


def _output_columns(out: np.ndarray, labels: Labels) -> pd.DataFrame:
    """A model's outputs as columns: ``y_pred`` (class name or value), ``p_CLASS`` each."""
    if labels.kind == "regression":
        return pd.DataFrame({"y_pred": out[:, 0]})
    if labels.kind == "multilabel":  # every class called at 0.5, joined by ';'
        frame = pd.DataFrame({"y_pred": _joined(out >= 0.5, labels.classes)})
    else:
        frame = pd.DataFrame({"y_pred": np.asarray(labels.classes, dtype=object)[out.argmax(1)]})
    for i, name in enumerate(labels.classes):
        frame[f"p_{name}"] = out[:, i]
    return frame


def _fmt(summary: dict) -> str:
    means = [k[:-5] for k in summary if k.endswith("_mean")]
    return ", ".join(f"{m}={summary[m + '_mean']:.3f}±{summary[m + '_std']:.3f}" for m in means)


def summary_line(report: dict, what: str, run_dir: Path) -> str:
    """The one line a finished run prints: the headline metric of the GNN (and of C&S and
    of its ensemble with the baselines, :mod:`genen_dgl.ensemble`) and of each baseline,
    each baseline that could not run with the reason, and the data's warnings (a relation
    that kept under 10% of its file's rows)."""
    key = report["comparisons"]["metric"]

    def value(summary: dict) -> str:
        return f"{summary[key + '_mean']:.3f} ± {summary[key + '_std']:.3f}"

    bases = [f"{NAMES[name]} {value(b['summary'])}" for name, b in report["baselines"].items()]
    bases += [f"{NAMES[name]} not run: {why}" for name, why in report.get("baselines_not_run", {}).items()]
    warnings = "".join(f"; warning: {w}" for w in report.get("warnings", []))
    cs, ens = report.get("correct_smooth"), report.get("ensemble")
    derived = (f", with C&S ({cs['graph']}) {value(cs['summary'])}" if cs else "") + \
        (f", ranked with the baselines {value(ens['summary'])}" if ens else "")
    return (f"{report['task']} ({report['kind']}), {what}: {key} {value(report['summary'])}{derived} "
            f"({', '.join(bases)}){warnings}; outputs in {run_dir}")
