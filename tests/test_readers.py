"""Readers for the real formats, on small hand-written files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from genen_dgl.data.annotations import read_annotations, read_gene_names
from genen_dgl.data.features import read_features
from genen_dgl.data.labels import read_labels, read_summaries
from genen_dgl.data.ontology import read_ontology
from genen_dgl.data.string_links import read_protein_symbols, read_string_links
from genen_dgl.errors import InputError

INFO = "#string_protein_id\tpreferred_name\tprotein_size\tannotation\n" + "".join(
    f"9606.ENSP{i:011d}\t{g}\t100\tx\n" for i, g in enumerate(["A", "A", "B", "C", "D"])
)  # proteins 0 and 1 are both products of gene A


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def p(i: int) -> str:
    return f"9606.ENSP{i:011d}"


def pairs(frame) -> dict[tuple[str, str], int]:
    return {(a, b): s for a, b, s in zip(frame["gene_a"].astype(str), frame["gene_b"].astype(str), frame["score"])}


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_string_raw_merges_proteins_and_pairs(tmp_path, suffix):
    links = write(tmp_path / f"links{suffix}", "protein1 protein2 combined_score\n" + "".join([
        f"{p(0)} {p(2)} 300\n", f"{p(2)} {p(0)} 300\n",  # both directions, as STRING lists them
        f"{p(1)} {p(2)} 700\n",  # A's second product with B: higher score wins
        f"{p(0)} {p(1)} 900\n",  # A with A: a self-loop once mapped to genes
        f"{p(3)} {p(4)} 150\n",  # at the threshold: dropped (the paper keeps > 150)
        f"{p(3)} {p(2)} 151\n",
    ]))
    info = write(tmp_path / "info.txt", INFO)
    frame = read_string_links(links, info)
    assert pairs(frame) == {("A", "B"): 700, ("B", "C"): 151}


def test_string_detailed_header_and_aliases_file(tmp_path):
    links = write(tmp_path / "links.txt", "protein1 protein2 neighborhood fusion experimental combined_score\n"
                  f"{p(0)} {p(3)} 0 0 120 400\n{p(4)} {p(3)} 0 0 0 180\n")
    aliases = write(tmp_path / "aliases.txt", "#string_protein_id\talias\tsource\n"
                    f"{p(0)}\tA\tEnsembl_HGNC_symbol\n{p(0)}\tENSG1\tEnsembl_gene\n"
                    f"{p(3)}\tC\tEnsembl_HGNC_symbol\n{p(4)}\tD\tEnsembl_HGNC_symbol\n")
    assert read_protein_symbols(aliases)[p(0)] == "A"
    assert pairs(read_string_links(links, aliases, min_score=200)) == {("A", "C"): 400}


def test_string_symbol_csv_needs_no_aliases(tmp_path):
    links = write(tmp_path / "ppi.csv", "protein1,protein2,combined_score\nTP53,MDM2,999\nMDM2,TP53,800\nTP53,TP53,999\n")
    assert pairs(read_string_links(links)) == {("MDM2", "TP53"): 999}


OBO = """format-version: 1.2
ontology: test

[Term]
id: GO:0000001
name: root
def: "The root." [GOC:x]

[Term]
id: GO:0000002
name: child soluble fraction
alt_id: GO:0000099
def: "A \\"quoted\\" child." [GOC:x]
is_a: GO:0000001 ! root

[Term]
id: GO:0000003
name: part
is_a: GO:0000001 ! root
relationship: part_of GO:0000002 ! child

[Term]
id: GO:0000004
name: old
is_obsolete: true

