"""Gene -> GO annotations from a GAF 2.x file or a BioMart export.

GAF 2.x: 17 tab-separated columns, ``!`` comment lines at the top; column 3 is the gene
symbol, column 4 the qualifier (rows whose qualifier contains ``NOT`` are excluded),
column 5 the GO id. BioMart: a CSV/TSV with a header; the gene and GO columns are found
by name (default ``Gene name`` and ``GO term accession``); rows without a GO term
(genes BioMart lists with no annotation) are skipped.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.data.tables import first_line, locate_bad_line, open_text, read_table
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

GAF_FIELDS = 17
GO_ID = re.compile(r"^GO:\d{7}$")


def is_gaf(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return ".gaf" in name or first_line(path).startswith("!gaf-version")


def read_gaf(path: str | Path) -> pd.DataFrame:
    """Read a GAF 2.x file into ``gene, go`` rows (``NOT`` annotations excluded)."""
    path = Path(path)
    with open_text(path) as fh:
        text = fh.read()
    lines = text.splitlines()
    n_comment = next((i for i, line in enumerate(lines) if not line.startswith("!")), len(lines))
    body = lines[n_comment:]
    body_lines = [line for line in body if line.strip()]
    if not body_lines:
        raise InputError("no annotation rows; expected GAF 2.x (17 tab-separated columns)", path)
    if sum(line.count("\t") for line in body_lines) != (GAF_FIELDS - 1) * len(body_lines):
        raise locate_bad_line(path, "\t", None, {2: "str", 4: "str"}, GAF_FIELDS, comment="!")
    frame = pd.read_csv(
        io.StringIO(text), sep="\t", header=None, skiprows=n_comment, usecols=[1, 2, 3, 4, 10],
        names=list(range(GAF_FIELDS)), dtype=str, keep_default_na=False, quoting=3, engine="c",
    )
    frame.columns = ["id", "gene", "qualifier", "go", "synonyms"]
    report_accessions(frame, path)
    missing = (frame["gene"] == "") | (frame["go"] == "")
    if missing.any():
        raise locate_bad_line(path, "\t", None, {2: "str", 4: "str"}, GAF_FIELDS, comment="!")
    frame = frame[~frame["qualifier"].str.contains("NOT", regex=False)]
    return _check_go_ids(frame[["gene", "go"]], path, offset=n_comment + 1)


def report_accessions(frame: pd.DataFrame, path: Path) -> int:
    """Log how many gene symbols (column 3) of a GAF are the row's UniProt accession
    (column 2) instead: GOA lists proteins without a gene symbol so (e.g. A0A075B6Q4).
    They stay node ids as they are; with the synonyms (column 11) they list, if any, a
    user can tell them apart. Returns their count."""
    accession = frame.loc[frame["gene"] == frame["id"], ["gene", "synonyms"]].drop_duplicates("gene")
    if len(accession):
        log.info("%s: %d gene symbols are UniProt accessions, not symbols (%d rows; e.g. %s), kept as they are; "
                 "%d of them list synonyms (column 11)", path.name, len(accession),
                 int(frame["gene"].isin(accession["gene"]).sum()), accession["gene"].iloc[0],
                 int((accession["synonyms"] != "").sum()))
    return len(accession)


def read_biomart(path: str | Path, gene_column: str = "Gene name", go_column: str = "GO term accession") -> pd.DataFrame:
    """Read a BioMart export into ``gene, go`` rows."""
    sep = "\t" if "\t" in first_line(path) else ","
    frame = read_table(path, {gene_column: "str", go_column: "str"}, sep=sep, optional=(go_column,))
    frame = frame.rename(columns={gene_column: "gene", go_column: "go"}).astype({"gene": str})
    frame = frame[frame["go"].notna()].astype({"go": str})
    return _check_go_ids(frame, Path(path), offset=2)


def read_annotations(path: str | Path, **biomart_columns) -> pd.DataFrame:
    """GAF or BioMart, told apart by the ``!gaf-version`` header or a ``.gaf`` name."""
    frame = read_gaf(path) if is_gaf(path) else read_biomart(path, **biomart_columns)
    frame = frame.drop_duplicates(ignore_index=True)
    log.info("%s: %d gene-GO annotations, %d genes", Path(path).name, len(frame), frame["gene"].nunique())
    return frame


def _check_go_ids(frame: pd.DataFrame, path: Path, offset: int) -> pd.DataFrame:
    ok = frame["go"].str.match(GO_ID.pattern).to_numpy()
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        value = frame["go"].iloc[row]
        raise InputError(f"expected a GO id like GO:0008150, found {value!r}", path, _line(path, value, offset + row))
    return frame.reset_index(drop=True)


def _line(path: Path, value: str, guess: int) -> int:
    """The line of the first occurrence of ``value`` (the frame index may skip blanks)."""
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            if value in line.split("\t") or value in line.split(","):
                return number
    return guess


def read_gene_names(path: str | Path, gene_column: str = "Gene name") -> pd.Series:
    """Every gene symbol of an annotation file (NOT rows included: the gene is still in the
    file), as a Series ``symbol -> protein name`` in order of first appearance. GAF: column
    3 and column 10 (DB Object Name, the protein name); a symbol listed with several names
    (15 genes of the 2019 human GAF, e.g. VARS2: 'Valine--tRNA ligase, mitochondrial' x22,
    'VARS2 protein' x5) gets its most frequent one, ties going to the first seen. BioMart
    exports have no protein name: the names are empty strings."""
    path = Path(path)
    if not is_gaf(path):
        sep = "\t" if "\t" in first_line(path) else ","
        genes = read_table(path, {gene_column: "str"}, sep=sep)[gene_column].astype(str)
        return pd.Series("", index=pd.unique(genes.to_numpy()), dtype=object)
    read_gaf(path)  # validates the file (fields, GO ids) with errors naming the line
    with open_text(path) as fh:
        text = fh.read()
    n_comment = next((i for i, line in enumerate(text.splitlines()) if not line.startswith("!")), 0)
    frame = pd.read_csv(
        io.StringIO(text), sep="\t", header=None, skiprows=n_comment, usecols=[2, 9], names=list(range(GAF_FIELDS)),
        dtype=str, keep_default_na=False, quoting=3, engine="c",
    )
    frame.columns = ["gene", "name"]
    order = pd.unique(frame["gene"].to_numpy())
    counts = frame.groupby(["gene", "name"], sort=False).size().reset_index(name="n")
    counts = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("gene")
    names = pd.Series(counts["name"].to_numpy(), index=counts["gene"].to_numpy(), dtype=object).reindex(order)
    log.info("%s: %d gene symbols, %d with a protein name", path.name, len(names), int((names != "").sum()))
    return names
