"""Silent wrong results and late validation (issue 23): ids of two files that never meet
are an error naming both, a thin relation and a baseline that cannot run are named in the
summary line, and every bad option or label file is one ``error:`` line (exit 2) before
any run directory exists."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from genen_dgl.config import build_parser, from_args
from genen_dgl.data.sample import main as sample_main
from genen_dgl.distributed.train import configure
from genen_dgl.errors import InputError
from genen_dgl.experiments.__main__ import main as experiments_main
from genen_dgl.partition import main as partition_main
from genen_dgl.train import main as train_main

TINY = ["--folds", "2", "--epochs", "2", "--hidden", "16", "--sampler", "full", "--threads", "1", "--no-refit"]
GAF = "go/goa_human.gaf"


def copy_dataset(sample_spec: Path, root: Path) -> Path:
    shutil.copytree(sample_spec.parent, root, ignore=shutil.ignore_patterns(".cache"))
    return root


def rewrite(path: Path, change) -> None:
    path.write_text("\n".join(change(line) for line in path.read_text().splitlines()) + "\n")


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def train(spec: Path, out: Path, *args: str) -> int:
    return train_main(["--data", str(spec), "--out", str(out), *TINY, *args])


@pytest.fixture
def dataset(sample_spec, tmp_path) -> Path:
    return copy_dataset(sample_spec, tmp_path / "data")


def test_gene_ids_that_meet_nothing_are_refused_naming_both_files(dataset, tmp_path, capsys):
    """Features and labels renamed consistently, STRING and GAF unchanged: no PPI edge could be built."""
    for f in ["features/genes.csv", *(p.relative_to(dataset) for p in (dataset / "labels").glob("*.csv"))]:
        rewrite(dataset / f, lambda line: re.sub(r"^GN", "XG", line))
    assert train(dataset / "dataset.yaml", tmp_path / "run") == 2
    err = one_error(capsys)
    assert "PPI relation is empty" in err and "features/genes.csv" in err and "9606.protein.links" in err, err
    assert re.search(r"\(XG\d+, XG\d+, XG\d+\)", err) and re.search(r"\(GN\d+, GN\d+, GN\d+\)", err), err
    assert not (tmp_path / "run").exists()
    assert not list((dataset / ".cache").glob("graph-*")), "a refused graph was cached"


def test_label_genes_that_are_no_gene_node_are_refused_naming_both_files(dataset, tmp_path, capsys):
    rewrite(dataset / "labels/membrane.csv", lambda line: re.sub(r"^GN", "XG", line))
    assert train(dataset / "dataset.yaml", tmp_path / "run", "--task", "membrane") == 2
    err = one_error(capsys)
    assert "labels/membrane.csv: task 'membrane': none of its" in err and "features/genes.csv" in err, err
    assert re.search(r"\(XG\d+, XG\d+, XG\d+\)", err) and re.search(r"\(GN\d+, GN\d+, GN\d+\)", err), err
    assert not (tmp_path / "run").exists()


def test_go_ids_unknown_to_the_obo_are_refused_naming_both_files(dataset, tmp_path, capsys):
    rewrite(dataset / GAF, lambda line: line.replace("\tGO:0000", "\tGO:9990"))
    assert train(dataset / "dataset.yaml", tmp_path / "run") == 2
    err = one_error(capsys)
    assert "gene-GO relation is empty" in err and GAF in err and "go/go-basic.obo" in err, err
    assert re.search(r"\(GO:999\d+, GO:999\d+, GO:999\d+\)", err) and re.search(r"\(GO:000\d+, ", err), err
    assert not (tmp_path / "run").exists()


def test_a_relation_that_keeps_under_a_tenth_of_its_rows_is_a_warning_in_the_summary(dataset, tmp_path, capsys):
    """Only the GAF rows of genes GN0058x-GN0059x still name a gene node."""
    rewrite(dataset / GAF, lambda line: re.sub(r"\tGN(?!005[89])", "\tZZ", line))
    rows = [line.split("\t") for line in (dataset / GAF).read_text().splitlines() if not line.startswith("!")]
    share = sum(r[2].startswith("GN") for r in rows if "NOT" not in r[3]) / sum("NOT" not in r[3] for r in rows)
    assert train(dataset / "dataset.yaml", tmp_path / "run") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.search(r"; warning: (gene-GO kept ([\d.]+)% of go/goa_human\.gaf rows); outputs in ", line)
    assert found, line
    assert 0 < float(found.group(2)) <= 100 * share < 10  # kept rows also need a live GO term
    assert json.loads((tmp_path / "run/metrics.json").read_text())["warnings"] == [found.group(1)]


def test_a_baseline_that_cannot_run_is_named_with_the_reason(dataset, tmp_path, capsys):
    spec = yaml.safe_load((dataset / "dataset.yaml").read_text())
    del spec["ppi"]
    (dataset / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert train(dataset / "dataset.yaml", tmp_path / "run", "--graph", "go") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "PPI-smoothed LR not run: no PPI edges (the dataset has no ppi.links)" in line, line
    assert "GO-annotation LR 0." in line and "warning" not in line, line
    report = json.loads((tmp_path / "run/metrics.json").read_text())
    assert "PPI label propagation not run: no PPI edges" in line, line
    assert set(report["baselines"]) == {"text", "go_annotations", "lp_go"}
    assert set(report["baselines_not_run"]) == {"ppi_smoothed", "lp_ppi"}


CONFIGS = {  # a config file's value -> what the one line says
    "float for int": ({"hidden": 16.0}, "hidden = 16.0: expected an integer >= 1"),
    "float batch size": ({"batch_size": 64.0}, "batch_size = 64.0: expected an integer >= 1"),
    "quoted int": ({"hidden": "16"}, "hidden = '16': expected an integer >= 1 (text: write the number unquoted"),
    "text for bool": ({"refit": "no"}, "refit = 'no': expected a bool (true or false)"),
    "number for path": ({"data": 5}, "data = 5: expected a string"),
    "fanout_rel number": ({"fanout_rel": 7}, "fanout_rel = 7: expected a mapping REL: [F1, F2, ...]"),
    "fanout_rel bad fanout": ({"fanout_rel": {"interacts": [5, 0, 5]}}, "fanout_rel interacts = [5, 0, 5]: expected"),
    "fanout_rel unknown relation": ({"fanout_rel": "nosuchrel=5,5,5"}, "--fanout-rel nosuchrel: no such relation"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_values_are_one_line_before_any_run_directory(case, sample_spec, tmp_path, capsys):
    values, message = CONFIGS[case]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(values))
    assert train(sample_spec, tmp_path / "run", "--config", str(config)) == 2
    err = one_error(capsys)
    assert message in err, err
    assert "--fanout-rel" in message or str(config) in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["interacts=5,5,5", ["interacts=5,5,5"], {"interacts": [5, 5, 5]},
                                   {"interacts": "5,5,5"}])
def test_fanout_rel_in_a_config_file_as_text_or_mapping(value, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"fanout_rel": value}))
    args = build_parser("x", "").parse_args(["--config", str(config)])
    assert from_args(args).resolved().fanout_rel == {"interacts": [5, 5, 5]}


def test_a_model_too_large_for_memory_is_refused_saying_what_it_needs(sample_spec, tmp_path, capsys):
    assert train_main(["--data", str(sample_spec), "--out", str(tmp_path / "run"), "--hidden", "2000000",
                       "--sampler", "full"]) == 2
    err = one_error(capsys)
    assert re.search(r"hidden = 2000000: a 3-layer GCN on [\d,]+ nodes with 64 input features needs at least "
                     r"[\d.]+ TiB .* free on cpu: lower hidden or layers", err), err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def label_dataset(sample_spec, tmp_path_factory) -> Path:
    """The sample with extra tasks whose label files are bad, one graph cache for all."""
    root = copy_dataset(sample_spec, tmp_path_factory.mktemp("labels") / "data")
    lines = (root / "labels/membrane.csv").read_text().splitlines()
    positive = [line for line in lines[1:] if ",Membrane,1," in line]
    negative = [line for line in lines[1:] if ",Soluble,0," in line]
    (root / "labels/three.csv").write_text("\n".join([lines[0], positive[0], *negative[:2]]) + "\n")
    (root / "labels/one_positive.csv").write_text("\n".join([lines[0], positive[0], *negative[:40]]) + "\n")
    reg = (root / "labels/conservation.csv").read_text().splitlines()
    for name, bad in (("inf", "inf"), ("nan", "NaN")):
        changed = reg[:4] + [re.sub(r"^(GN\d+),[^,]+,", rf"\1,{bad},", reg[4])] + reg[5:]
        (root / f"labels/{name}.csv").write_text("\n".join(changed) + "\n")
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    spec["tasks"].update({
        "three": {"file": "labels/three.csv", "type": "binary"},
        "one_positive": {"file": "labels/one_positive.csv", "type": "binary"},
        "inf": {"file": "labels/inf.csv", "type": "regression"},
        "nan": {"file": "labels/nan.csv", "type": "regression"},
        "values_as_classes": {"file": "labels/conservation.csv", "type": "multiclass"},
    })
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


LABELS = {  # options -> what the one line names
    "inf label": (["--task", "inf"], [r"labels/inf\.csv:5: gene 'GN\d+' has label 'inf'", "finite"]),
    "NaN label": (["--task", "nan"], [r"labels/nan\.csv:5: gene 'GN\d+' has label 'NaN'", "finite"]),
    "three genes": (["--task", "three"], [r"three\.csv: 3 genes in 2 classes \('1': 1, '0': 2\)",
                                          "folds = 2 needs at least 4 genes per class"]),
    "one positive": (["--task", "one_positive", "--folds", "5"],
                     [r"one_positive\.csv: 41 genes in 2 classes \('1': 1, '0': 40\)", "folds = 5 needs at least 5"]),
    "folds beyond the genes": (["--folds", "100000"], [r"membrane\.csv: \d+ genes in 2 classes",
                                                       "folds = 100000 needs at least 100000 genes per class"]),
    "validation share": (["--val-share", "0.999"], [r"membrane\.csv: .*val_share = 0\.999 of a training part of \d+ "
                                                    r"genes leaves \d+ to validate and 0 to fit on"]),
    "regression validation share": (["--task", "conservation", "--val-share", "0.999"],
                                    [r"conservation\.csv: \d+ genes; val_share = 0\.999", "0 to fit on"]),
    "regression values as classes": (["--task", "values_as_classes"],
                                     [r"conservation\.csv: (\d+) genes in \1 classes",
                                      "are these regression values\\? set the task's type: regression"]),
}


@pytest.mark.parametrize("case", sorted(LABELS))
def test_bad_labels_are_one_line_before_any_run_directory(case, label_dataset, tmp_path, capsys):
    args, patterns = LABELS[case]
    assert train(label_dataset / "dataset.yaml", tmp_path / "run", *args) == 2
    err = one_error(capsys)
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in {err!r}"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--folds", "100000"], r"labels/membrane\.npz: \d+ genes in 2 classes .* folds = 100000 needs at least 100000"),
    (["--hidden", "2000000"], r"hidden = 2000000: a 3-layer GCN on [\d,]+ nodes .* needs at least [\d.]+ TiB"),
])
def test_distributed_runs_check_labels_and_size_before_any_run_directory(args, message, sample_spec, tmp_path,
                                                                        monkeypatch):
    """A trainer checks them in ``configure``, before it connects and rank 0 creates the run directory."""
    assert partition_main(["--data", str(sample_spec), "--num-parts", "1", "--method", "random",
                           "--out", str(tmp_path / "parts")]) == 0
    monkeypatch.setenv("DGL_CONF_PATH", str(tmp_path / "parts" / "genen.json"))
    with pytest.raises(InputError, match=message):
        configure(["--out", str(tmp_path / "run"), *args])
    assert not (tmp_path / "run").exists()


def test_experiments_check_options_before_their_output_folder(sample_spec, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"hidden": 16.0}))
    out = tmp_path / "exp"
    assert experiments_main(["masking", "--data", str(sample_spec), "--config", str(config), "--out", str(out)]) == 2
    assert "hidden = 16.0: expected an integer" in one_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--scale", "-1"], "--scale -1: expected a number > 0"),
    (["--scale", "0"], "--scale 0: expected a number > 0"),
    (["--dim", "0"], "--dim 0: expected a feature width >= 1"),
])
def test_sample_refuses_sizes_that_write_no_graph(args, message, tmp_path, capsys):
    assert sample_main(["--out", str(tmp_path / "s"), *args]) == 2
    assert message in one_error(capsys)
    assert not (tmp_path / "s").exists()
