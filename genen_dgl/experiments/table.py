"""Baseline table (paper Table 1 and A.1): for every task of the dataset, the K-fold AUC
(Pearson for regression) and F1, mean ± sample std over folds (x seeds), of each model on
each graph variant and of the baselines (:mod:`genen_dgl.baselines`: text, PPI-smoothed,
GO annotations, label propagation over PPI and gene–GO–gene; ridge for regression), with
each GNN row's paired test against each baseline (``p_*`` columns: corrected resampled
t-test) and its validation-share metric (``val_mean``: what a configuration is chosen
on), and, for the tasks the paper reports, its GCN row and best other row
(``paper_gcn``, ``paper_best``).

``--regime standard,novel`` runs every cell in both regimes (novel: each fold's test genes
without their GO annotations, ``hide_test_annotations``). Each cell (task x regime x model
x variant) is one run in ``OUT/runs/NAME``; its rows, strata and wall-clock cost are
written to ``OUT/cells/NAME.json`` as soon as it finishes, so an interrupted table
continues where it stopped (finished cells read back, an unfinished run resumed from its
checkpoints). ``--jobs N`` trains N cells at once, each in its own process. Outputs:
``table.csv`` (with ``regime``, ``val_mean``, ``seconds``), ``strata.csv`` (the metric
per annotation-count and text-source stratum), ``table.md``, ``table.png``."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.config import CHOICES, TrainConfig
from genen_dgl.baselines import NAMES
from genen_dgl.ensemble import SUFFIX as ENSEMBLE
from genen_dgl.schema import VARIANTS
from genen_dgl.data.labels import read_labels
from genen_dgl.data.spec import load_spec
from genen_dgl.experiments import plotting
from genen_dgl.errors import InputError
from genen_dgl.evaluation import headline_metric
from genen_dgl.experiments.common import split_list, train, write_csv

log = logging.getLogger(__name__)

MODELS = CHOICES["model"]
REGIMES = ("standard", "novel")
NO_F1 = {"f1_mean": np.nan, "f1_std": np.nan, "f1_positive_mean": np.nan}


def add_arguments(parser) -> None:
    parser.add_argument("--tasks", help="tasks, comma-separated (default: every task of the dataset; the tasks with "
                                        "fewest labelled genes are trained first)")
    parser.add_argument("--models", help="models, comma-separated (default gcn,gat)")
    parser.add_argument("--variants", help="graph variants, comma-separated (default ppi,go,go_ppi)")
    parser.add_argument("--regime", default="standard",
                        help="standard (every gene keeps its annotations), novel (each fold's test genes lose their "
                             "GO edges: --hide-test-annotations), or both, comma-separated (default standard)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells trained at once, each in its own process (default 1: in this process)")
    parser.add_argument("--finished-only", action="store_true",
                        help="write the table from the cells already finished in OUT, training nothing")


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
    common = {"task": task, "regime": "standard", "kind": kind, "metric": "auc", "n": np.nan, "f1_positive_mean": np.nan, "folds": folds}
    return [{**common, "model": "paper_gcn", "variant": "", "mean": p["auc"][0], "std": p["auc"][1],
             "f1_mean": p["f1"][0], "f1_std": p["f1"][1]},
            {**common, "model": "paper_best", "variant": name, "mean": mean, "std": std, "f1_mean": np.nan,
             "f1_std": np.nan}]


def row(task: str, kind: str, model: str, variant: str, summary: dict, folds: int, tests: dict | None = None,
        regime: str = "standard") -> dict:
    metric = headline_metric(kind)
    return {"task": task, "regime": regime, "kind": kind, "model": model, "variant": variant, "metric": metric,
            "mean": summary[f"{metric}_mean"], "std": summary[f"{metric}_std"], "n": summary[f"{metric}_n"],
            "f1_mean": summary.get("f1_mean", np.nan), "f1_std": summary.get("f1_std", np.nan),
            "f1_positive_mean": summary.get("f1_positive_mean", np.nan), "folds": folds,
            **{f"p_vs_{name}": t["corrected_t_p"] for name, t in (tests or {}).items()}}


@dataclass(frozen=True)
class Cell:
    """One training run of the table: a task in a regime, one model on one graph variant."""

    task: str
    regime: str
    model: str
    variant: str

    @property
    def name(self) -> str:  # standard cells keep the folder names of earlier tables
        return f"{self.task}-{self.model}-{self.variant}" + ("-novel" if self.regime == "novel" else "")

    def config(self, base: TrainConfig) -> TrainConfig:
        # GAT has no edge weights; any other --config choice is kept for GCN only
        return dataclasses.replace(base, task=self.task, model=self.model, graph=self.variant,
                                   edge_weight=base.edge_weight if self.model == "gcn" else None,
                                   hide_test_annotations=self.regime == "novel")


def validation(run_dir: Path, report: dict) -> tuple[float, float]:
    """Mean and std over splits of the headline metric on the validation share at each
    split's best epoch: what a configuration is chosen on (never the test folds)."""
    metric = "val_" + report["comparisons"]["metric"]
    history = pd.read_csv(run_dir / "history.csv").set_index(["seed", "fold", "epoch"])
    if metric not in history.columns:
        return np.nan, np.nan
    values = np.array([history.loc[(f["seed"], f["fold"], f["best_epoch"]), metric] for f in report["folds"]], float)
    return float(np.nanmean(values)), float(np.nanstd(values, ddof=1)) if len(values) > 1 else np.nan


