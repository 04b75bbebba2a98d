"""METIS / random partitioning for DistGraph: files, labels in node data, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genen_dgl.data.graph import load_graph
from genen_dgl.dgl_compat import dgl
from genen_dgl.partition import META, REPORT, PartitionInfo, balance_types, main


@pytest.fixture(scope="module")
def parts(sample_spec, tmp_path_factory):
    """The sample's go_ppi graph in 2 METIS parts and 2 random parts."""
    root = tmp_path_factory.mktemp("parts")
    for method in ("metis", "random"):
        assert main(["--data", str(sample_spec), "--num-parts", "2", "--method", method,
                     "--out", str(root / method)]) == 0
    return root


def test_report_counts_add_up(parts, sample_spec, capsys):
    graph = load_graph(sample_spec, "go_ppi").graph
    report = json.loads((parts / "metis" / REPORT).read_text())
    assert report["num_parts"] == 2 and report["method"] == "metis"
    for t in graph.ntypes:
        assert sum(p["nodes"][t] for p in report["parts"]) == graph.num_nodes(t)
    assert sum(p["edges"] for p in report["parts"]) == graph.num_edges() == report["edges_total"]
    assert sum(p["cut_edges"] for p in report["parts"]) == report["cut_edges"]
    assert 0 < report["edge_cut_ratio"] < 1
    assert report["seconds"]["total"] > 0 and report["peak_rss_gb"] > 0
    assert all(p["halo_nodes"] > 0 for p in report["parts"])


def test_metis_balances_labelled_genes_and_cuts_less_than_random(parts):
    metis = json.loads((parts / "metis" / REPORT).read_text())
    random = json.loads((parts / "random" / REPORT).read_text())
    labelled = metis["labelled_genes_per_part"]
    assert abs(labelled[0] - labelled[1]) <= 0.1 * sum(labelled)
    assert metis["edge_cut_ratio"] < 0.5 * random["edge_cut_ratio"]


def test_labels_and_features_are_in_the_parts(parts, sample_spec):
    """Each part holds its inner nodes' features and labels, under the saved mapping."""
    data = load_graph(sample_spec, "go_ppi")
    info = PartitionInfo.load(parts / "metis")
    nmap = info.node_mapping()
    assert sorted(nmap["gene"].tolist()) == list(range(data.graph.num_nodes("gene")))
    assert info.gene_ids() == data.gene_ids
    for task in data.spec.tasks:
        nodes, labels = data.labels(task)
        got_nodes, got = info.labels(task)
        np.testing.assert_array_equal(got_nodes, nodes)
        np.testing.assert_array_equal(got.values, labels.values)
        assert got.kind == labels.kind and got.classes == labels.classes
    nodes, labels = data.labels("membrane")
    want = torch.full((data.graph.num_nodes("gene"),), -1, dtype=torch.int64)
    want[torch.as_tensor(nodes)] = torch.as_tensor(labels.values)
    meta = json.loads(info.part_config.read_text())
    for p in range(info.num_parts):
        _, node_feats, _, gpb, *_ = dgl.distributed.load_partition(str(info.part_config), p)
        start, end = meta["node_map"]["gene"][p]
        offset = sum(e - s for s, e in meta["node_map"]["gene"][:p])
        orig = nmap["gene"][offset:offset + end - start]
        assert torch.equal(node_feats["gene/label_membrane"], want[orig])
        assert torch.equal(node_feats["gene/labelled_membrane"], (want[orig] >= 0).to(torch.int8))
        assert torch.equal(node_feats["gene/feat"], data.graph.nodes["gene"].data["feat"][orig])


def test_partition_meta_names_the_variant_and_tasks(parts):
    meta = json.loads((parts / "metis" / META).read_text())
    assert meta["variant"] == "go_ppi" and meta["num_parts"] == 2
    assert set(meta["tasks"]) == {"membrane", "localization", "conservation"}
    assert PartitionInfo.load(parts / "metis" / "genen.json").root == (parts / "metis").resolve()


def test_balance_types_numbers_classes_from_zero():
    assert balance_types(torch.tensor([True, True]))["gene"].tolist() == [0, 0]
    assert balance_types(torch.tensor([False, True, False]))["gene"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("args, message", [
    (["--num-parts", "0"], "num_parts = 0"),
    (["--num-parts", "2", "--task", "nope"], "unknown task 'nope'"),
    (["--num-parts", "2", "--name", "bad-name"], "name = 'bad-name'"),
])
def test_bad_input_is_one_line(sample_spec, tmp_path, capsys, args, message):
    assert main(["--data", str(sample_spec), "--out", str(tmp_path / "p"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "p").exists()
