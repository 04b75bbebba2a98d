"""What a reviewer needs to trust a run's numbers: the package version, the git commit of
the checkout it ran from (when it ran from one), the device the run resolved to and the
versions of the libraries that computed them."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
from pathlib import Path

from genen_dgl import __version__

LIBRARIES = {"torch": "torch", "dgl": "dgl", "numpy": "numpy", "sklearn": "scikit-learn",
             "transformers": "transformers"}


def git_commit() -> str | None:
    """``git describe --always --dirty`` of the checkout holding this package; None when it
    is not a checkout (an installed wheel) or git is missing."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _library(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device=None) -> dict:
    """The run's record: genen-dgl version, commit, resolved device, library versions."""
    return {"genen_dgl": __version__, "git_commit": git_commit(),
            **({"device": str(device)} if device is not None else {}),
            "libraries": {name: _library(dist) for name, dist in LIBRARIES.items()}}


class _Version(argparse.Action):
    """Prints the version (git is asked only when ``--version`` is given) and exits."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version (and the git commit) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        commit = git_commit()
        print(f"genen-dgl {__version__}" + (f" ({commit})" if commit else ""))
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the package version and, from a checkout, its commit."""
    parser.add_argument("--version", action=_Version)
