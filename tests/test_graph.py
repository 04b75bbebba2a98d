"""Building the heterograph from the sample dataset: schema, variants, cache, determinism."""

from __future__ import annotations

import filecmp
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from genen_dgl.data.graph import load_graph
from genen_dgl.schema import PPI
from genen_dgl.data.labels import read_labels
from genen_dgl.data.ontology import read_ontology
from genen_dgl.data.sample import generate
from genen_dgl.data.spec import load_spec


def test_schema_matches_sources(sample_spec):
    data = load_graph(sample_spec, "go_ppi")
    g, spec = data.graph, load_spec(sample_spec)
    features = pd.read_csv(spec.features["gene"])
    assert data.gene_ids == features["id"].tolist() and g.num_nodes("gene") == len(features)
    onto = read_ontology(spec.go["obo"]).without(spec.exclude_words)
    assert data.go_ids == onto.terms["id"].tolist()
    # PPI: symmetric, no self-loops, scores in (0.15, 1]
    src, dst = (t.numpy() for t in g.edges(etype=PPI))
    assert set(zip(src, dst)) == set(zip(dst, src)) and not (src == dst).any()
    score = g.edges[PPI].data["score"].numpy()
    assert score.min() > 0.15 and score.max() <= 1.0
    # each GO relation and its reverse
    for _, rel, _ in [e for e in g.canonical_etypes if e[0] == e[2] == "go" and not e[1].startswith("rev_")]:
        a = set(zip(*(t.numpy() for t in g.edges(etype=("go", rel, "go")))))
        b = set(zip(*(t.numpy() for t in g.edges(etype=("go", f"rev_{rel}", "go")))))
        assert a and {(d, s) for s, d in a} == b
    ann = set(zip(*(t.numpy() for t in g.edges(etype=("gene", "annotated", "go")))))
    rev = set(zip(*(t.numpy() for t in g.edges(etype=("go", "annotates", "gene")))))
    assert ann and {(d, s) for s, d in ann} == rev
    assert g.nodes["go"].data["feat"].shape == (len(data.go_ids), g.nodes["gene"].data["feat"].shape[1])
    text = str(data)
    assert f"gene={g.num_nodes('gene'):,}" in text and "gene -[interacts]-> gene" in text


def test_variants(sample_spec):
    full = load_graph(sample_spec, "go_ppi").graph
    ppi = load_graph(sample_spec, "ppi").graph
    go = load_graph(sample_spec, "go").graph
    assert ppi.ntypes == ["gene"] and ppi.canonical_etypes == [PPI]
    assert ppi.num_edges() == full.num_edges(PPI)
    assert PPI not in go.canonical_etypes and go.num_edges() == full.num_edges() - full.num_edges(PPI)
    assert go.num_nodes("gene") == ppi.num_nodes("gene") == full.num_nodes("gene")


def test_cache_reused_and_rebuilt_when_an_input_changes(sample_spec, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(sample_spec.parent, root, ignore=shutil.ignore_patterns(".cache"))
    spec = root / "dataset.yaml"
    first = load_graph(spec)
    cached = sorted((root / ".cache").glob("graph-*.bin"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    load_graph(spec)
    assert sorted((root / ".cache").glob("graph-*.bin")) == cached and cached[0].stat().st_mtime_ns == stamp
    gaf = root / "go/goa_human.gaf"
    lines = gaf.read_text().splitlines()
    body = [l for l in lines if not l.startswith("!") and "\tNOT" not in l]
    gaf.write_text("\n".join(l for l in lines if l != body[0]) + "\n")  # drop one annotation
    os.utime(gaf, ns=(stamp + 10**9, stamp + 10**9))
    second = load_graph(spec)
    assert len(list((root / ".cache").glob("graph-*.bin"))) == 2
    ann = ("gene", "annotated", "go")
    assert second.graph.num_edges(ann) == first.graph.num_edges(ann) - 1


def test_sample_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", seed=3)
    time.sleep(1.1)  # a second later: nothing time-stamped (gzip headers) may leak into the bytes
    b = generate(tmp_path / "b", seed=3)
    c = generate(tmp_path / "c", seed=4)
    files = [str(p.relative_to(a.parent)) for p in a.parent.rglob("*") if p.is_file()]
    match, mismatch, errors = filecmp.cmpfiles(a.parent, b.parent, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files) >= 10
    assert not filecmp.cmp(a.parent / "features/genes.csv", c.parent / "features/genes.csv", shallow=False)


def test_sample_has_three_task_kinds(sample_spec):
    spec = load_spec(sample_spec)
    kinds = {name: read_labels(t.file, t.gene_column, t.label_column, t.type).kind for name, t in spec.tasks.items()}
    assert sorted(kinds.values()) == ["binary", "multiclass", "regression"]


def test_labels_map_to_graph_genes(sample_spec):
    data = load_graph(sample_spec)
    nodes, labels = data.labels("membrane")
    assert [data.gene_ids[n] for n in nodes] == list(labels.genes)
    words = data.summary_words()
    assert words.shape == (len(data.gene_ids),) and (words > 0).all()


def test_scaled_sample_counts(tmp_path):
    """--scale gives the paper's node sets and S x its edges, exactly after the readers'
    filtering (NOT rows, duplicates)."""
    spec = generate(tmp_path / "s", scale=0.002)
    g = load_graph(spec).graph
    assert g.num_nodes("gene") == 14_450 and g.num_nodes("go") == 47_595
    assert g.num_edges(PPI) == 2 * round(13_067_420 * 0.002)
    assert g.num_edges(("gene", "annotated", "go")) == round(393_231 * 0.002)
    go_go = sum(g.num_edges(e) for e in g.canonical_etypes if e[0] == e[2] == "go" and not e[1].startswith("rev_"))
    assert go_go == round(83_796 * 0.002)


def test_real_goslim_counts(shared_data):
    """Counts from obonet agree with a plain reading of the OBO text."""
    path = shared_data / "go" / "goslim_generic.obo"
    stanzas = path.read_text().split("\n\n")
    terms = [s for s in stanzas if s.lstrip().startswith("[Term]") and "is_obsolete: true" not in s]
    is_a = sum(l.startswith("is_a:") for s in terms for l in s.splitlines())
    rels = pd.Series([l.split()[1] for s in terms for l in s.splitlines() if l.startswith("relationship:")]).value_counts()
    alt = sum(l.startswith("alt_id:") for s in terms for l in s.splitlines())
    onto = read_ontology(path)
    assert len(onto.terms) == len(terms) > 100
    counts = onto.relations["relation"].value_counts()
    assert counts["is_a"] == is_a
    for rel, n in rels.items():
        assert counts[rel] == n
    assert len(onto.alt_ids) == alt


@pytest.mark.parametrize("name", ["solubility", "DosageSensitivity", "BivalentVsLys4", "Tf_range", "TF_target_type"])
def test_real_litgene_labels(shared_data, name):
    import csv
    path = shared_data / "litgene" / f"{name}.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_gene: dict[str, str] = {}
    for r in rows:  # TF_target_type lists most genes under several classes: keep the first
        per_gene.setdefault(r["Gene name"].strip(), r["Label"].strip())
    labels = read_labels(path, duplicates="first")
    assert len(labels.genes) == len(per_gene)
    assert labels.kind == ("multiclass" if len(set(per_gene.values())) > 2 else "binary")
    got = dict(zip(labels.genes, (labels.classes[v] for v in labels.values)))
    assert got == per_gene
    assert np.all(np.isin(labels.values, np.arange(labels.num_classes)))
