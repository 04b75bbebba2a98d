"""The gene node set and each gene's text, as the spec's ``genes`` and ``summaries`` say.

``genes.nodes`` lists the sources whose genes become nodes; their union, sorted, is the
node set (``features`` alone keeps the old rule: the gene feature file's ids). A node's
text is its summary where it has one, else the ``summaries.fallback`` text: the GAF's
protein name (``protein_name``) or nothing (``none``: the encoder writes a zero vector).
The encoder and the graph build both call :func:`gene_node_ids`, so the feature file the
encoder writes has a row for exactly the genes the graph build makes nodes.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from genen_dgl.data.annotations import read_gene_names
from genen_dgl.data.labels import read_summaries
from genen_dgl.data.spec import DatasetSpec
from genen_dgl.data.string_links import read_string_links

log = logging.getLogger(__name__)

TEXT_SOURCES = ("summary", "protein_name", "none")


def read_spec_summaries(spec: DatasetSpec) -> pd.Series:
    """Each gene's summary: from the spec's summaries files, where a task file with a
    ``text_column`` gives none or another text for the gene, else from the task file
    (a task's own text wins; the replacements are counted in the log)."""
    s = spec.summaries
    files = spec.files("summaries", "file")
    text = read_summaries([(f, s.get("gene_column", "gene"), s.get("text_column", "summary")) for f in files]) \
        if files else pd.Series(dtype=object)
    if not spec.text_tasks:
        return text
    own = read_summaries([(t.file, t.gene_column, t.text_column) for t in spec.text_tasks])
    before = text.reindex(own.index)
    log.info("task text (%s): %d genes, %d of them without a summary, %d with another summary (the task's text used)",
             ", ".join(f"{t.name}.{t.text_column}" for t in spec.text_tasks), len(own), int(before.isna().sum()),
             int((before.notna() & (before != own)).sum()))
    text = pd.concat([text, own[~own.index.isin(text.index)]])  # the summaries' order, new genes after them
    text[own.index] = own.to_numpy()
    return text


def source_genes(spec: DatasetSpec, source: str) -> list[str]:
    """The genes of one node source (``ppi``, ``annotations`` or ``summaries``)."""
    if source == "ppi":
        pairs = read_string_links(spec.ppi["links"], **spec.ppi_options)
        return pairs["gene_a"].cat.categories.astype(str).tolist()  # every gene of the file, kept pairs or not
    if source == "annotations":
        return read_gene_names(spec.go["annotations"], spec.go.get("gene_column", "Gene name")).index.tolist()
    if source == "summaries":
        return read_spec_summaries(spec).index.tolist()
    raise ValueError(source)


def gene_node_ids(spec: DatasetSpec) -> list[str] | None:
    """The gene node set (sorted), or None when the gene feature file defines it."""
    if spec.gene_nodes == ["features"]:
        return None
    genes: set[str] = set()
    for source in spec.gene_nodes:
        found = source_genes(spec, source)
        log.info("gene nodes: %d from %s (%d new)", len(found), source, len(set(found) - genes))
        genes.update(found)
    return sorted(genes)


def gene_texts(spec: DatasetSpec, nodes: list[str]) -> tuple[pd.Series, dict[str, int]]:
    """Text of each node gene (``""`` where it has none), in node order, and how many
    texts came from each source (``summary``, ``protein_name``, ``none``)."""
    text, source = texts_and_sources(spec, nodes)
    counts = {k: int((source == k).sum()) for k in TEXT_SOURCES if k != "protein_name" or spec.text_fallback == k}
    log.info("gene texts (fallback %s): %s", spec.text_fallback, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return text, counts


def text_sources(spec: DatasetSpec, nodes: list[str]) -> pd.Series:
    """Where each node gene's text comes from: ``summary``, ``protein_name`` or ``none``."""
    return texts_and_sources(spec, nodes)[1]


def texts_and_sources(spec: DatasetSpec, nodes: list[str]) -> tuple[pd.Series, pd.Series]:
    """Each node gene's text and where it came from: ``summary`` (a summaries file or a
    task's text column), ``protein_name`` (the fallback) or ``none``."""
    text = pd.Series("", index=pd.Index(nodes), dtype=object)
    if spec.text_sources():
        summaries = read_spec_summaries(spec)
        outside = (~summaries.index.isin(text.index)).sum()
        if outside:
            log.info("summaries: %d genes with a summary are not gene nodes (not in %s), not encoded", outside,
                     ", ".join(spec.gene_nodes))
        summaries = summaries[summaries.index.isin(text.index)]
        text[summaries.index] = summaries.to_numpy()
    source = pd.Series(np.where(text != "", "summary", "none"), index=text.index, dtype=object)
    if spec.text_fallback == "protein_name":
        names = read_gene_names(spec.go["annotations"], spec.go.get("gene_column", "Gene name"))
        fill = names.reindex(text.index[source == "none"]).fillna("")
        text[fill.index] = fill.to_numpy()
        source[fill.index[fill != ""]] = "protein_name"
    return text, source
