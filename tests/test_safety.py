"""What a user can count on: nothing of theirs deleted, nothing from disk executed, every
file-system fault, damaged output and Ctrl-C one line (no traceback) and a clear exit code."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genen_dgl.atomic import MARKER
from genen_dgl.config import TrainConfig
from genen_dgl.data.build import main as build_main
from genen_dgl.data.sample import main as sample_main
from genen_dgl.data.spec import load_spec
from genen_dgl.errors import InputError, cli
from genen_dgl.experiments.__main__ import main as experiments_main
from genen_dgl.partition import PartitionInfo, main as partition_main
from genen_dgl.rundir import RunDir
from genen_dgl.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
LINKS = "string/9606.protein.links.v12.0.txt.gz"
TINY = ["--folds", "2", "--epochs", "2", "--hidden", "16", "--sampler", "full"]


@pytest.fixture
def dataset(sample_spec, tmp_path) -> Path:
    """A private copy of the sample dataset to damage."""
    root = tmp_path / "data"
    shutil.copytree(sample_spec.parent, root, ignore=shutil.ignore_patterns(".cache"))
    return root


@pytest.fixture(scope="module")
def finished_run(sample_spec, tmp_path_factory) -> Path:
    """A finished tiny run that keeps its checkpoints (copied before each damage)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_main(["--data", str(sample_spec), "--out", str(out), "--keep-checkpoints", "last",
                       "--no-refit", *TINY]) == 0
    return out


