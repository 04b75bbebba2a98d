"""Every command in README.md, BENCHMARKS.md and docs/*.md parses as written, and the cheap
ones run as written on the sample.

Commands are taken from the fenced ``bash`` / ``sh`` blocks: each ``python -m genen_dgl...`` or
``python benchmarks/...`` command (``&&`` chains split, ``\\`` continuations joined,
``VAR="..."`` lines of the block expanded). Each is run through its own ``main`` with
argparse stopped right after a successful parse: an unknown flag, a bad value or a
removed module fails here.
"""

from __future__ import annotations

import argparse
import importlib
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:^|&&|\s)(?:\S*/)?python3?\s+(-m\s+genen_dgl[\w.]*|benchmarks/\w+\.py)(.*?)(?=&&|$)")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file:line, module or script, argv) of every documented command."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.finditer(r"```(?:bash|sh)\n(.*?)```", text, re.S):
            first_line = text[: block.start()].count("\n") + 2
            lines = block.group(1).replace("\\\n", " ").split("\n")
            variables = {}
            for offset, line in enumerate(lines):
                line = re.sub(r"\s+#.*$", "", line).strip()
                if m := re.fullmatch(r'([A-Z_]+)="([^"]*)"', line):
                    variables[m.group(1)] = m.group(2)
                    continue
                for var, value in variables.items():
                    line = line.replace(f"${var}", value)
                for m in COMMAND.finditer(line):
                    target = m.group(1).split()[-1]
                    out.append((f"{doc.name}:{first_line + offset}", target, shlex.split(m.group(2))))
    return out


COMMANDS = documented_commands()


class Parsed(Exception):
    """Raised by the patched parse_args once the command line parsed cleanly."""


@pytest.fixture
def parse_only(monkeypatch):
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real(self, args, namespace)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)


def test_the_docs_have_commands():
    targets = {t for _, t, _ in COMMANDS}
    assert len(COMMANDS) > 20
    assert {"genen_dgl.train", "genen_dgl.experiments", "genen_dgl.partition", "genen_dgl.distributed.launch",
            "genen_dgl.encode", "genen_dgl.data.build", "benchmarks/throughput.py"} <= targets


@pytest.mark.parametrize("where, target, argv", COMMANDS, ids=[f"{w} {t}" for w, t, _ in COMMANDS])
def test_documented_command_parses(where, target, argv, parse_only, monkeypatch):
    if target.startswith("genen_dgl"):
        module = importlib.import_module(target if target != "genen_dgl.experiments" else "genen_dgl.experiments.__main__")
        run = lambda: module.main(argv)  # noqa: E731
    else:
        monkeypatch.setattr(sys, "argv", [target, *argv])
        run = lambda: runpy.run_path(str(ROOT / target), run_name="__main__")  # noqa: E731
    with pytest.raises(Parsed):
        run()


@pytest.mark.slow
def test_readme_training_command_runs_as_written(tmp_path):
    """The README's first command, as a new user runs it (a fresh HOME: the sample is generated)."""
    readme = (ROOT / "README.md").read_text()
    command = next(c for w, t, c in COMMANDS if w.startswith("README") and t == "genen_dgl.train")
    assert f"python -m genen_dgl.train {' '.join(command)}" in readme
    proc = subprocess.run([sys.executable, "-m", "genen_dgl.train", *command], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"membrane \(binary\), go_ppi/gcn, 5-fold: auc 0\.\d+ ± 0\.\d+, ranked with the baselines "
                     r"0\.\d+ ± 0\.\d+ \(text LR", proc.stdout)
    assert (tmp_path / "runs" / "sample-go_ppi-gcn-membrane-neighbor" / "metrics.json").exists()


def test_readme_test_command_installs_what_ci_installs():
    """The README's test command installs every package .ci/run puts into its test environment."""
    ci = (ROOT / ".ci/run").read_text()
    installs = [" ".join(line.split()[3:]) for line in ci.splitlines() if line.startswith(".venv/bin/pip install -q")]
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.endswith("python -m pytest -q"))
    assert installs and all(f"pip install {args}" in command for args in installs), installs
