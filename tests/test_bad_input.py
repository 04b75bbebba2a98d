"""Malformed inputs: one clear line naming file/line and what was expected, exit 2,
no traceback, no half-written cache."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genen_dgl.data.build import main as build_main
from genen_dgl.train import main as train_main

LINKS = "string/9606.protein.links.v12.0.txt.gz"


@pytest.fixture
def dataset(sample_spec, tmp_path) -> Path:
    """A private copy of the sample dataset to damage."""
    root = tmp_path / "data"
    shutil.copytree(sample_spec.parent, root, ignore=shutil.ignore_patterns(".cache"))
    return root


def edit_text(path: Path, change) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        lines = fh.read().splitlines()
    lines = change(lines)
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + ("\n" if lines else ""))


def edit_yaml(root: Path, change) -> None:
    spec = yaml.safe_load((root / "dataset.yaml").read_text())
    change(spec)
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec))


def replace_line(n: int, text: str):
    def change(lines):
        lines[n - 1] = text
        return lines
    return change


def obo_add(term_id: str, extra: str):
    """Insert ``extra`` after the ``id:`` line of ``term_id``."""
    def change(lines):
        i = lines.index(f"id: {term_id}")
        return lines[: i + 1] + [extra] + lines[i + 1:]
    return change


CASES = {
    "links truncated line": (lambda r: edit_text(r / LINKS, replace_line(3, "9606.ENSP00000000002 9606.ENSP00000000004")),
                             [LINKS.split("/")[-1] + ":3:", "expected 3 fields"]),
    "links non-numeric score": (lambda r: edit_text(r / LINKS, replace_line(4, "9606.ENSP00000000002 9606.ENSP00000000004 high")),
                                [":4:", "combined_score", "'high'"]),
    "links score out of range": (lambda r: edit_text(r / LINKS, replace_line(5, "9606.ENSP00000000002 9606.ENSP00000000004 1200")),
                                 [":5:", "0..1000"]),
    "links unknown protein": (lambda r: edit_text(r / LINKS, replace_line(6, "9606.ENSP99999999999 9606.ENSP00000000004 500")),
                              ["9606.ENSP99999999999", "info"]),
    "links empty": (lambda r: edit_text(r / LINKS, lambda lines: []), [LINKS.split("/")[-1], "empty"]),
    "links wrong header": (lambda r: edit_text(r / LINKS, replace_line(1, "a b c")), [":1:", "protein1"]),
    "obo is_a cycle": (lambda r: edit_text(r / "go/go-basic.obo", obo_add("GO:0000001", "is_a: GO:0000003 ! x")),
                       ["go-basic.obo", "cycle", "GO:0000001"]),
    "obo dangling is_a": (lambda r: edit_text(r / "go/go-basic.obo", obo_add("GO:0000004", "is_a: GO:9999999 ! x")),
                          ["go-basic.obo:", "GO:9999999", "not a defined"]),
    "obo empty": (lambda r: (r / "go/go-basic.obo").write_text(""), ["go-basic.obo", "empty"]),
    "gaf wrong column count": (lambda r: edit_text(r / "go/goa_human.gaf", replace_line(5, "UniProtKB\tP1\tGN00001\tinvolved_in\tGO:0000002")),
                               ["goa_human.gaf:5:", "expected 17 fields, found 5"]),
    "gaf bad GO id": (lambda r: edit_text(r / "go/goa_human.gaf", lambda ls: ls[:4] + [ls[4].replace("\tGO:", "\tGX:", 1)] + ls[5:]),
                      ["goa_human.gaf:5:", "expected a GO id"]),
    "features wrong width": (lambda r: edit_text(r / "features/go.csv", lambda ls: [",".join(l.split(",")[:-1]) for l in ls]),
                             ["go.csv", "expected 64 feature columns", "found 63"]),
    "features NaN": (lambda r: edit_text(r / "features/genes.csv", lambda ls: ls[:7] + [ls[7].split(",")[0] + ",nan" + ls[7][ls[7].index(",", ls[7].index(",") + 1):]] + ls[8:]),
                     ["genes.csv:8:", "not all finite"]),
    "features non-numeric": (lambda r: edit_text(r / "features/genes.csv", lambda ls: ls[:3] + [ls[3].split(",")[0] + ",abc," + ",".join(ls[3].split(",")[2:])] + ls[4:]),
                             ["genes.csv:4:", "v1", "'abc'"]),
    "yaml missing file": (lambda r: edit_yaml(r, lambda s: s["go"].update(obo="go/nope.obo")),
                          ["dataset.yaml", "go.obo", "nope.obo"]),
    "yaml unknown key": (lambda r: edit_yaml(r, lambda s: s["ppi"].update(min_scor=100)),
                         ["dataset.yaml", "ppi.min_scor", "unknown key"]),
    "yaml invalid": (lambda r: (r / "dataset.yaml").write_text("ppi: [unclosed\n"), ["dataset.yaml", "not valid YAML"]),
    "yaml named link column missing": (lambda r: edit_yaml(r, lambda s: s["ppi"].update(score_column="score")),
                                       [LINKS.split("/")[-1] + ":1:", "missing column(s) 'score'", "ppi.score_column"]),
    "yaml score scale": (lambda r: edit_yaml(r, lambda s: s["ppi"].update(score_scale=100)),
                         ["dataset.yaml", "ppi.score_scale", "1000", "found 100"]),
    "yaml gene node source": (lambda r: edit_yaml(r, lambda s: s.update(genes={"nodes": ["ppi", "tasks"]})),
                              ["dataset.yaml", "genes.nodes", "annotations", "'tasks'"]),
    "yaml text fallback": (lambda r: edit_yaml(r, lambda s: s["summaries"].update(fallback="symbol")),
                           ["dataset.yaml", "summaries.fallback", "protein_name", "'symbol'"]),
    "yaml zeros width": (lambda r: edit_yaml(r, lambda s: s.update(genes={"nodes": ["ppi"]}, features={"zeros": "384"})),
                         ["dataset.yaml", "features.zeros", "positive integer", "'384'"]),
    "features lack a gene node": (lambda r: (edit_yaml(r, lambda s: s.update(genes={"nodes": ["ppi", "annotations"]})),
                                             edit_text(r / "features/genes.csv", lambda ls: ls[:1] + ls[2:])),
                                  ["genes.csv", "has no feature row", "gene nodes of ppi, annotations", "encode"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_rejects(case, dataset, capsys):
    damage, expected = CASES[case]
    damage(dataset)
    assert build_main(["--data", str(dataset / "dataset.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for part in expected:
        assert part in err, f"{part!r} not in {err!r}"
    cache = dataset / ".cache"
    assert not cache.exists() or not any(cache.iterdir()), "a failed build left files in the cache"


def test_mixed_label_types_rejected(dataset, capsys):
    edit_text(dataset / "labels/membrane.csv", lambda ls: ls[:3] + [ls[3].replace(",Membrane,1,", ",Membrane,yes,").replace(",Soluble,0,", ",Soluble,yes,")] + ls[4:])
    assert train_main(["--data", str(dataset / "dataset.yaml"), "--task", "membrane", "--out", str(dataset / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "membrane.csv:4:" in err and "mixes numbers and text" in err and "'yes'" in err


def test_unknown_task_rejected(dataset, capsys):
    assert train_main(["--data", str(dataset / "dataset.yaml"), "--task", "nope", "--out", str(dataset / "run")]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_cli_exit_code_and_debug_traceback(dataset):
    """A real process: exit code 2 and one line; --debug shows the traceback."""
    edit_text(dataset / LINKS, replace_line(4, "9606.ENSP00000000002 9606.ENSP00000000004 high"))
    cmd = [sys.executable, "-m", "genen_dgl.data.build", "--data", str(dataset / "dataset.yaml")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr and plain.stderr.count("error: ") == 1
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "InputError" in debug.stderr