def one_error(capsys, *parts: str) -> str:
    """The captured stderr is one ``error:`` line holding every one of ``parts``."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for part in parts:
        assert part in err, f"{part!r} not in {err!r}"
    return err


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- nothing of the user's is lost

def user_folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("notes\n")
    return mine


def test_sample_and_partition_refuse_a_folder_they_did_not_write(sample_spec, tmp_path, capsys):
    mine = user_folder(tmp_path)
    assert sample_main(["--out", str(mine)]) == 2
    one_error(capsys, str(mine), "left untouched")
    assert partition_main(["--data", str(sample_spec), "--num-parts", "1", "--method", "random",
                           "--out", str(mine)]) == 2
    one_error(capsys, str(mine), "left untouched")
    assert train_main(["--data", str(sample_spec), "--out", str(mine), *TINY]) == 2
    one_error(capsys, str(mine), "left untouched")
    assert tree(mine) == {"notes.txt": b"notes\n"}


def test_an_earlier_sample_is_replaced_but_never_the_current_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sample"
    assert sample_main(["--out", str(out), "--seed", "1"]) == 0
    assert (out / MARKER).read_text().strip() == "genen_dgl.data.sample"
    first = tree(out)
    assert sample_main(["--out", str(out), "--seed", "2"]) == 0  # our own output: replaced
    second = tree(out)
    assert second.keys() == first.keys() and second != first
    assert not [p for p in tmp_path.iterdir() if p.name != "sample"], "a temporary folder was left behind"
    monkeypatch.chdir(out)
    for target in (".", ".."):
        assert sample_main(["--out", target]) == 2
        one_error(capsys, "current folder", "never replaced")
    assert tree(out) == second


def test_experiments_replace_only_a_marked_run(sample_spec, tmp_path, capsys):
    """The experiments replace a run of other options; a folder holding a run that lacks
    the marker (or anything else) is refused, not deleted."""
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: gcn\n")
    (run / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match="left untouched"):
        RunDir(run).reuse(TrainConfig(data=str(sample_spec), hidden=8).resolved(), load_spec(sample_spec))
    assert (run / "notes.txt").read_text() == "mine\n"


# ---------------------------------------------------------------- nothing from disk is executed

class Payload:
    """Unpickling this runs ``touch FILE``."""

    def __init__(self, file: Path):
        self.file = file

    def __reduce__(self):
        return os.system, (f"touch {self.file}",)


def test_resume_refuses_a_checkpoint_with_code_in_it(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "fold1" / "result.json").unlink()  # fold1 resumes from its last.pt
    ran = tmp_path / "ran"
    torch.save({"format": 1, "epoch": 1, "model": Payload(ran)}, run / "fold1" / "last.pt")
    assert train_main(["--resume", "--out", str(run)]) == 2
    one_error(capsys, str(run / "fold1" / "last.pt"), "refused", "nothing in it was run", "delete the folder")
    assert not ran.exists(), "the payload ran"


def test_a_partition_mapping_with_code_in_it_is_refused(sample_spec, tmp_path):
    parts = tmp_path / "parts"
    assert partition_main(["--data", str(sample_spec), "--num-parts", "1", "--method", "random",
                           "--out", str(parts)]) == 0
    info = PartitionInfo.load(parts)
    assert set(info.node_mapping()) == {"gene", "go"}  # what partition writes loads as tensors
    ran = tmp_path / "ran"
    torch.save({"node": Payload(ran)}, parts / info.meta["mapping"])
    with pytest.raises(InputError, match="nothing in it was run"):
        info.node_mapping()
    assert not ran.exists(), "the payload ran"


# ---------------------------------------------------------------- OS and file faults: one line

def truncate_gz(root: Path) -> Path:
    path = root / LINKS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def not_gzip(root: Path) -> Path:
    (root / LINKS).write_text("not compressed\n")
    return root / LINKS


def latin1(relative: str):
    def damage(root: Path) -> Path:
        with open(root / relative, "ab") as fh:
            fh.write("\nGéne\tcafé\n".encode("latin-1"))
        return root / relative
    return damage


def folder_instead(relative: str):
    def damage(root: Path) -> Path:
        (root / relative).unlink()
        (root / relative).mkdir()
        return root / relative
    return damage


def file_instead_of_cache(root: Path) -> Path:
    (root / ".cache").write_text("in the way\n")
    return root / ".cache"


OS_FAULTS = {
    "truncated gzip": (truncate_gz, "not a complete gzip file"),
    "gz that is not gzip": (not_gzip, "not a complete gzip file"),
    "GAF not UTF-8": (latin1("go/goa_human.gaf"), "not UTF-8"),
    "spec not UTF-8": (latin1("dataset.yaml"), "not UTF-8"),
    "features not UTF-8": (latin1("features/genes.csv"), "not UTF-8"),
    "GAF is a folder": (folder_instead("go/goa_human.gaf"), "is a folder"),
    "OBO is a folder": (folder_instead("go/go-basic.obo"), "is a folder"),
    "cache folder is a file": (file_instead_of_cache, ".cache"),
}


@pytest.mark.parametrize("case", sorted(OS_FAULTS))
def test_file_faults_are_one_line(case, dataset, capsys):
    damage, expected = OS_FAULTS[case]
    path = damage(dataset)
    before = tree(dataset)
    assert build_main(["--data", str(dataset / "dataset.yaml")]) == 2
    one_error(capsys, path.name, expected)
    assert tree(dataset) == before, "a failed build wrote files"


@pytest.mark.parametrize("command", ["train", "experiments"])
def test_out_that_is_a_file(command, sample_spec, tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("mine\n")
    if command == "train":
        code = train_main(["--data", str(sample_spec), "--out", str(out), *TINY])
    else:
        code = experiments_main(["bias", "--data", str(sample_spec), "--out", str(out), "--epochs", "2",
                                 "--folds", "2", "--hidden", "16"])
    assert code == 2
    one_error(capsys, str(out), "is a file")
    assert out.read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_says_not_writable(sample_spec, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert train_main(["--data", str(sample_spec), "--out", str(locked / "run"), *TINY]) == 2
        one_error(capsys, str(locked), "not writable")
    finally:
        locked.chmod(0o755)


def test_permission_denied_names_the_folder_that_is_not_writable(tmp_path, capsys):
    """What an unwritable --out or dataset folder raises (root cannot be refused, so the
    fault is raised here as the OS raises it: on a file about to be created in the folder)."""
    @cli
    def write(argv):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked" / ".config.yaml.x1.tmp"))
    (tmp_path / "locked").mkdir()
    assert write([]) == 2
    one_error(capsys, f"error: {tmp_path / 'locked'}: not writable")


def test_missing_config_file_is_named(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    assert train_main(["--config", str(config)]) == 2
    one_error(capsys, str(config), "not found")


# ---------------------------------------------------------------- damaged outputs: named, recoverable

@pytest.mark.parametrize("file", ["fold0/best.pt", "fold1/last.pt", "fold0/result.json", "config.yaml"])
def test_damaged_output_is_named_with_the_way_out(file, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if file == "fold1/last.pt":
        (run / "fold1" / "result.json").unlink()  # fold1 resumes from its last.pt
    data = (run / file).read_bytes()
    (run / file).write_bytes(data[: len(data) // 2])
    assert train_main(["--resume", "--out", str(run)]) == 2
    how = "start again" if file == "config.yaml" else f"delete the folder {run / Path(file).parent}"
    one_error(capsys, str(run / file), "damaged", how)


def test_damaged_graph_cache_is_rebuilt(dataset, capsys, caplog):
    assert build_main(["--data", str(dataset / "dataset.yaml")]) == 0
    first = capsys.readouterr().out
    (cached,) = (dataset / ".cache").glob("graph-*.bin")
    cached.write_bytes(cached.read_bytes()[:500])
    assert build_main(["--data", str(dataset / "dataset.yaml")]) == 0
    assert capsys.readouterr().out == first
    assert any("damaged" in r.message and "rebuilding" in r.message for r in caplog.records)


# ---------------------------------------------------------------- Ctrl-C outside the training loop

def test_ctrl_c_during_the_graph_build(dataset, tmp_path):
    """The GAF is a pipe: the build blocks reading it, Ctrl-C arrives, then the pipe gets
    its data; the interrupt lands in the build (no timing involved)."""
    gaf = dataset / "go" / "goa_human.gaf"
    content = gaf.read_bytes()
    gaf.unlink()
    os.mkfifo(gaf)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genen_dgl.train", "--data", str(dataset / "dataset.yaml"),
                             "--out", str(out), *TINY], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        with open(gaf, "wb") as fh:  # returns once the build opened the pipe to read it
            proc.send_signal(signal.SIGINT)
            try:
                fh.write(content)
            except BrokenPipeError:
                pass
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    lines = [line for line in err.splitlines() if " INFO " not in line and " WARNING " not in line]
    assert proc.returncode == 130, err
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err
    assert not out.exists()


def test_gzip_helpers_of_this_file_damage_what_they_say(dataset):
    """The damaged .gz really is damaged (else the fault cases above test nothing)."""
    for damage in (truncate_gz, not_gzip):
        path = damage(dataset)
        with pytest.raises((EOFError, OSError)):
            with gzip.open(path, "rb") as fh:
                fh.read()
