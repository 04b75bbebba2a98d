"""Task labels (LitGene-style CSVs) and gene summaries, columns found by name."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.data.tables import collapse_duplicates, read_table
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

KINDS = ("binary", "multiclass", "multilabel", "regression")
SEPARATORS = r"[;|]"  # between the classes of a multilabel cell


@dataclass
class Labels:
    genes: np.ndarray  # gene symbols, str
    values: np.ndarray  # int64 class index, float32 for regression, (genes, classes) float32 0/1 for multilabel
    kind: str  # binary | multiclass | multilabel | regression
    classes: list[str]  # class names (empty for regression)
    source: Path | None = None  # the file they were read from, for messages
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (gene, why) of genes left out of the task

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def width(self) -> int:
        """Model outputs per gene: one per class, or one value for regression."""
        return 1 if self.kind == "regression" else self.num_classes


DUPLICATES = ("error", "first", "drop")


def read_labels(
    path: str | Path, gene_column: str = "Gene name", label_column: str = "Label", kind: str = "auto",
    duplicates: str = "error",
) -> Labels:
    """Read one task. ``kind`` is binary, multiclass, multilabel, regression, or auto: text
    or integer labels are classes (binary when two), other numbers a regression target.
    ``duplicates`` says what to do with a gene listed with different labels (a multi-label
    file such as LitGene's TF_target_type read as single-label): error, keep the first row,
    or drop the gene. A multilabel task takes every class a gene is listed with, on several
    rows or in one cell separated by ``;`` or ``|``."""
    if duplicates not in DUPLICATES:
        raise InputError(f"duplicates = {duplicates!r}: expected one of {', '.join(DUPLICATES)}")
    path = Path(path)
    if kind not in KINDS + ("auto",):
        raise InputError(f"task type {kind!r}: expected one of {', '.join(KINDS)} or auto")
    frame = read_table(path, {gene_column: "str", label_column: "str"})
    if kind == "multilabel":
        return _multilabel(frame[gene_column], frame[label_column], label_column, path)
    raw = frame[label_column].astype(str).str.strip()
    numeric = pd.to_numeric(raw, errors="coerce")
    is_num = (numeric.notna() | raw.str.lower().str.lstrip("+-").eq("nan")).to_numpy()  # a NaN label is a number
    if is_num.any() and not is_num.all():
        odd = int(np.flatnonzero(~is_num if is_num.mean() >= 0.5 else is_num)[0])
        raise InputError(
            f"column {label_column!r} mixes numbers and text: {raw.iloc[odd]!r}; expected one kind of label",
            path, odd + 2,
        )
    genes = frame[gene_column].astype(str).str.strip().to_numpy()
    if kind == "auto":
        integral = is_num.all() and (numeric == numeric.round()).all()
        if is_num.all() and not integral:
            kind = "regression"
        else:
            kind = "binary" if raw.nunique() == 2 else "multiclass"
    if kind == "regression":
        if not is_num.all():
            raise InputError(f"regression task: column {label_column!r} must be numeric, found {raw.iloc[0]!r}", path, 2)
        values, classes = numeric.to_numpy(np.float32), []
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise InputError(f"gene {genes[bad[0]]!r} has label {raw.iloc[bad[0]]!r} ({len(bad)} of the labels are "
                             "not finite float32 numbers); expected a finite regression target", path, int(bad[0]) + 2)
    else:
        order = sorted(raw.unique(), key=lambda v: (float(v), v) if is_num.all() else (0.0, v))
        if len(order) < 2:
            raise InputError(f"{kind} task: column {label_column!r} has a single class {order[0]!r}", path)
        if kind == "binary" and len(order) != 2:
            raise InputError(f"binary task: column {label_column!r} has {len(order)} classes, expected 2", path)
        index = {c: i for i, c in enumerate(order)}
        values, classes = raw.map(index).to_numpy(np.int64), list(order)
    table = collapse_duplicates(pd.DataFrame({"gene": genes, "y": values}), "gene", "y", path, "gene", conflicts="keep")
    dup = table[table["gene"].duplicated(keep=False)]
    conflicting = dup.groupby("gene")["y"].nunique()
    conflicting = conflicting[conflicting > 1].index
    if len(conflicting) and duplicates == "error":
        raise InputError(f"gene {conflicting[0]!r} has conflicting labels ({len(conflicting)} genes do); "
                         "set the task's duplicates: first or drop", path)
    skipped = []
    if duplicates == "drop" and len(conflicting):
        table = table[~table["gene"].isin(conflicting)]
        skipped = [(str(g), "conflicting labels (duplicates: drop)") for g in sorted(conflicting)]
        log.info("%s: %s", path.name, name_genes(skipped, "listed with conflicting labels, dropped (duplicates: drop)"))
    table = table.drop_duplicates("gene")
    values = table["y"].to_numpy()
    if kind != "regression":  # a class whose every gene went with the duplicates policy is no class of the task
        present = np.unique(values)
        if len(present) < len(classes):
            gone = [classes[i] for i in range(len(classes)) if i not in set(present)]
            if len(present) < 2:
                raise InputError(f"only class {classes[present[0]]!r} has genes left after duplicates: "
                                 f"{duplicates}; expected at least two", path)
            log.info("%s: classes %s have no gene left after duplicates: %s; the task has %d classes",
                     path.name, ", ".join(gone), duplicates, len(present))
            values = np.searchsorted(present, values)
            classes = [classes[i] for i in present]
            kind = "binary" if len(classes) == 2 else kind
    return Labels(table["gene"].to_numpy(), values, kind, classes, path, skipped)


def _multilabel(genes: pd.Series, cells: pd.Series, label_column: str, path: Path) -> Labels:
    """Each gene's set of classes as a 0/1 matrix (classes sorted by name)."""
    pairs = pd.DataFrame({"gene": genes.astype(str).str.strip(), "label": cells.astype(str).str.split(SEPARATORS)})
    pairs = pairs.explode("label")
    pairs["label"] = pairs["label"].str.strip()
    empty = pairs["label"] == ""
    if empty.any():
        raise InputError(f"column {label_column!r} has an empty class for gene {pairs.loc[empty, 'gene'].iloc[0]!r}; "
                         "expected class names separated by ; or |", path)
    classes = sorted(pairs["label"].unique())
    if len(classes) < 2:
        raise InputError(f"multilabel task: column {label_column!r} has a single class {classes[0]!r}", path)
    order = pd.unique(pairs["gene"].to_numpy())
    matrix = pd.crosstab(pairs["gene"], pairs["label"]).reindex(index=order, columns=classes)
    values = (matrix.to_numpy() > 0).astype(np.float32)
    per_gene = values.sum(1)
    log.info("%s: %d genes, %d classes (%s), %.2f labels per gene (%d with one)", path.name, len(order), len(classes),
             ", ".join(f"{c} {int(n)}" for c, n in zip(classes, values.sum(0))), per_gene.mean(),
             int((per_gene == 1).sum()))
    return Labels(order.astype(str), values, "multilabel", classes, path)


def name_genes(skipped: list[tuple[str, str]], what: str, show: int = 50) -> str:
    """``N genes WHAT: A, B, ...`` (the first ``show`` names; the run directory's
    genes_skipped.csv lists them all)."""
    names = [g for g, _ in skipped]
    more = f" and {len(names) - show} more (genes_skipped.csv)" if len(names) > show else ""
    return f"{len(names)} gene{'s' if len(names) != 1 else ''} {what}: {', '.join(names[:show])}{more}"


def read_summaries(sources: list[tuple[str | Path, str, str]]) -> pd.Series:
    """Gene summaries as a Series ``gene -> text`` from one CSV or several, each given as
    (file, gene column, text column) and read by column name. A gene listed again with the
    same text (in one file or another) is collapsed with one logged line; the same gene
    with two different texts is an InputError naming both places."""
    if not sources:
        raise InputError("summaries.file names no file")
    frames = []
    for p, gene_column, text_column in sources:
        p = Path(p)
        frame = read_table(p, {gene_column: "str", text_column: "str"})
        frames.append(pd.DataFrame({
            "gene": frame[gene_column].astype(str).to_numpy(), "text": frame[text_column].astype(str).to_numpy(),
            "_source": p.name, "_row": np.arange(1, len(frame) + 1),
        }))
    paths = [Path(p) for p, _, _ in sources]
    table = collapse_duplicates(pd.concat(frames, ignore_index=True), "gene", "text", paths if len(paths) > 1 else paths[0],
                                "gene")
    return pd.Series(table["text"].to_numpy(), index=table["gene"].to_numpy())
