"""STRING protein-protein links -> undirected gene-gene pairs with a score.

Accepted inputs:

* the raw STRING download, space separated, header ``protein1 protein2 combined_score``
  or the detailed multi-channel header (``... experimental database textmining
  combined_score``), ids like ``9606.ENSP00000000233``, plain or ``.gz``; it needs the
  STRING ``protein.info`` file (``#string_protein_id preferred_name ...``) or the
  ``protein.aliases`` file (``#string_protein_id alias source``) to map proteins to
  gene symbols;
* an edge list whose ids already are gene symbols (no aliases file), such as a CSV
  ``protein1,protein2,combined_score`` or a re-distributed file with other column names,
  an unnamed row-number column, quoted fields and a 0-1 score
  (``"","score","protein1","protein2"``): ``columns`` names the two id columns and the
  score column, ``score_scale`` the score's range (1000 for STRING's 0-1000, 1 for 0-1).

Two genes interact if any of their protein products do; duplicate pairs keep the
maximum score; self-loops are removed; pairs with ``score <= min_score`` are dropped.
``min_score`` is in the file's own units (the paper keeps STRING ``> 150``, i.e. ``> 0.15``
on a 0-1 scale); the default is 0.15 of ``score_scale``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.data.tables import first_line, read_table
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ("protein1", "protein2", "combined_score")
STRING_ID = re.compile(r"^\d+\.\S+$")  # taxon.protein, e.g. 9606.ENSP00000000233
DEFAULT_ALIAS_SOURCE = "Ensembl_HGNC_symbol"


def read_protein_symbols(path: str | Path, alias_source: str = DEFAULT_ALIAS_SOURCE) -> dict[str, str]:
    """Map STRING protein ids to gene symbols from ``protein.info`` or ``protein.aliases``."""
    head = first_line(path).lstrip("#").split()
    if "preferred_name" in head:
        frame = read_table(path, {"string_protein_id": "str", "preferred_name": "str"}, sep="\t")
        return dict(zip(frame["string_protein_id"].astype(str), frame["preferred_name"].astype(str)))
    if "alias" in head and "source" in head:
        frame = read_table(path, {"string_protein_id": "str", "alias": "str", "source": "str"}, sep="\t")
        frame = frame[frame["source"].astype(str).str.contains(alias_source, regex=False)]
        if frame.empty:
            raise InputError(f"no alias with source {alias_source!r}; set ppi.alias_source", path)
        frame = frame.drop_duplicates("string_protein_id")
        return dict(zip(frame["string_protein_id"].astype(str), frame["alias"].astype(str)))
    raise InputError(
        "expected a STRING protein.info header '#string_protein_id preferred_name ...' "
        "or protein.aliases header '#string_protein_id alias source'", path, 1
    )


def read_string_links(
    links: str | Path, aliases: str | Path | None = None, min_score: float | None = None,
    alias_source: str = DEFAULT_ALIAS_SOURCE, columns: tuple[str, str, str] = DEFAULT_COLUMNS,
    score_scale: float = 1000,
) -> pd.DataFrame:
    """Read STRING links into a frame ``gene_a < gene_b, score`` (one row per gene pair,
    score in the file's units; the gene columns are categorical, so millions of rows cost
    no Python strings, and their categories are every gene of the file, also those whose
    pairs were all dropped)."""
    links = Path(links)
    col_a, col_b, col_score = columns
    if score_scale not in (1, 1000):
        raise InputError(f"score_scale {score_scale!r}: expected 1000 (STRING's 0-1000 scores) or 1 (0-1 scores)")
    if min_score is None:
        min_score = 0.15 * score_scale
    header = first_line(links)
    sep = "," if "," in header else ("\t" if "\t" in header else (" " if "  " not in header else None))
    frame = read_table(links, {col_a: "str", col_b: "str", col_score: "float"}, sep=sep,
                       hint="; name them with ppi.a_column, ppi.b_column, ppi.score_column")
    frame = frame.rename(columns={col_a: "protein1", col_b: "protein2"})
    scores = frame[col_score].to_numpy()
    if scores.min() < 0 or scores.max() > score_scale:
        row = int(np.flatnonzero((scores < 0) | (scores > score_scale))[0])
        raise InputError(f"{col_score} must lie in 0..{score_scale:g} (ppi.score_scale), found {scores[row]:g}", links, row + 2)
    if score_scale == 1000 and scores.max() <= 1 and (scores != np.round(scores)).any():
        raise InputError(f"{col_score} lies in 0..1 (max {scores.max():g}), not STRING's 0..1000; "
                         "set ppi.score_scale: 1 and min_score on that scale", links)
    if score_scale == 1000 and (scores == np.round(scores)).all():
        scores = scores.astype(np.int64)
    a = frame["protein1"].cat.codes.to_numpy(), frame["protein1"].cat.categories.astype(str)
    b = frame["protein2"].cat.codes.to_numpy(), frame["protein2"].cat.categories.astype(str)
    if aliases is None:
        looks_raw = [p for p in list(a[1][:5]) + list(b[1][:5]) if STRING_ID.match(p)]
        if looks_raw:
            raise InputError(f"raw STRING links (ids like {looks_raw[0]!r}) need an aliases or info file (ppi.aliases)",
                             links)
        genes_a, genes_b = a[1], b[1]
    else:
        symbols = read_protein_symbols(aliases, alias_source)
        genes_a, genes_b = (_map_ids(cats, symbols, links, aliases) for cats in (a[1], b[1]))
    # One gene vocabulary for both columns, then integer pairs.
    vocab, inverse = np.unique(np.concatenate([genes_a, genes_b]), return_inverse=True)
    ga = inverse[: len(genes_a)][a[0]]
    gb = inverse[len(genes_a):][b[0]]
    keep = (scores > min_score) & (ga != gb)
    ga, gb, scores = ga[keep], gb[keep], scores[keep]
    lo, hi = np.minimum(ga, gb), np.maximum(ga, gb)
    key = lo.astype(np.int64) * len(vocab) + hi
    order = np.lexsort((-scores, key))  # by pair, best score first
    key, scores = key[order], scores[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, scores = key[first], scores[first]
    log.info("%s: %d lines, %d genes -> %d gene pairs with score > %g", links.name, len(frame), len(vocab), len(key),
             min_score)
    return pd.DataFrame({
        "gene_a": pd.Categorical.from_codes(key // len(vocab), vocab),
        "gene_b": pd.Categorical.from_codes(key % len(vocab), vocab),
        "score": scores.astype(np.int32) if scores.dtype.kind == "i" else scores.astype(np.float32),
    })


def _map_ids(proteins, symbols: dict[str, str], links: Path, aliases) -> np.ndarray:
    out = np.array([symbols.get(p, "") for p in proteins], dtype=object)
    unknown = [p for p, s in zip(proteins, out) if not s]
    if unknown:
        raise InputError(f"protein id {unknown[0]!r} (and {len(unknown) - 1} more) not in {aliases}", links)
    return out.astype(str)