def ensemble_row(cell: Cell, report: dict, folds: int) -> dict:
    """The row of the GNN ranked with the baselines (:mod:`genen_dgl.ensemble`): test
    metric, validation metric and its tests against each baseline."""
    ens, metric = report["ensemble"], report["comparisons"]["metric"]
    tests = {k: v for k, v in ens["comparisons"].items() if k not in ("metric", "model")}
    return {**row(cell.task, report["kind"], cell.model + ENSEMBLE, cell.variant, ens["summary"], folds, tests,
                  cell.regime),
            "val_mean": ens["val_summary"].get(f"{metric}_mean", np.nan),
            "val_std": ens["val_summary"].get(f"{metric}_std", np.nan)}


def strata_rows(cell: Cell, report: dict, model: str, variant: str, key: str) -> list[dict]:
    """The strata of ``key`` (``gnn`` or a baseline) in a run's metrics.json as rows."""
    metric = report["comparisons"]["metric"]
    return [{"task": cell.task, "regime": cell.regime, "model": model, "variant": variant, "by": by,
             "stratum": stratum, "genes": part["genes"][stratum], "mean": v[metric], "std": v[f"{metric}_std"]}
            for by, part in report["strata"].items() for stratum, v in part[key].items()]


def finished_cell(base: TrainConfig, out: Path, cell: Cell) -> dict | None:
    """A cell's rows as ``OUT/cells/NAME.json`` holds them for the same config, else None."""
    path = out / "cells" / f"{cell.name}.json"
    if path.exists():
        done = json.loads(path.read_text())
        if done["config"] == dataclasses.asdict(cell.config(base)):
            return done
    return None


