"""Small PNG plots for the experiments (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from genen_dgl.atomic import atomic_path  # noqa: E402
from genen_dgl.baselines import NAMES as BASELINE_NAMES  # noqa: E402
from genen_dgl.ensemble import SUFFIX as ENSEMBLE  # noqa: E402

log = logging.getLogger(__name__)

DPI = 110
PANEL = (4.6, 3.4)  # inches per panel


def figure(panels: int, size: tuple[float, float] = PANEL):
    fig, axes = plt.subplots(1, panels, figsize=(size[0] * panels, size[1]), squeeze=False)
    return fig, list(axes[0])


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def error_lines(ax, frame: pd.DataFrame, x: str, group: str, styles: dict[str, dict] | None = None) -> None:
    """One line per ``group`` through ``frame``'s ``mean`` at each ``x``, error bars ``std``;
    groups in the order of ``styles``, then of the frame."""
    names = [n for n in styles or {} if n in set(frame[group])]
    for name in names + [n for n in dict.fromkeys(frame[group]) if n not in names]:
        part = frame[frame[group] == name].sort_values(x)
        ax.errorbar(part[x], part["mean"], yerr=part["std"], label=name, marker="o", ms=4, capsize=3,
                    **(styles or {}).get(name, {}))
    ax.grid(alpha=0.3)


def grouped_bars(ax, frame: pd.DataFrame, category: str, group: str, ylabel: str) -> None:
    """Bars of ``mean`` (error ``std``): one cluster per ``category``, one bar per ``group``."""
    cats = list(dict.fromkeys(frame[category]))
    groups = list(dict.fromkeys(frame[group]))
    width = 0.8 / len(groups)
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors  # one colour per bar of a cluster
    for i, name in enumerate(groups):
        part = frame[frame[group] == name].set_index(category).reindex(cats)
        pos = np.arange(len(cats)) + (i - (len(groups) - 1) / 2) * width
        ax.bar(pos, part["mean"], width, yerr=part["std"], capsize=3, label=name, color=colors[i % len(colors)])
    ax.set_xticks(np.arange(len(cats)), cats)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    low = np.nanmin(frame["mean"] - frame["std"].fillna(0))
    if np.isfinite(low) and low > 0.3:  # zoom in on the differences, as the paper's plots do
        ax.set_ylim(max(0.0, low - 0.1), None)


NAMES = {"gcn": "GCN", "gat": "GAT", **BASELINE_NAMES, "paper_gcn": "paper: GCN", "paper_best": "paper: best other"}


def pretty(name: str) -> str:
    """Display name of a model (``gat+baselines``: GAT's ensemble with the baselines)."""
    if name.endswith(ENSEMBLE):
        return f"{pretty(name[:-len(ENSEMBLE)])} ranked with the baselines"
    return NAMES.get(name, name)


def legend_outside(axes) -> None:
    """One legend for all panels, right of the last one."""
    seen: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    axes[-1].legend(seen.values(), seen.keys(), fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left",
                    frameon=False)
