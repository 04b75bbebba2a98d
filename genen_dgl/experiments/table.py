"""Baseline table (paper Table 1 and A.1): for every task of the dataset, the K-fold AUC
(Pearson for regression) and F1, mean ± sample std over folds (x seeds), of each model on
each graph variant and of the linear baselines (:mod:`genen_dgl.baselines`: text,
PPI-smoothed, GO annotations; ridge for regression), with each GNN row's paired test
against each baseline (``p_*`` columns: corrected resampled t-test), and, for the tasks
the paper reports, its GCN row and best other row (``paper_gcn``, ``paper_best``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import VARIANTS
from genen_dgl.data.spec import load_spec
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import primary, split_list, train, write_csv

log = logging.getLogger(__name__)

MODELS = ("gcn", "gat")


def add_arguments(parser) -> None:
    parser.add_argument("--tasks", help="tasks, comma-separated (default: every task of the dataset)")
    parser.add_argument("--models", help="models, comma-separated (default gcn,gat)")
    parser.add_argument("--variants", help="graph variants, comma-separated (default ppi,go,go_ppi)")


# The Genen paper's Table 1 (5-fold AUC, mean ± std) and Table A.1 (F1) for the tasks the
# real human dataset (examples/human) declares: its GCN row, and its best other row per task.
PAPER = {
    "dosage_sensitivity": {"auc": (0.89, 0.03), "f1": (0.82, 0.04), "best": ("PMC-LLaMA, GeneLLM", 0.89, 0.04)},
    "bivalent_vs_lys4": {"auc": (0.92, 0.01), "f1": (0.91, 0.03), "best": ("GPT2", 0.91, 0.06)},
    "tf_range": {"auc": (0.59, 0.08), "f1": (0.53, 0.04), "best": ("GPT2", 0.67, 0.13)},
    "tf_target_type": {"auc": (0.52, 0.03), "f1": (0.40, 0.01), "best": ("Gene2Vec", 0.58, 0.01)},
    "solubility": {"auc": (0.99, 0.02), "f1": (0.95, 0.01), "best": ("GeneLLM", 0.89, 0.01)},
}


def paper_rows(task: str, kind: str, folds: int) -> list[dict]:
    """The paper's GCN and best other row for ``task`` (none where the paper has no such task)."""
    if task not in PAPER:
        return []
    p = PAPER[task]
    name, mean, std = p["best"]
    common = {"task": task, "kind": kind, "metric": "auc", "n": np.nan, "f1_positive_mean": np.nan, "folds": folds}
    return [{**common, "model": "paper_gcn", "variant": "", "mean": p["auc"][0], "std": p["auc"][1],
             "f1_mean": p["f1"][0], "f1_std": p["f1"][1]},
            {**common, "model": "paper_best", "variant": name, "mean": mean, "std": std, "f1_mean": np.nan,
             "f1_std": np.nan}]


def row(task: str, kind: str, model: str, variant: str, summary: dict, folds: int, tests: dict | None = None) -> dict:
    metric = primary(kind)
    return {"task": task, "kind": kind, "model": model, "variant": variant, "metric": metric,
            "mean": summary[f"{metric}_mean"], "std": summary[f"{metric}_std"], "n": summary[f"{metric}_n"],
            "f1_mean": summary.get("f1_mean", np.nan), "f1_std": summary.get("f1_std", np.nan),
            "f1_positive_mean": summary.get("f1_positive_mean", np.nan), "folds": folds,
            **{f"p_vs_{name}": t["corrected_t_p"] for name, t in (tests or {}).items()}}


def collect(base: TrainConfig, out: Path, tasks: list[str], models: list[str], variants: list[str]) -> pd.DataFrame:
    """One row per task x model x variant, plus the baseline's row per task."""
    jobs = [(t, m, v) for t in tasks for m in models for v in variants]
    rows, seen = [], set()
    for task, model, variant in tqdm(jobs, desc="table", disable=None):
        # GAT has no edge weights; any other --config choice is kept for GCN only
        config = dataclasses.replace(base, task=task, model=model, graph=variant,
                                     edge_weight=base.edge_weight if model == "gcn" else None)
        report = train(config, out / "runs" / f"{task}-{model}-{variant}")
        if task not in seen:  # the baselines see the same features and folds in every run of a task
            seen.add(task)
            for name, b in report["baselines"].items():
                rows.append(row(task, report["kind"], name, "", b["summary"], base.folds))
        tests = {k: v for k, v in report["comparisons"].items() if k != "metric"}
        rows.append(row(task, report["kind"], model, variant, report["summary"], base.folds, tests))
    kinds = {r["task"]: r["kind"] for r in rows}
    rows += [r for t in tasks if t in kinds for r in paper_rows(t, kinds[t], base.folds)]
    return pd.DataFrame(rows)


def label(model: str, variant: str) -> str:
    """Row name: model and graph variant (the paper's best other row: its model is in the cell)."""
    return plotting.pretty(model) + (f" · {variant}" if variant and model != "paper_best" else "")


def markdown(frame: pd.DataFrame) -> str:
    """Two tables as in the paper: the headline metric, then F1 (regression: Pearson again, as A.1)."""
    frame = frame.assign(name=[label(m, v) for m, v in zip(frame["model"], frame["variant"])])
    tasks = list(dict.fromkeys(frame["task"]))
    kinds = dict(zip(frame["task"], frame["kind"]))
    heads = [f"{t} (Pearson)" if kinds[t] == "regression" else t for t in tasks]
    folds = int(frame["folds"].iloc[0])
    parts = []
    for title, mean, std in ((f"{folds}-fold AUC (Pearson for regression)", "mean", "std"),
                             (f"{folds}-fold F1 (Pearson for regression)", "f1_mean", "f1_std")):
        lines = [f"**{title}**", "", "| Model | " + " | ".join(heads) + " |", "|---" * (len(tasks) + 1) + "|"]
        for name, part in frame.groupby("name", sort=False):
            cells = []
            for t in tasks:
                r = part[part["task"] == t]
                if r.empty:
                    cells.append("—")
                    continue
                r = r.iloc[0]
                m, s = (r["mean"], r["std"]) if kinds[t] == "regression" else (r[mean], r[std])
                named = f" ({r['variant']})" if r["model"] == "paper_best" else ""
                cells.append("—" if pd.isna(m) else f"{m:.2f} ± {s:.2f}{named}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.assign(name=[label(m, v) for m, v in zip(frame["model"], frame["variant"])])
    tasks = list(dict.fromkeys(frame["task"]))
    fig, axes = plotting.figure(1, (max(4.6, 1.6 * len(tasks) + 2.2), 3.6))
    plotting.grouped_bars(axes[0], frame, "task", "name", "AUC (Pearson for regression)")
    plotting.legend_outside(axes)
    return plotting.save(fig, path)


def main(args, base: TrainConfig) -> int:
    spec = load_spec(base.data)
    tasks = split_list(args.tasks, tuple(spec.tasks), "task") or list(spec.tasks)
    models = split_list(args.models, MODELS, "model") or list(MODELS)
    variants = split_list(args.variants, VARIANTS, "graph variant") or list(VARIANTS)
    frame = collect(base, args.out, tasks, models, variants)
    write_csv(frame, args.out / "table.csv")
    text = markdown(frame)
    with atomic_path(args.out / "table.md") as tmp:
        tmp.write_text(text)
    plot(frame, args.out / "table.png")
    print(text)
    print(f"outputs: {args.out / 'table.csv'}, {args.out / 'table.md'}, {args.out / 'table.png'}")
    return 0
