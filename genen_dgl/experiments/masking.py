"""Masking robustness (paper Fig. 4b, B.1): the headline metric as the share of nodes whose
input features are zeroed grows, one line per graph variant.

Masks come from ``TrainConfig.mask_rate``/``mask_nodes`` (seeded by each split's seed; at one
seed a lower rate's masked set is contained in a higher rate's). Labels are never touched.
The baseline lines are the trainer's linear baselines (:mod:`genen_dgl.baselines`) on the same
masked gene features; with ``--seeds N`` each seed draws its own mask.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genen_dgl.baselines import NAMES
from genen_dgl.config import TrainConfig
from genen_dgl.schema import VARIANTS
from genen_dgl.errors import InputError
from genen_dgl.experiments import plotting
from genen_dgl.evaluation import headline_metric
from genen_dgl.experiments.common import fold_rows, mean_std, split_list, train, write_csv

log = logging.getLogger(__name__)

DEFAULT_RATES = tuple(float(round(r, 2)) for r in np.arange(0, 0.91, 0.15))  # 0, 15, ..., 90 %
NODES = ("all", "gene", "go")
LABELS = {"all": "all nodes", "gene": "gene nodes", "go": "GO nodes"}


def parse_rates(text: str | None) -> list[float]:
    if text is None:
        return list(DEFAULT_RATES)
    try:
        rates = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise InputError(f"--rates {text!r}: expected comma-separated shares, e.g. 0,0.3,0.6") from None
    bad = [r for r in rates if not 0 <= r < 1]
    if bad or not rates:
        raise InputError(f"--rates {text!r}: expected shares in [0, 1), e.g. 0,0.3,0.6")
    return rates


def add_arguments(parser) -> None:
    parser.add_argument("--rates", help="masking shares, comma-separated (default 0 to 0.9 in steps of 0.15)")
    parser.add_argument("--variants", help="graph variants, comma-separated (default ppi,go,go_ppi)")
    parser.add_argument("--nodes", help="which nodes are masked: all, gene, go; comma-separated for several "
                        "(default all)")


def sweep(base: TrainConfig, out: Path, rates: list[float], variants: list[str],
          nodes: list[str]) -> tuple[pd.DataFrame, str]:
    """Train every (nodes, variant, rate); rows (rate, variant, nodes, fold, metrics...) and the task."""
    jobs = [(n, v, r) for n in nodes for v in variants for r in rates]
    skipped = [j for j in jobs if j[0] == "go" and j[1] == "ppi"]
    if skipped:
        log.info("variant ppi has no GO nodes: skipping its nodes=go runs")
    jobs = [j for j in jobs if j not in skipped]
    if not jobs:
        raise InputError("nothing to run: masking GO nodes needs a variant with GO terms (go, go_ppi)")
    rows, baselines = [], set()
    for n, v, r in tqdm(jobs, desc="masking", disable=None):
        config = dataclasses.replace(base, graph=v, mask_rate=float(r), mask_nodes=n)
        m = train(config, out / "runs" / f"{v}-{n}-{r:g}")
        rows += [{"rate": r, "variant": v, "nodes": n, **f} for f in fold_rows(m)]
        if (n, r) not in baselines:  # the baselines see the same gene features in every variant
            baselines.add((n, r))
            for name in m["baselines"]:
                rows += [{"rate": r, "variant": NAMES[name], "nodes": n, **f} for f in fold_rows(m, name)]
    return pd.DataFrame(rows), m["task"]


def plot(frame: pd.DataFrame, metric: str, path: Path, title: str) -> Path:
    nodes = list(dict.fromkeys(frame["nodes"]))
    fig, axes = plotting.figure(len(nodes))
    styles = {v: {"color": f"C{i}"} for i, v in enumerate(VARIANTS)}
    for i, name in enumerate(NAMES.values()):
        styles[name] = {"color": str(0.2 + 0.15 * i), "linestyle": ("--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))[i]}
    for ax, n in zip(axes, nodes):
        stats = mean_std(frame[frame["nodes"] == n].assign(pct=lambda f: f["rate"] * 100), ["variant", "pct"], metric)
        plotting.error_lines(ax, stats, "pct", "variant", styles)
        ax.set_xlabel(f"masked {LABELS[n]} (%)")
        ax.set_ylabel(metric.upper() if metric == "auc" else metric.capitalize())
        ax.set_title(title, fontsize=10)
    plotting.legend_outside(axes)
    return plotting.save(fig, path)


def main(args, base: TrainConfig) -> int:
    rates = parse_rates(args.rates)
    variants = split_list(args.variants, VARIANTS, "graph variant") or list(VARIANTS)
    nodes = split_list(args.nodes, NODES, "node set") or ["all"]
    frame, task = sweep(base, args.out, rates, variants, nodes)
    metric = primary_metric(frame)
    write_csv(frame, args.out / "masking.csv")
    c = base.resolved()
    plot(frame, metric, args.out / "masking.png", f"{task}, {c.model.upper()}, {c.folds}-fold")
    stats = mean_std(frame, ["nodes", "variant", "rate"], metric)
    for (n, v), part in stats.groupby(["nodes", "variant"], sort=False):
        curve = ", ".join(f"{r:g}: {m:.3f}" for r, m in zip(part["rate"], part["mean"]))
        print(f"masking {n:<4} {v:<8} {metric} {curve}")
    print(f"outputs: {args.out / 'masking.csv'}, {args.out / 'masking.png'}")
    return 0


def primary_metric(frame: pd.DataFrame) -> str:
    return headline_metric("regression" if "pearson" in frame.columns else "binary")