[Typedef]
id: part_of
name: part of
"""


def test_ontology_relations_obsolete_alt_ids_and_leakage(tmp_path):
    onto = read_ontology(write(tmp_path / "go.obo", OBO))
    assert onto.terms["id"].tolist() == ["GO:0000001", "GO:0000002", "GO:0000003"]
    rel = {tuple(r) for r in onto.relations[["child", "parent", "relation"]].itertuples(index=False)}
    assert rel == {("GO:0000002", "GO:0000001", "is_a"), ("GO:0000003", "GO:0000001", "is_a"),
                   ("GO:0000003", "GO:0000002", "part_of")}
    assert onto.resolve("GO:0000099") == "GO:0000002"
    assert onto.texts()["GO:0000002"] == 'child soluble fraction. A \\"quoted\\" child.'
    clean = onto.without(["solubility", "soluble"])
    assert "GO:0000002" not in set(clean.terms["id"])
    assert set(clean.relations["relation"]) == {"is_a"} and len(clean.relations) == 1
    assert "GO:0000099" not in clean.alt_ids
    assert len(read_ontology(tmp_path / "go.obo", relations=["is_a"]).relations) == 2


def test_ontology_drops_listed_terms_and_whole_branches(tmp_path):
    onto = read_ontology(write(tmp_path / "go.obo", OBO))
    assert onto.below(["GO:0000002"]) == {"GO:0000002", "GO:0000003"}  # GO:0000003 is part_of it
    assert onto.below(["GO:0000001"]) == {"GO:0000001", "GO:0000002", "GO:0000003"}
    branch = onto.without(branches=["GO:0000099"])  # an alt_id of GO:0000002: resolved
    assert branch.terms["id"].tolist() == ["GO:0000001"] and branch.relations.empty
    listed = onto.without(terms=["GO:0000002"])
    assert listed.terms["id"].tolist() == ["GO:0000001", "GO:0000003"]
    assert {tuple(r) for r in listed.relations[["child", "parent"]].itertuples(index=False)} == {
        ("GO:0000003", "GO:0000001")}
    with pytest.raises(InputError, match="GO:0000004"):  # obsolete: not a live term
        onto.without(branches=["GO:0000004"])


def test_spec_base_replaces_whole_sections_and_keeps_their_paths(sample_spec, tmp_path):
    from genen_dgl.data.spec import load_spec

    base = load_spec(sample_spec)
    derived = write(tmp_path / "elsewhere" / "zeros.yaml",
                    f"base: {sample_spec}\nname: zeros\nfeatures: {{zeros: 8}}\ngenes: {{nodes: [ppi]}}\n"
                    "go: {obo: go/go-basic.obo, exclude_branches: ['GO:0000001']}\n")
    with pytest.raises(InputError, match="go.obo names a missing file"):  # go given here: relative to here
        load_spec(derived)
    write(tmp_path / "elsewhere" / "go" / "go-basic.obo", OBO)
    spec = load_spec(derived)
    assert spec.name == "zeros" and spec.zero_features == 8 and "gene" not in spec.features
    assert spec.ppi == base.ppi and spec.tasks == base.tasks  # inherited, resolved against the base's folder
    assert spec.go == {"obo": tmp_path / "elsewhere" / "go" / "go-basic.obo", "exclude_branches": ["GO:0000001"]}
    assert spec.exclusions["branches"] == ["GO:0000001"] and spec.cache == tmp_path / "elsewhere" / ".cache"
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(InputError, match="cycle"):
        load_spec(tmp_path / "a.yaml")


GAF_ROW = "UniProtKB\tP1\t{gene}\t{qual}\t{go}\tPMID:1\tIDA\t\tP\tname\t\tprotein\ttaxon:9606\t20200101\tUniProt\t\t"


def test_gaf_excludes_not_and_reads_symbols(tmp_path):
    rows = [GAF_ROW.format(gene="A", qual="enables", go="GO:0000002"),
            GAF_ROW.format(gene="B", qual="NOT|enables", go="GO:0000002"),
            GAF_ROW.format(gene="B", qual="involved_in", go="GO:0000099"),
            GAF_ROW.format(gene="A", qual="enables", go="GO:0000002")]
    gaf = write(tmp_path / "genes.gaf", "!gaf-version: 2.2\n!comment\n" + "\n".join(rows) + "\n")
    frame = read_annotations(gaf)
    assert sorted(map(tuple, frame[["gene", "go"]].to_numpy())) == [("A", "GO:0000002"), ("B", "GO:0000099")]


def test_gaf_accessions_in_the_symbol_column_are_counted(tmp_path, caplog):
    row = "UniProtKB\t{acc}\t{gene}\tenables\tGO:0000002\tPMID:1\tIDA\t\tP\tname\t{syn}\tprotein\ttaxon:9606\t2020\tU\t\t"
    rows = [row.format(acc="A0A075B6Q4", gene="A0A075B6Q4", syn=""), row.format(acc="A0A075B6Q4", gene="A0A075B6Q4", syn=""),
            row.format(acc="Q9H0H5", gene="Q9H0H5", syn="RACGAP1|KIAA1478"), row.format(acc="P04637", gene="TP53", syn="P53"),
            row.format(acc="O94766", gene="B3GAT3", syn="")]  # a symbol shaped like an accession, but a symbol
    gaf = write(tmp_path / "genes.gaf", "!gaf-version: 2.2\n" + "\n".join(rows) + "\n")
    with caplog.at_level("INFO", logger="genen_dgl"):
        frame = read_annotations(gaf)
    assert set(frame["gene"]) == {"A0A075B6Q4", "Q9H0H5", "TP53", "B3GAT3"}  # kept as they are
    line = [m for m in caplog.messages if "UniProt accessions" in m]
    assert len(line) == 1 and "2 gene symbols are UniProt accessions, not symbols (3 rows; e.g. A0A075B6Q4)" in line[0]
    assert "1 of them list synonyms" in line[0]


def test_biomart_export_skips_genes_without_terms(tmp_path):
    mart = write(tmp_path / "mart.tsv", "Gene stable ID\tGene name\tGO term accession\nE1\tA\tGO:0000001\nE2\tB\t\nE3\tC\tGO:0000003\n")
    frame = read_annotations(mart)
    assert sorted(map(tuple, frame[["gene", "go"]].to_numpy())) == [("A", "GO:0000001"), ("C", "GO:0000003")]


def test_features_csv_and_npy_agree(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    write(tmp_path / "f.csv", "id,v1,v2,v3,v4\n" + "".join(f"g{i}," + ",".join(map(repr, row.tolist())) + "\n" for i, row in enumerate(x)))
    np.save(tmp_path / "f.npy", x)
    write(tmp_path / "ids.txt", "g0\ng1\ng2\n")
    ids_csv, x_csv = read_features(tmp_path / "f.csv")
    ids_npy, x_npy = read_features(tmp_path / "f.npy", tmp_path / "ids.txt")
    assert ids_csv == ids_npy == ["g0", "g1", "g2"]
    np.testing.assert_allclose(x_csv, x_npy, rtol=1e-6)
    write(tmp_path / "short.txt", "g0\ng1\n")
    with pytest.raises(InputError, match="expected a 2-d array with 2 rows"):
        read_features(tmp_path / "f.npy", tmp_path / "short.txt")


@pytest.mark.parametrize("values,kind,classes", [
    (["Membrane", "Soluble", "Membrane"], "binary", ["Membrane", "Soluble"]),
    (["2", "0", "1"], "multiclass", ["0", "1", "2"]),
    (["0.5", "1.25", "-2"], "regression", []),
])
def test_label_kinds(tmp_path, values, kind, classes):
    csv = write(tmp_path / "l.csv", "Summary,Gene name,Label\n" + "".join(f"text,G{i},{v}\n" for i, v in enumerate(values)))
    labels = read_labels(csv)
    assert labels.kind == kind and labels.classes == classes and list(labels.genes) == ["G0", "G1", "G2"]
    if kind == "regression":
        np.testing.assert_allclose(labels.values, [0.5, 1.25, -2])
    else:
        assert [classes[v] for v in labels.values] == values


def test_label_columns_configurable_and_conflicts(tmp_path):
    csv = write(tmp_path / "l.csv", "sym,cls\nA,x\nB,y\nA,x\n")
    labels = read_labels(csv, gene_column="sym", label_column="cls")
    assert list(labels.genes) == ["A", "B"] and labels.kind == "binary"
    write(tmp_path / "c.csv", "sym,cls\nA,x\nB,y\nA,y\nC,x\n")
    with pytest.raises(InputError, match="gene 'A' has conflicting labels .1 genes do.; set the task's duplicates"):
        read_labels(tmp_path / "c.csv", gene_column="sym", label_column="cls")
    first = read_labels(tmp_path / "c.csv", gene_column="sym", label_column="cls", duplicates="first")
    assert dict(zip(first.genes, (first.classes[v] for v in first.values))) == {"A": "x", "B": "y", "C": "x"}
    dropped = read_labels(tmp_path / "c.csv", gene_column="sym", label_column="cls", duplicates="drop")
    assert list(dropped.genes) == ["B", "C"]


def test_classes_left_without_genes_by_the_duplicates_policy_are_dropped(tmp_path, caplog):
    """TF_target_type's case: with duplicates: first some classes keep no gene; the task's
    classes are those left, renumbered, so no metric averages over an empty class."""
    caplog.set_level("INFO")
    write(tmp_path / "m.csv", "sym,cls\nA,a\nA,c\nB,b\nB,c\nC,d\nD,a\n")
    labels = read_labels(tmp_path / "m.csv", gene_column="sym", label_column="cls", duplicates="first")
    assert labels.classes == ["a", "b", "d"] and labels.kind == "multiclass"
    assert dict(zip(labels.genes, (labels.classes[v] for v in labels.values))) == {"A": "a", "B": "b", "C": "d",
                                                                                   "D": "a"}
    assert "classes c have no gene left after duplicates: first" in caplog.text
    write(tmp_path / "two.csv", "sym,cls\nA,a\nA,c\nB,b\nB,c\n")
    assert read_labels(tmp_path / "two.csv", gene_column="sym", label_column="cls", duplicates="first").kind == "binary"
    write(tmp_path / "one.csv", "sym,cls\nA,a\nA,b\nB,a\nB,c\n")
    with pytest.raises(InputError, match="only class 'a' has genes left after duplicates: first"):
        read_labels(tmp_path / "one.csv", gene_column="sym", label_column="cls", duplicates="first")


# --- real files as they come (issue 11): named columns, 0-1 scores, row numbers, quotes, duplicates

REDISTRIBUTED = ('"","score","protein1","protein2"\n'
                 '"1",0.952,"ARF5","RAB11FIP3"\n'
                 '"2",0.4,"RAB11FIP3","ARF5"\n'  # the same pair reversed, lower score: the max wins
                 '"3",0.993,"GGA3","GGA3"\n'  # a self-loop
                 '"4",0.15,"M6PR","GGA3"\n'  # at the threshold: dropped
                 '"5",0.151,"M6PR","ARF5"\n')


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_symbol_edge_list_with_named_columns_and_0_1_scores(tmp_path, suffix):
    links = write(tmp_path / f"ppi{suffix}", REDISTRIBUTED)
    frame = read_string_links(links, columns=("protein1", "protein2", "score"), score_scale=1, min_score=0.15)
    got = pairs(frame)
    assert got.keys() == {("ARF5", "RAB11FIP3"), ("ARF5", "M6PR")}
    assert got[("ARF5", "RAB11FIP3")] == pytest.approx(0.952) and got[("ARF5", "M6PR")] == pytest.approx(0.151)
    # every gene of the file stays in the vocabulary, also those whose pairs were all dropped
    assert set(frame["gene_a"].cat.categories) == {"ARF5", "RAB11FIP3", "GGA3", "M6PR"}
    # the default threshold is the paper's 0.15 of the scale
    assert pairs(read_string_links(links, columns=("protein1", "protein2", "score"), score_scale=1)) == got


def test_symbol_edge_list_errors_name_the_column_and_the_scale(tmp_path):
    links = write(tmp_path / "ppi.csv", REDISTRIBUTED)
    with pytest.raises(InputError, match=r"missing column\(s\) 'combined_score'; header has '', 'score', "
                                         r"'protein1', 'protein2'; name them with ppi.a_column.*ppi.score_column"):
        read_string_links(links)
    with pytest.raises(InputError, match=r"ppi.csv: score lies in 0..1 \(max 0.993\).*set ppi.score_scale: 1"):
        read_string_links(links, columns=("protein1", "protein2", "score"))
    big = write(tmp_path / "big.csv", REDISTRIBUTED.replace("0.151", "151"))
    with pytest.raises(InputError, match=r"big.csv:6: score must lie in 0..1 \(ppi.score_scale\), found 151"):
        read_string_links(big, columns=("protein1", "protein2", "score"), score_scale=1)
    raw = write(tmp_path / "raw.csv", f"protein1,protein2,combined_score\n{p(0)},{p(2)},300\n")
    with pytest.raises(InputError, match="raw STRING links .ids like '9606.ENSP00000000000'. need an aliases"):
        read_string_links(raw)


def test_summaries_from_several_files_collapse_exact_duplicates(tmp_path, caplog):
    a = write(tmp_path / "a.csv", 'Gene name,StrLabel,Label,Summary\nA,x,0,"alpha, one"\nB,y,1,beta\nA,x,0,"alpha, one"\n')
    b = write(tmp_path / "b.csv", 'Gene name,StrLabel,Summary,Label\nC,x,gamma,0\nB,z,beta,1\n')  # other column order
    with caplog.at_level("INFO", logger="genen_dgl"):
        text = read_summaries([(a, "Gene name", "Summary"), (b, "Gene name", "Summary")])
    assert text.to_dict() == {"A": "alpha, one", "B": "beta", "C": "gamma"}
    collapsed = [r.getMessage() for r in caplog.records if "exact duplicate" in r.getMessage()]
    assert len(collapsed) == 1 and "2 exact duplicate row(s)" in collapsed[0]
    c = write(tmp_path / "c.csv", "Gene name,Summary\nB,another text\n")
    with pytest.raises(InputError, match=r"gene 'B' appears with different text values \(a.csv row 2, c.csv row 1\)"):
        read_summaries([(a, "Gene name", "Summary"), (c, "Gene name", "Summary")])
    d = write(tmp_path / "d.csv", "gene,text\nD,delta\nC,gamma\n")  # a task file with its own column names
    assert read_summaries([(b, "Gene name", "Summary"), (d, "gene", "text")]).to_dict() == {
        "C": "gamma", "B": "beta", "D": "delta"}


def test_labels_collapse_exact_duplicates_with_one_line(tmp_path, caplog):
    csv = write(tmp_path / "l.csv", "Gene name,Label\nA,x\nB,y\nA,x\nB,y\nC,x\n")
    with caplog.at_level("INFO", logger="genen_dgl"):
        labels = read_labels(csv)
    assert list(labels.genes) == ["A", "B", "C"]
    assert sum("2 exact duplicate row(s)" in r.getMessage() for r in caplog.records) == 1


def test_gaf_gene_names_include_not_rows_and_take_the_commonest_name(tmp_path):
    row = "UniProtKB\t{acc}\t{gene}\t{qual}\tGO:0000002\tPMID:1\tIDA\t\tP\t{name}\t\tprotein\ttaxon:9606\t20200101\tUniProt\t\t"
    rows = [row.format(acc="P1", gene="A", qual="enables", name="A protein"),
            row.format(acc="P2", gene="A", qual="enables", name="Kinase A"),
            row.format(acc="P2", gene="A", qual="enables", name="Kinase A"),
            row.format(acc="P3", gene="N", qual="NOT|enables", name="Only negated"),
            row.format(acc="P4", gene="T", qual="enables", name="Tie one"),
            row.format(acc="P5", gene="T", qual="enables", name="Tie two")]
    gaf = write(tmp_path / "g.gaf", "!gaf-version: 2.1\n" + "\n".join(rows) + "\n")
    assert read_gene_names(gaf).to_dict() == {"A": "Kinase A", "N": "Only negated", "T": "Tie one"}
