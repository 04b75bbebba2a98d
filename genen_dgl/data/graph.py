"""Build the Genen heterograph from a dataset spec, cache it, and cut the variants.

Schema (node types ``gene``, ``go``; messages flow src -> dst):

====================================  =============================================
``(gene, interacts, gene)``           STRING pairs, both directions; edata ``score``
                                      = combined_score / 1000
``(gene, annotated, go)``             gene -> its GO terms
``(go, annotates, gene)``             the reverse
``(go, REL, go)``                     each GO relation (is_a, part_of, ...), child -> parent
``(go, rev_REL, go)``                 its reverse, parent -> child
====================================  =============================================

Node data ``feat`` (float32) on both types. The gene node set is the gene feature
file's ids, or the union of the sources the spec's ``genes.nodes`` lists (then the
feature file needs a row for each, or ``features.zeros`` gives zero vectors); GO nodes
are the ontology's live terms left after the leakage filter.
Variants: ``ppi`` = genes and PPI edges only, ``go`` = everything but PPI edges,
``go_ppi`` = all.

A relation built by matching the ids of two files (gene nodes and STRING genes, gene
nodes and GAF genes, GAF GO ids and the OBO's) that comes out empty is an InputError
naming both files with example ids; one that keeps under :data:`MIN_KEPT` of its file's
rows is recorded in the cache's metadata (:func:`relation_warnings`) for the run's summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genen_dgl.atomic import atomic_path
from genen_dgl.data.annotations import read_annotations
from genen_dgl.data.cache import describe, mb
from genen_dgl.data.features import check_width, read_features
from genen_dgl.data.genes import gene_node_ids, read_spec_summaries, text_sources
from genen_dgl.data.labels import Labels, name_genes, read_labels
from genen_dgl.data.ontology import read_ontology
from genen_dgl.data.spec import DatasetSpec, load_spec
from genen_dgl.data.string_links import read_string_links
from genen_dgl.dgl_compat import dgl
from genen_dgl.errors import InputError
from genen_dgl.schema import ANNOTATED, ANNOTATES, PPI, VARIANTS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the metadata records each relation's kept rows
MIN_KEPT = 0.10  # a relation keeping a smaller share of its file's rows is warned about


@dataclass
class GeneGraph:
    """A built graph variant with its id maps (node index -> gene symbol / GO id)."""

    graph: "dgl.DGLHeteroGraph"
    gene_ids: list[str]
    go_ids: list[str]
    variant: str
    spec: DatasetSpec

    def __str__(self) -> str:
        g = self.graph
        nodes = ", ".join(f"{t}={g.num_nodes(t):,}" for t in g.ntypes)
        rows = [f"GeneGraph {self.spec.name}/{self.variant}: nodes {nodes}; edges {g.num_edges():,}"]
        rows += [f"  {f'{s} -[{e}]-> {d}':<32}{g.num_edges((s, e, d)):>12,}" for s, e, d in g.canonical_etypes]
        return "\n".join(rows)

    def labels(self, task: str | None = None) -> tuple[np.ndarray, Labels]:
        """Labels of ``task`` restricted to genes in the graph, as (node ids, Labels)."""
        t = self.spec.task(task)
        labels = read_labels(t.file, t.gene_column, t.label_column, t.type, t.duplicates)
        index = {g: i for i, g in enumerate(self.gene_ids)}
        nodes = np.array([index.get(g, -1) for g in labels.genes], dtype=np.int64)
        keep = nodes >= 0
        if not keep.any():
            raise InputError(f"task {t.name!r}: none of its {len(nodes)} genes ({_examples(labels.genes)}) is a gene "
                             f"node of {_gene_source(self.spec)} ({_examples(self.gene_ids)}); use the same gene ids",
                             t.file)
        skipped = [(str(g), "not a graph node") for g in labels.genes[~keep]]
        if skipped:
            log.info("task %s: %s", t.name, name_genes(skipped, f"of {len(keep)} labelled are not graph nodes, skipped"))
        labels = Labels(labels.genes[keep], labels.values[keep], labels.kind, labels.classes, labels.source,
                        labels.skipped + skipped)
        return nodes[keep], labels

    def summary_words(self) -> np.ndarray:
        """Word count of each gene's summary (0 where it has none): the paper's proxy for
        how well studied a gene is."""
        if not self.spec.text_sources():
            raise InputError("the dataset has no summaries.file", self.spec.path)
        text = read_spec_summaries(self.spec)
        words = text.str.split().str.len()
        return words.reindex(self.gene_ids).fillna(0).to_numpy(np.int64)


def _key(spec: DatasetSpec, options) -> str:
    """Hash of ``options`` and each input file's size and mtime."""
    h = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for f in spec.input_files():
        st = f.stat() if f.exists() else None
        h.update(f"{f.resolve()}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()[:16]


def cache_key(spec: DatasetSpec) -> str:
    """The graph cache's key: what shapes the graph, i.e. the spec's options but its name
    and tasks (a task's labels never change the graph; task text columns do, and are in),
    and the input files."""
    shaping = {k: v for k, v in spec.raw.items() if k not in ("tasks", "name")}
    return _key(spec, [SCHEMA_VERSION, shaping, [list(map(str, s)) for s in spec.text_sources()]])


def spec_key(spec: DatasetSpec) -> str:
    """Hash of the whole spec (tasks included) and its input files (a run's fingerprint)."""
    return _key(spec, [SCHEMA_VERSION, spec.raw])


def _node_index(column, index: dict[str, int]) -> np.ndarray:
    """Node index of each value of a categorical column, -1 where it is not a node."""
    per_category = np.array([index.get(c, -1) for c in column.cat.categories.astype(str)], dtype=np.int64)
    return per_category[column.cat.codes.to_numpy()]


def _gene_features(spec: DatasetSpec) -> tuple[list[str], np.ndarray]:
    """Gene node ids and their features: the feature file's rows (``genes.nodes:
    [features]``), the rows of the spec's node set, or zero vectors (``features.zeros``)."""
    feats = spec.features
    nodes = gene_node_ids(spec)
    if spec.zero_features is not None:
        return nodes, np.zeros((len(nodes), spec.zero_features), np.float32)
    if not feats.get("gene"):
        raise InputError("features.gene is not set; encode the summaries first (python -m genen_dgl.encode)", spec.path)
    ids, x = read_features(feats["gene"], feats.get("gene_ids"))
    if nodes is None:
        return ids, x
    row = {g: i for i, g in enumerate(ids)}
    missing = [g for g in nodes if g not in row]
    if missing:
        raise InputError(f"gene {missing[0]} (and {len(missing) - 1} more of the {len(nodes)} gene nodes of "
                         f"{', '.join(spec.gene_nodes)}) has no feature row; encode again (python -m genen_dgl.encode)",
                         feats["gene"])
    if len(ids) > len(nodes):
        log.info("%s: %d rows are not gene nodes, ignored", Path(feats["gene"]).name, len(ids) - len(nodes))
    return nodes, x[[row[g] for g in nodes]]


def _shown(spec: DatasetSpec, path: str | Path) -> str:
    """``path`` for messages: relative to the dataset's folder when inside it."""
    path = Path(path)
    return str(path.relative_to(spec.path.parent)) if path.is_relative_to(spec.path.parent) else str(path)


def _gene_source(spec: DatasetSpec) -> str:
    """Where the gene node ids come from, for messages."""
    if spec.gene_nodes != ["features"]:
        return f"genes.nodes ({', '.join(spec.gene_nodes)}) of {spec.path.name}"
    return _shown(spec, spec.features.get("gene_ids") or spec.features["gene"])


def _examples(ids) -> str:
    return ", ".join(map(str, list(ids)[:3]))


def _relation(name: str, kept: int, rows: int, ours: tuple[str, list], theirs: tuple[str, list]) -> dict:
    """A relation matched ``kept`` of the ``rows`` rows of file ``theirs[0]`` against the ids
    of ``ours[0]``: none is an InputError naming both with three example ids of each
    (``(file, ids)`` pairs); else its counts, for :func:`relation_warnings`."""
    if rows and not kept:
        raise InputError(f"the {name} relation is empty: no id of {theirs[0]} ({_examples(theirs[1])}) is one of "
                         f"{ours[0]} ({_examples(ours[1])}); use the same ids in both files")
    return {"file": theirs[0], "kept": int(kept), "rows": int(rows)}


def build_full_graph(spec: DatasetSpec) -> tuple["dgl.DGLHeteroGraph", list[str], list[str], dict]:
    """Read every source and assemble the ``go_ppi`` heterograph (the others are cut from
    it); also each file-matched relation's kept rows (:func:`_relation`)."""
    feats = spec.features
    gene_ids, gene_x = _gene_features(spec)
    genes = (_gene_source(spec), gene_ids)
    kept: dict[str, dict] = {}
    gene_index = {g: i for i, g in enumerate(gene_ids)}
    edges: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}
    edata: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    go_ids: list[str] = []
    go_x = np.zeros((0, gene_x.shape[1]), np.float32)

    if spec.ppi.get("links"):
        options = spec.ppi_options
        pairs = read_string_links(spec.ppi["links"], **options)
        links = _shown(spec, spec.ppi["links"])
        if pairs.empty:
            raise InputError(f"no gene pair scores above ppi.min_score ({options.get('min_score', 'default')}); "
                             "lower it", spec.ppi["links"])
        a, b = (_node_index(pairs[c], gene_index) for c in ("gene_a", "gene_b"))
        keep = (a >= 0) & (b >= 0)
        log.info("PPI: %d of %d pairs have both genes among the gene nodes", keep.sum(), len(keep))
        kept["PPI"] = _relation("PPI", keep.sum(), len(keep), genes,
                                (links, pairs["gene_a"].cat.categories.astype(str).tolist()))
        a, b = a[keep], b[keep]
        score = torch.from_numpy((pairs["score"].to_numpy()[keep] / options["score_scale"]).astype(np.float32))
        edges[PPI] = (np.concatenate([a, b]), np.concatenate([b, a]))
        edata[PPI] = {"score": torch.cat([score, score])}

    if spec.go.get("obo"):
        full = read_ontology(spec.go["obo"], spec.go.get("relations"))
        onto = full.without(**spec.exclusions)
        go_ids = onto.terms["id"].tolist()
        if spec.zero_features is not None:
            go_x = np.zeros((len(go_ids), spec.zero_features), np.float32)
        else:
            if not feats.get("go"):
                raise InputError("features.go is not set; encode the GO texts first (python -m genen_dgl.encode)", spec.path)
            ids, x = read_features(feats["go"], feats.get("go_ids"))
            check_width(feats["go"], x, gene_x.shape[1])
            row = {t: i for i, t in enumerate(ids)}
            missing = [t for t in go_ids if t not in row]
            if missing:
                raise InputError(f"GO term {missing[0]} (and {len(missing) - 1} more) has no feature row", feats["go"])
            go_x = x[[row[t] for t in go_ids]]
        go_index = {t: i for i, t in enumerate(go_ids)}
        for rel, group in onto.relations.groupby("relation"):
            child = group["child"].map(go_index).to_numpy(np.int64)
            parent = group["parent"].map(go_index).to_numpy(np.int64)
            edges[("go", rel, "go")] = (child, parent)
            edges[("go", f"rev_{rel}", "go")] = (parent, child)
        if spec.go.get("annotations"):
            biomart = {k: spec.go[k] for k in ("gene_column", "go_column") if k in spec.go}
            ann = read_annotations(spec.go["annotations"], **biomart)
            gaf, obo = _shown(spec, spec.go["annotations"]), _shown(spec, spec.go["obo"])
            g = ann["gene"].map(gene_index)
            resolved = ann["go"].map(full.resolve)
            t = resolved.map(go_index)
            _relation("gene-GO", resolved.isin(set(full.terms["id"])).sum(), len(ann),
                      (obo, full.terms["id"].tolist()), (gaf, ann["go"].unique().tolist()))
            _relation("gene-GO", g.notna().sum(), len(ann), genes, (gaf, ann["gene"].unique().tolist()))
            keep = (g.notna() & t.notna()).to_numpy()
            pairs = np.unique(np.stack([g[keep].to_numpy(np.int64), t[keep].to_numpy(np.int64)], 1), axis=0)
            log.info("annotations: %d of %d rows link a graph gene to a live GO term", keep.sum(), len(keep))
            kept["gene-GO"] = _relation("gene-GO", keep.sum(), len(keep), genes, (gaf, ann["gene"].unique().tolist()))
            edges[ANNOTATED] = (pairs[:, 0], pairs[:, 1])
            edges[ANNOTATES] = (pairs[:, 1], pairs[:, 0])

    graph = dgl.heterograph(
        {k: (torch.as_tensor(np.array(s)), torch.as_tensor(np.array(d))) for k, (s, d) in edges.items()},
        num_nodes_dict={"gene": len(gene_ids), "go": len(go_ids)},
    )
    graph.nodes["gene"].data["feat"] = torch.from_numpy(np.ascontiguousarray(gene_x, dtype=np.float32))
    graph.nodes["go"].data["feat"] = torch.from_numpy(np.ascontiguousarray(go_x, dtype=np.float32))
    for etype, data in edata.items():
        graph.edges[etype].data.update(data)
    return graph, gene_ids, go_ids, kept


