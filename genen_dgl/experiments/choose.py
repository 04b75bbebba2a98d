"""``python -m genen_dgl.experiments.choose NAME=DIR ... --out DIR``: one configuration per
task and regime, chosen on the validation share, tested against every baseline.

Each ``DIR`` is the output of one ``python -m genen_dgl.experiments table`` run (its
``table.csv``), one configuration each (e.g. ``--config`` with ``annotation_residual:
true``), all on the same folds: the baselines' numbers must agree across them. For each
task and regime the configuration with the highest validation metric (the headline metric
on the validation share at each split's best epoch, mean over splits) is chosen; the test
folds never take part in the choice. Writes ``choice.csv`` (every configuration's row and
the baselines, ``chosen`` marked), ``choice.md`` (per regime: each configuration, the
choice, its corrected t-test p against each baseline, and whether it is at least as good
as every baseline and significantly above it) and ``choice.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.atomic import atomic_path, claim_dir
from genen_dgl.baselines import NAMES
from genen_dgl.errors import InputError, cli
from genen_dgl.experiments import plotting
from genen_dgl.experiments.common import write_csv
from genen_dgl.provenance import add_version

ALPHA = 0.05  # a difference is significant at corrected t-test p below this
KEYS = ["task", "regime"]


def read_tables(named: dict[str, Path]) -> pd.DataFrame:
    """Every table's rows, with a ``configuration`` column (the baselines once, from the first)."""
    frames, baselines = [], None
    for name, folder in named.items():
        path = Path(folder) / "table.csv"
        if not path.is_file():
            raise InputError(f"{name}={folder}: no table.csv there; expected the --out of an experiments table run",
                             path)
        frame = pd.read_csv(path)
        frame = frame[~frame["model"].isin(["paper_gcn", "paper_best"])]
        gnn = frame["val_mean"].notna()
        if not gnn.any():
            raise InputError("no trained configuration (a row with a validation metric) in it", path)
        base = frame[~gnn].set_index(KEYS + ["model"])["mean"]
        if baselines is None:
            baselines = base
            frames.append(frame[~gnn].assign(configuration=""))
        else:
            shared = baselines.index.intersection(base.index)
            if not np.allclose(baselines[shared], base[shared], equal_nan=True):
                raise InputError(f"{name}: its baselines differ from {next(iter(named))}'s: not the same folds "
                                 "(same --seeds, --folds and tasks expected)", path)
        frames.append(frame[gnn].assign(configuration=name))
    frame = pd.concat(frames, ignore_index=True)
    first_seen = {c: {v: i for i, v in enumerate(dict.fromkeys(frame[c]))} for c in KEYS}
    return frame.sort_values([*KEYS, "configuration"], key=lambda c: c.map(first_seen[c.name]) if c.name in KEYS
                             else c, kind="stable", ignore_index=True)


def choose(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``chosen`` (the configuration of best validation metric per task and
    regime) and, on the chosen rows, ``above_all`` (test mean at least every baseline's)
    and ``significant`` (baselines it is significantly above, by corrected t-test)."""
    frame = frame.assign(chosen=False, above_all=pd.NA, significant="")
    trained = frame[frame["configuration"] != ""]
    for _, rows in trained.groupby(KEYS, sort=False):
        best = rows["val_mean"].idxmax()
        frame.loc[best, "chosen"] = True
        r = frame.loc[best]
        base = frame[(frame["task"] == r["task"]) & (frame["regime"] == r["regime"]) & (frame["configuration"] == "")]
        frame.loc[best, "above_all"] = bool((r["mean"] >= base["mean"]).all())
        frame.loc[best, "significant"] = ",".join(
            b for b, m in zip(base["model"], base["mean"])
            if r["mean"] > m and r.get(f"p_vs_{b}", np.nan) < ALPHA)
    return frame


def markdown(frame: pd.DataFrame) -> str:
    """Per regime: every row's test mean ± std (validation for configurations), the chosen
    one in bold, with its p against each baseline."""
    p_cols = [c for c in frame.columns if c.startswith("p_vs_")]
    parts = []
    for regime, part in frame.groupby("regime", sort=False):
        heads = ["task", "row", "validation", "test mean ± std", *(f"p vs {NAMES[c[5:]]}" for c in p_cols),
                 "≥ every baseline", "significantly above"]
        lines = [f"### {regime} regime", "", "| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
        for _, r in part.iterrows():
            name = NAMES.get(r["model"], r["model"]) if r["configuration"] == "" else \
                f"{plotting.pretty(r['model'])} · {r['variant']} · {r['configuration']}"
            name = f"**{name} (chosen)**" if r["chosen"] else name
            val = "" if pd.isna(r["val_mean"]) else f"{r['val_mean']:.3f}"
            ps = ["" if pd.isna(r[c]) else f"{r[c]:.3g}" for c in p_cols]
            verdict = ["yes" if r["above_all"] else "no", r["significant"] or "none"] if r["chosen"] else ["", ""]
            lines.append(f"| {r['task']} | {name} | {val} | {r['mean']:.3f} ± {r['std']:.3f} | "
                         + " | ".join(ps + verdict) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(frame: pd.DataFrame, path: Path) -> Path:
    """Test metric per task, one panel per regime: each baseline and the chosen configuration."""
    shown = frame[(frame["configuration"] == "") | frame["chosen"]]
    shown = shown.assign(name=[NAMES.get(m, m) if c == "" else "chosen on validation" for m, c in
                               zip(shown["model"], shown["configuration"])])
    regimes = list(dict.fromkeys(shown["regime"]))
    fig, axes = plotting.figure(len(regimes), (max(4.6, 1.6 * shown["task"].nunique() + 2.2), 3.6))
    for ax, regime in zip(axes, regimes):
        plotting.grouped_bars(ax, shown[shown["regime"] == regime], "task", "name", f"test AUC ({regime})")
    plotting.legend_outside(axes)
    return plotting.save(fig, path)


def parse_named(items: list[str]) -> dict[str, Path]:
    named = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise InputError(f"{item!r}: expected NAME=DIR (a name for the configuration, its table's --out)")
        if name in named:
            raise InputError(f"configuration {name!r} given twice")
        named[name] = Path(folder)
    return named


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.experiments.choose", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("tables", nargs="+", metavar="NAME=DIR", help="a configuration's name and its table's --out")
    parser.add_argument("--out", type=Path, required=True, help="output folder (choice.csv, choice.md, choice.png)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    frame = choose(read_tables(parse_named(args.tables)))
    claim_dir(args.out, "genen_dgl.experiments")
    write_csv(frame, args.out / "choice.csv")
    text = markdown(frame)
    with atomic_path(args.out / "choice.md") as tmp:
        tmp.write_text(text)
    plot(frame, args.out / "choice.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
