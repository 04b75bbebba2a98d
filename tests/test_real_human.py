"""The committed real-data spec (examples/human) against ../shared/data/real and litgene.

The graph is built without encoding (examples/human/no-text.yaml: zero features) and its
node and edge counts per type are checked against counts taken straight from the files
with gzip/csv and plain Python, not with the project's readers. Skips when ../shared is
absent (a user's checkout).
"""

from __future__ import annotations

import csv
import gzip
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from genen_dgl.data.genes import gene_node_ids, gene_texts
from genen_dgl.data.graph import load_graph
from genen_dgl.schema import PPI
from genen_dgl.data.spec import load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "human"
REAL = ("go-2019-01-27.obo.gz", "goa_human-2019-01-14.gaf.gz", "string-human-hc-symbols.csv.gz")
DEF = re.compile(r'^def: "((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def real(shared_data) -> Path:
    folder = shared_data / "real"
    missing = [f for f in REAL if not (folder / f).is_file()]
    if missing or not (shared_data / "litgene").is_dir():
        pytest.skip(f"real human data not available: {folder} lacks {', '.join(missing) or 'litgene/'}")
    return folder


def string_genes_and_pairs(path: Path, min_score: float) -> tuple[set[str], set[tuple[str, str]]]:
    genes, pairs = set(), set()
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            a, b = row["protein1"], row["protein2"]
            genes.update((a, b))
            if float(row["score"]) > min_score and a != b:
                pairs.add((min(a, b), max(a, b)))
    return genes, pairs


def gaf_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as fh:
        return [line.rstrip("\n").split("\t") for line in fh if not line.startswith("!")]


def obo_terms(path: Path, words: list[str]) -> tuple[set[str], dict[str, str], Counter]:
    """Live terms without the leakage words, alt_id map, and relations per type between them."""
    with gzip.open(path, "rt") as fh:
        stanzas = fh.read().split("\n\n")
    terms = {}
    for stanza in stanzas:
        lines = stanza.strip().splitlines()
        if not lines or lines[0] != "[Term]" or "is_obsolete: true" in lines:
            continue
        tag = defaultdict(list)
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            tag[key].append(value)
        definition = next((m.group(1) for m in map(DEF.match, lines) if m), "")
        terms[tag["id"][0]] = (tag, f"{tag['name'][0]} {definition}".lower())
    live = {t for t, (_, text) in terms.items() if not any(w in text for w in words)}
    alt = {a: t for t, (tag, _) in terms.items() if t in live for a in tag["alt_id"]}
    edges = set()
    for t in live:
        tag = terms[t][0]
        edges.update((t, v.split()[0], "is_a") for v in tag["is_a"])
        edges.update((t, v.split()[1], v.split()[0]) for v in tag["relationship"])
    return live, alt, Counter(rel for child, parent, rel in edges if parent in live)


def test_real_graph_counts_match_the_files(real, tmp_path):
    spec = load_spec(EXAMPLE / "no-text.yaml")
    string_genes, pairs = string_genes_and_pairs(real / REAL[2], float(spec.ppi["min_score"]))
    rows = gaf_rows(real / REAL[1])
    genes = string_genes | {r[2] for r in rows}
    live, alt, relations = obo_terms(real / REAL[0], spec.exclude_words)
    assert {"is_a", "part_of", "regulates", "has_part", "occurs_in"} <= set(relations)  # all are in the file
    relations = {r: n for r, n in relations.items() if r in spec.go["relations"]}  # the spec keeps is_a, part_of
    annotated = {(r[2], alt.get(r[4], r[4])) for r in rows if "NOT" not in r[3]}
    annotated = {(g, t) for g, t in annotated if t in live}

    spec.cache = tmp_path / "cache"  # not examples/human/.cache: the build is timed from scratch
    started = time.perf_counter()
    data = load_graph(spec, "go_ppi", rebuild=True)
    seconds = time.perf_counter() - started
    g = data.graph
    assert seconds < 60, f"building the real graph took {seconds:.0f} s"
    assert data.gene_ids == sorted(genes) and g.num_nodes("gene") == len(genes) > 19_000
    assert set(data.go_ids) == live and g.num_nodes("go") == len(live) > 44_000
    assert g.num_edges(PPI) == 2 * len(pairs)
    assert g.num_edges(("gene", "annotated", "go")) == g.num_edges(("go", "annotates", "gene")) == len(annotated)
    for rel, n in relations.items():
        assert g.num_edges(("go", rel, "go")) == g.num_edges(("go", f"rev_{rel}", "go")) == n, rel
    assert {e[1] for e in g.canonical_etypes if e[0] == e[2] == "go"} == set(relations) | {f"rev_{r}" for r in relations}
    assert not g.nodes["gene"].data["feat"].any() and g.nodes["go"].data["feat"].shape[1] == 384
    # every task of the spec reads and lands on graph genes
    full = load_spec(EXAMPLE / "dataset.yaml")
    assert set(full.tasks) == {"solubility", "dosage_sensitivity", "bivalent_vs_lys4", "tf_range", "tf_target_type"}
    for name, task in full.tasks.items():
        with open(task.file, newline="") as fh:
            listed = {r["Gene name"].strip() for r in csv.DictReader(fh)}
        nodes, labels = data.labels(name)
        assert set(labels.genes) == listed & genes, name
        assert [data.gene_ids[i] for i in nodes] == list(labels.genes)


def test_real_gene_texts_summary_then_protein_name(real):
    """Without encoding: which text each gene node of examples/human/dataset.yaml gets."""
    spec = load_spec(EXAMPLE / "dataset.yaml")
    nodes = gene_node_ids(spec)
    summary = {}
    for f in spec.files("summaries", "file"):
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                assert summary.setdefault(r["Gene name"], r["Summary"]) == r["Summary"]
    names = defaultdict(Counter)
    for r in gaf_rows(real / REAL[1]):
        names[r[2]][r[9]] += 1
    text, counts = gene_texts(spec, nodes)
    for gene in ["TP53", "MDM2", "A1BG", "VARS2", nodes[0], nodes[-1]]:
        if gene in summary:
            assert text[gene] == summary[gene]
        elif gene in names:
            assert text[gene] == names[gene].most_common(1)[0][0]
        else:
            assert text[gene] == ""
    assert counts["summary"] == len(set(summary) & set(nodes))
    assert counts["protein_name"] == len((set(names) - set(summary)) & set(nodes))
    assert counts["none"] == len(nodes) - counts["summary"] - counts["protein_name"] > 0