def load_full_graph(spec: DatasetSpec, rebuild: bool = False):
    """The ``go_ppi`` graph from the cache, built and cached first when inputs changed."""
    spec.check_text_features()
    key = cache_key(spec)
    bin_path, meta_path = spec.cache / f"graph-{key}.bin", spec.cache / f"graph-{key}.json"
    if not rebuild and bin_path.exists() and meta_path.exists():
        log.info("loading cached graph %s (%s; %s)", bin_path, mb(bin_path.stat().st_size), describe(spec.cache))
        try:
            (graph,), _ = dgl.load_graphs(str(bin_path))
            meta = json.loads(meta_path.read_text())
            if graph.num_nodes("gene") != len(meta["gene_ids"]) or graph.num_nodes("go") != len(meta["go_ids"]):
                raise ValueError("node counts differ from the cached ids")
            os.utime(meta_path)  # last used (the .json: the .bin stays as written), what prune keeps
            return graph, meta["gene_ids"], meta["go_ids"]
        except Exception as err:  # a damaged cache is only a cache: build it again
            log.warning("cached graph %s is damaged (%s: %s); rebuilding it", bin_path, type(err).__name__,
                        str(err).splitlines()[0][:200] if str(err) else "")
    log.info("building graph for %s (cache key %s)", spec.path, key)
    graph, gene_ids, go_ids, kept = build_full_graph(spec)
    with atomic_path(bin_path) as tmp:
        dgl.save_graphs(str(tmp), [graph])
    meta = {"schema": SCHEMA_VERSION, "spec": str(spec.path), "gene_ids": gene_ids, "go_ids": go_ids,
            "edges": {":".join(e): graph.num_edges(e) for e in graph.canonical_etypes}, "kept": kept}
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta))
    log.info("cached graph %s (%s; %s; python -m genen_dgl.data.cache list|prune --data %s)", bin_path,
             mb(bin_path.stat().st_size), describe(spec.cache), spec.path)
    return graph, gene_ids, go_ids


