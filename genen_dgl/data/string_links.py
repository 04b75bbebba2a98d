"""STRING protein-protein links -> undirected gene-gene pairs with a score.

Accepted inputs:

* the raw STRING download, space separated, header ``protein1 protein2 combined_score``
  or the detailed multi-channel header (``... experimental database textmining
  combined_score``), ids like ``9606.ENSP00000000233``, plain or ``.gz``; it needs the
  STRING ``protein.info`` file (``#string_protein_id preferred_name ...``) or the
  ``protein.aliases`` file (``#string_protein_id alias source``) to map proteins to
  gene symbols;
* a symbol CSV ``protein1,protein2,combined_score`` whose ids already are gene symbols.

Two genes interact if any of their protein products do; duplicate pairs keep the
maximum score; self-loops are removed; pairs with ``score <= min_score`` are dropped
(STRING scores are 0-1000; the paper keeps ``> 150``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.data.tables import first_line, read_table
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

LINK_COLUMNS = {"protein1": "str", "protein2": "str", "combined_score": "int"}
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
    links: str | Path, aliases: str | Path | None = None, min_score: int = 150,
    alias_source: str = DEFAULT_ALIAS_SOURCE,
) -> pd.DataFrame:
    """Read STRING links into a frame ``gene_a < gene_b, score`` (one row per gene pair;
    the gene columns are categorical, so millions of rows cost no Python strings)."""
    links = Path(links)
    header = first_line(links)
    symbol_csv = "," in header
    sep = "," if symbol_csv else ("\t" if "\t" in header else (" " if "  " not in header else None))
    frame = read_table(links, LINK_COLUMNS, sep=sep)
    scores = frame["combined_score"].to_numpy()
    if scores.min() < 0 or scores.max() > 1000:
        row = int(np.flatnonzero((scores < 0) | (scores > 1000))[0])
        raise InputError(f"combined_score must lie in 0..1000, found {scores[row]}", links, row + 2)
    a = frame["protein1"].cat.codes.to_numpy(), frame["protein1"].cat.categories.astype(str)
    b = frame["protein2"].cat.codes.to_numpy(), frame["protein2"].cat.categories.astype(str)
    if symbol_csv:
        genes_a, genes_b = a[1], b[1]
    else:
        if aliases is None:
            raise InputError("raw STRING links need an aliases or info file (ppi.aliases)", links)
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
    log.info("%s: %d lines -> %d gene pairs with score > %d", links.name, len(frame), len(key), min_score)
    return pd.DataFrame({
        "gene_a": pd.Categorical.from_codes(key // len(vocab), vocab),
        "gene_b": pd.Categorical.from_codes(key % len(vocab), vocab),
        "score": scores.astype(np.int32),
    })


def _map_ids(proteins, symbols: dict[str, str], links: Path, aliases) -> np.ndarray:
    out = np.array([symbols.get(p, "") for p in proteins], dtype=object)
    unknown = [p for p, s in zip(proteins, out) if not s]
    if unknown:
        raise InputError(f"protein id {unknown[0]!r} (and {len(unknown) - 1} more) not in {aliases}", links)
    return out.astype(str)