def run_cell(base: TrainConfig, out: Path, cell: Cell) -> dict:
    """Train one cell (a finished run reused, an interrupted one resumed) and write its rows
    to ``OUT/cells/NAME.json`` at once; a cell already written for the same config is read back."""
    done = finished_cell(base, out, cell)
    if done is not None:
        return done
    config = cell.config(base)
    path = out / "cells" / f"{cell.name}.json"
    start = time.perf_counter()
    run_dir = out / "runs" / cell.name
    report = train(config, run_dir)
    tests = {k: v for k, v in report["comparisons"].items() if k != "metric"}
    kind, folds = report["kind"], base.folds
    gnn = {**row(cell.task, kind, cell.model, cell.variant, report["summary"], folds, tests, cell.regime),
           **dict(zip(("val_mean", "val_std"), validation(run_dir, report)))}
    done = {"cell": dataclasses.asdict(cell), "config": dataclasses.asdict(config), "kind": kind,
            "seconds": round(time.perf_counter() - start, 1), "run_seconds": report["seconds"], "gnn": gnn,
            "ensemble": ensemble_row(cell, report, folds),
            "baselines": [row(cell.task, kind, name, "", b["summary"], folds, regime=cell.regime)
                          for name, b in report["baselines"].items()],
            "strata": strata_rows(cell, report, cell.model, cell.variant, "gnn"),
            "baseline_strata": [r for name in report["baselines"] for r in strata_rows(cell, report, name, "", name)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(done, indent=1))
    return done


def worker_logging(level: int) -> None:
    """A worker process logs as this one: the package's records at ``level`` (into each
    run's train.log), warnings and errors also on stderr."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("genen_dgl").setLevel(level)


def run_cells(base: TrainConfig, out: Path, cells: list[Cell], jobs: int) -> list[dict]:
    """Every cell, in order (``jobs`` > 1: that many at once, each in a fresh process);
    each finished cell is on disk as soon as it finishes, so an interrupted table resumes.
    A failed cell is logged and the others go on; the first failure is raised at the end."""
    results: dict[Cell, dict] = {}
    failed: list[BaseException] = []

    def finished(i: int, cell: Cell, done: dict) -> None:
        results[cell] = done
        g = done["gnn"]
        log.info("cell %d/%d %s (%s): %s %.3f ± %.3f, %.0f s", i + 1, len(cells), cell.name, cell.regime, g["metric"],
                 g["mean"], g["std"], done["seconds"])

    if jobs <= 1:
        for i, cell in enumerate(tqdm(cells, desc="table", disable=None)):
            finished(i, cell, run_cell(base, out, cell))
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter per run: no forked torch/DGL threads
        level = logging.getLogger("genen_dgl").getEffectiveLevel()
        with ProcessPoolExecutor(jobs, mp_context=context, max_tasks_per_child=1, initializer=worker_logging,
                                 initargs=(level,)) as pool:
            futures = {pool.submit(run_cell, base, out, cell): (i, cell) for i, cell in enumerate(cells)}
            try:
                for future in as_completed(futures):
                    i, cell = futures[future]
                    try:
                        finished(i, cell, future.result())
                    except Exception as err:  # noqa: BLE001 - the other cells go on; raised below
                        log.error("cell %s failed: %s", cell.name, err)
                        failed.append(err)
            except KeyboardInterrupt:
                pool.shutdown(cancel_futures=True)
                raise
    if failed:
        raise failed[0]
    return [results[c] for c in cells]


def smallest_first(spec, cells: list[Cell]) -> list[Cell]:
    """``cells`` in the order to train them: the first configuration (model x variant) on
    every task and regime, tasks with fewest labelled genes first, then the next
    configuration, and so on: a long table has numbers for every task and regime early."""
    sizes = {name: len(read_labels(t.file, t.gene_column, t.label_column, t.type, t.duplicates).genes)
             for name, t in spec.tasks.items() if name in {c.task for c in cells}}
    configs = list(dict.fromkeys((c.model, c.variant) for c in cells))
    return sorted(cells, key=lambda c: (configs.index((c.model, c.variant)), sizes[c.task]))


def collect(base: TrainConfig, out: Path, tasks: list[str], models: list[str], variants: list[str],
            regimes: list[str] = ("standard",), jobs: int = 1,
            finished_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per task x regime x model x variant, each regime's baselines per task, and
    the paper's rows (standard regime); and the strata of each of them. ``finished_only``:
    the cells already on disk, nothing trained (a look at a table still running)."""
    cells = [Cell(t, r, m, v) for t in tasks for r in regimes for m in models for v in variants]
    if finished_only:
        found = {c: finished_cell(base, out, c) for c in cells}
        cells = [c for c in cells if found[c] is not None]
        if not cells:
            raise InputError("no finished cell of this table yet", out / "cells")
        log.info("%d of %d cells finished", len(cells), len(found))
    else:
        order = smallest_first(load_spec(base.data), cells)
        found = dict(zip(order, run_cells(base, out, order, jobs)))
    done = [found[c] for c in cells]
    rows, strata, seen = [], [], set()
    for cell, d in zip(cells, done):
        if (cell.task, cell.regime) not in seen:  # the same folds and inputs in every run of a task and regime
            seen.add((cell.task, cell.regime))
            rows += d["baselines"]
            strata += d["baseline_strata"]
        rows.append({**d["gnn"], "seconds": d["seconds"]})
        if d.get("ensemble"):  # cells written before the ensemble existed have none
            rows.append({**d["ensemble"], **NO_F1})  # a ranking has no threshold of its own to cut at
        strata += d["strata"]
    kinds = {r["task"]: r["kind"] for r in rows}
    if "standard" in regimes:
        rows += [r for t in tasks if t in kinds for r in paper_rows(t, kinds[t], base.folds)]
    log.info("table: %d cells, %.0f s of wall-clock in all (each cell's own cost, summed; --jobs overlaps them)",
             len(cells), sum(d["seconds"] for d in done))
    return pd.DataFrame(rows), pd.DataFrame(strata)


def label(model: str, variant: str, regime: str = "standard") -> str:
    """Row name: model and graph variant (the paper's best other row: its model is in the
    cell), and the regime where it is not the standard one."""
    return (plotting.pretty(model) + (f" · {variant}" if variant and model != "paper_best" else "")
            + (f" ({regime})" if regime != "standard" else ""))


def names(frame: pd.DataFrame) -> list[str]:
    return [label(m, v, r) for m, v, r in zip(frame["model"], frame["variant"], frame["regime"])]


def wide(frame: pd.DataFrame) -> str:
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
    return "\n\n".join(parts)


def tests(frame: pd.DataFrame) -> str:
    """Per task and regime, each configuration's and baseline's mean ± std, its validation
    metric (what a configuration is chosen on) and its corrected t-test p against each baseline."""
    frame = frame[~frame["model"].isin(["paper_gcn", "paper_best"])]
    p_cols = [c for c in frame.columns if c.startswith("p_vs_")]
    heads = ["task", "regime", "row", "test mean ± std", "validation", *(f"p vs {NAMES[c[5:]]}" for c in p_cols)]
    lines = ["**Choice (on the validation share) and corrected t-tests against each baseline**", "",
             "| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for _, r in frame.iterrows():
        val = "" if pd.isna(r.get("val_mean", np.nan)) else f"{r['val_mean']:.3f}"
        ps = ["" if pd.isna(r[c]) else f"{r[c]:.3g}" for c in p_cols]
        lines.append(f"| {r['task']} | {r['regime']} | {label(r['model'], r['variant'])} | "
                     f"{r['mean']:.3f} ± {r['std']:.3f} | {val} | " + " | ".join(ps) + " |")
    return "\n".join(lines)


def strata_markdown(strata: pd.DataFrame) -> str:
    """The headline metric per stratum (genes in it), one table per regime and grouping."""
    parts = []
    for (regime, by), part in strata.groupby(["regime", "by"], sort=False):
        columns = list(dict.fromkeys(part["stratum"]))
        lines = [f"**{regime} regime, by {by}** (out-of-fold, pooled per seed; mean over seeds, genes in the "
                 "stratum)", "", "| task | row | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
        for (task, model, variant), rows in part.groupby(["task", "model", "variant"], sort=False):
            cells = rows.set_index("stratum")
            lines.append(f"| {task} | {label(model, variant)} | " + " | ".join(
                f"{'—' if pd.isna(cells.loc[c, 'mean']) else format(cells.loc[c, 'mean'], '.2f')} "
                f"({cells.loc[c, 'genes']})" for c in columns) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def markdown(frame: pd.DataFrame, strata: pd.DataFrame | None = None) -> str:
    """Per regime, the paper's two tables (headline metric, F1); then, for a table of runs,
    the choice-and-tests table and the strata."""
    regimes = list(dict.fromkeys(frame["regime"]))
    if len(regimes) == 1:
        parts = [wide(frame)]
    else:
        parts = [f"### {r} regime\n\n" + wide(frame[frame["regime"] == r]) for r in regimes]
    if "val_mean" in frame.columns:
        parts.append(tests(frame))
    if strata is not None and len(strata):
        parts.append(strata_markdown(strata))
    return "\n\n".join(parts) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.assign(name=names(frame))
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
    regimes = split_list(args.regime, REGIMES, "regime")
    if args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: expected an integer >= 1")
    frame, strata = collect(base, args.out, tasks, models, variants, regimes, args.jobs, args.finished_only)
    write_csv(frame, args.out / "table.csv")
    write_csv(strata, args.out / "strata.csv")
    text = markdown(frame, strata)
    with atomic_path(args.out / "table.md") as tmp:
        tmp.write_text(text)
    plot(frame, args.out / "table.png")
    print(text)
    print(f"outputs: {args.out / 'table.csv'}, {args.out / 'strata.csv'}, {args.out / 'table.md'}, "
          f"{args.out / 'table.png'}")
    return 0