def relation_warnings(spec: DatasetSpec) -> list[str]:
    """The relations of the dataset's cached graph that kept under :data:`MIN_KEPT` of their
    file's rows, as ``gene-GO kept 4% of goa_human.gaf rows`` (the graph is loaded first)."""
    meta = json.loads((spec.cache / f"graph-{cache_key(spec)}.json").read_text())
    out = [f"{name} kept {100 * r['kept'] / r['rows']:.2g}% of {r['file']} rows" for name, r in meta["kept"].items()
           if r["kept"] < MIN_KEPT * r["rows"]]
    for line in out:
        log.warning("%s", line)
    return out


def cut_variant(graph, variant: str):
    """The ``ppi``, ``go`` or ``go_ppi`` view of the full graph."""
    if variant not in VARIANTS:
        raise InputError(f"graph variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    if variant == "go_ppi":
        return graph
    if variant == "ppi":
        if PPI not in graph.canonical_etypes:
            raise InputError("variant 'ppi' needs PPI edges; the dataset has no ppi.links")
        return dgl.edge_type_subgraph(graph, [PPI])
    rest = [e for e in graph.canonical_etypes if e != PPI]
    if not any("go" in (s, d) for s, _, d in rest):
        raise InputError("variant 'go' needs GO edges; the dataset has no go.obo/annotations")
    return dgl.edge_type_subgraph(graph, rest)


def hide_annotations(graph, genes: np.ndarray):
    """``graph`` without the gene–GO edges (both directions) of the gene nodes ``genes``:
    they look like genes nobody has annotated (the novel-gene regime); every other edge,
    and all node data, stay."""
    out = graph
    for etype, side in ((ANNOTATED, 0), (ANNOTATES, 1)):
        if etype in out.canonical_etypes and len(genes):
            ends = out.edges(etype=etype)[side]
            drop = torch.nonzero(torch.isin(ends, torch.as_tensor(genes, dtype=ends.dtype))).reshape(-1)
            out = dgl.remove_edges(out, drop.to(out.idtype), etype=etype, store_ids=False)
    return out


def annotation_counts(graph) -> np.ndarray:
    """Number of GO terms annotated to each gene node (0 without annotation edges)."""
    if ANNOTATED not in graph.canonical_etypes:
        return np.zeros(graph.num_nodes("gene"), np.int64)
    return graph.out_degrees(etype=ANNOTATED).numpy().astype(np.int64)


def gene_info(spec: DatasetSpec, full_graph, gene_ids: list[str]) -> pd.DataFrame:
    """Per gene node: ``go_annotations``, its GO terms in ``full_graph`` (the dataset's
    ``go_ppi`` graph: after the leakage filter, not propagated up the ontology, before any
    hiding), and ``text_source`` (summary, protein_name or none: what its text feature
    encodes). What the strata of metrics.json and the popularity measures group by."""
    return pd.DataFrame({"go_annotations": annotation_counts(full_graph),
                         "text_source": text_sources(spec, gene_ids).to_numpy()})


def load_graph(spec: DatasetSpec | str | Path, variant: str = "go_ppi", rebuild: bool = False) -> GeneGraph:
    """Load (building and caching as needed) one graph variant of a dataset; a relation
    that kept under :data:`MIN_KEPT` of its file's rows is logged as a warning."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    graph, gene_ids, go_ids = load_full_graph(spec, rebuild)
    relation_warnings(spec)
    return GeneGraph(cut_variant(graph, variant), gene_ids, go_ids if variant != "ppi" else [], variant, spec)
