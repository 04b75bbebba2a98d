"""Leakage check (paper Fig. 2a): a binary task (the paper's solubility) trained on the
graph with the GO leakage filter (the spec's ``go.exclude_words``, ``exclude_terms`` and
``exclude_branches``) and without it.

The unfiltered run needs a dataset spec without the filter. It is written to
``OUT/dataset.unfiltered.yaml``: ``base:`` the spec (absolute path) with its ``go``
section minus the filter (the dataset folder is not written to, beyond the graph cache
the trainer shares), and kept as the record of what was run.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd
import yaml

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import load_graph
from genen_dgl.schema import ANNOTATED, VARIANTS
from genen_dgl.data.spec import DatasetSpec, load_spec
from genen_dgl.errors import InputError
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import fold_rows, mean_std, train, write_csv

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--graph", choices=[v for v in VARIANTS if v != "ppi"], default="go_ppi",
                        help="graph variant with GO terms (default go_ppi)")


def unfiltered_spec(spec: DatasetSpec, path: Path) -> Path:
    """Write to ``path`` a spec that is ``spec`` (its ``base``) with no leakage filter:
    ``go.exclude_words: []`` and no excluded terms or branches; same graph cache folder."""
    go = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in spec.go.items()
          if k not in ("exclude_terms", "exclude_branches")}
    raw = {"base": str(spec.path.resolve()), "name": f"{spec.name}-unfiltered", "go": {**go, "exclude_words": []},
           "cache": str(spec.cache.resolve())}
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def first_binary(spec: DatasetSpec) -> str:
    for name, task in spec.tasks.items():
        if task.type == "binary":
            return name
    raise InputError("no task has type: binary; pass --task", spec.path)


def compare(base: TrainConfig, out: Path, graph: str) -> pd.DataFrame:
    """Train with and without the filter; rows (filter, exclude_words, go_nodes, gene_go_edges,
    model, fold, metrics...)."""
    spec = load_spec(base.data)
    words = spec.exclude_words
    if not any(spec.exclusions.values()):
        raise InputError("go.exclude_words, exclude_terms and exclude_branches are empty: there is no filter to "
                         "compare against", spec.path)
    task = base.task or first_binary(spec)
    runs = [("on", spec.path), ("off", unfiltered_spec(spec, out / "dataset.unfiltered.yaml"))]
    rows = []
    for name, path in runs:
        config = dataclasses.replace(base, data=str(path), task=task, graph=graph).resolved()
        report = train(config, out / "runs" / f"filter-{name}-{graph}-{config.model}")
        if report["kind"] != "binary":
            raise InputError(f"task {task!r} is {report['kind']}; the leakage check expects a binary task")
        g = load_graph(path, graph).graph
        info = {"filter": name, "exclude_words": " ".join(words) if name == "on" else "",
                "exclude_branches": " ".join(spec.exclusions["branches"]) if name == "on" else "",
                "go_nodes": g.num_nodes("go"),
                "gene_go_edges": g.num_edges(ANNOTATED) if ANNOTATED in g.canonical_etypes else 0}
        rows += [{**info, "model": config.model, **f} for f in fold_rows(report)]
        for name in report["baselines"]:
            rows += [{**info, "model": name, **f} for f in fold_rows(report, name)]
    frame = pd.DataFrame(rows)
    on, off = (frame.loc[frame["filter"] == f, "go_nodes"].iloc[0] for f in ("on", "off"))
    log.info("GO leakage filter %s: %d GO terms with it, %d without", words, on, off)
    if on == off:
        log.warning("the filter removes no GO term from this dataset: both runs see the same graph")
    return frame


def plot(frame: pd.DataFrame, path: Path, title: str) -> Path:
    frame = frame.assign(filter=frame["filter"].map({"on": "GO filter on", "off": "GO filter off"})
                         + "\n(" + frame["go_nodes"].astype(str) + " GO terms)",
                         model=frame["model"].map(plotting.pretty))
    fig, axes = plotting.figure(2)
    for ax, name in zip(axes, ("auc", "f1")):
        plotting.grouped_bars(ax, mean_std(frame, ["filter", "model"], name), "filter", "model",
                              name.upper() if name == "auc" else "F1")
    plotting.legend_outside(axes)
    axes[0].set_title(title, fontsize=10, loc="left")
    return plotting.save(fig, path)


def main(args, base: TrainConfig) -> int:
    frame = compare(base, args.out, args.graph)
    write_csv(frame, args.out / "leakage.csv")
    task = base.task or first_binary(load_spec(base.data))
    plot(frame, args.out / "leakage.png", f"{task}, {args.graph}: leakage filter")
    for (f, model), part in frame.groupby(["filter", "model"], sort=False):
        print(f"leakage filter {f:<3} {model:<20} GO terms {part['go_nodes'].iloc[0]:<6} "
              f"auc {part['auc'].mean():.3f}±{part['auc'].std(ddof=1):.3f} "
              f"f1 {part['f1'].mean():.3f}±{part['f1'].std(ddof=1):.3f}")
    print(f"outputs: {args.out / 'leakage.csv'}, {args.out / 'leakage.png'}")
    return 0
