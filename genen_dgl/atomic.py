"""Write files so that a reader sees either the old file or the complete new one, and
output folders so that nothing genen-dgl did not write is ever replaced or emptied.

Every output folder a command creates carries a marker file, ``.genen-dgl``, holding the
name of what wrote it (``genen_dgl.data.sample``, ``genen_dgl.partition``, ``run``, ...).
An existing folder is written into or replaced only when it is empty or carries the
marker of the same writer; the current folder and the folders above it (and above the
genen-dgl checkout) are never replaced or emptied.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from genen_dgl.errors import InputError

MARKER = ".genen-dgl"
CHECKOUT = Path(__file__).resolve().parents[1]

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success rename it onto ``path``,
    on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def marker(path: Path) -> str | None:
    """Who wrote the output folder ``path`` (its marker), or None."""
    try:
        return (Path(path) / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def check_out(path: str | Path, owner: str, replace: bool) -> None:
    """Refuse (InputError) an output folder that ``owner`` may not write into, or with
    ``replace`` replace: checked before the work starts, and again before replacing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is a file, not a folder; choose another --out", path)
    if not path.is_dir():
        return
    if replace:
        full = path.resolve()
        here = Path.cwd().resolve()
        if full in (here, CHECKOUT) or full in here.parents or full in CHECKOUT.parents:
            raise InputError("is the current folder, the genen-dgl checkout or a folder above one: never "
                             "replaced; choose a new folder for --out", path)
    found = marker(path)
    if found != owner and any(path.iterdir()):
        who = f"it holds the output of {found}" if found else f"it holds files genen-dgl did not write (no {MARKER})"
        raise InputError(f"--out exists and {who}; left untouched: choose a new folder, or empty it yourself",
                         path)


def claim_dir(path: str | Path, owner: str) -> Path:
    """Create the output folder ``path`` for ``owner`` to write into (or take an existing
    one that is empty or ``owner``'s) and mark it; else an InputError naming it."""
    path = Path(path)
    check_out(path, owner, replace=False)
    path.mkdir(parents=True, exist_ok=True)
    if marker(path) != owner:
        (path / MARKER).write_text(owner + "\n")
    return path


def remove_dir(path: str | Path, owner: str) -> None:
    """Delete ``owner``'s output folder ``path``: refused (InputError) unless it carries
    ``owner``'s marker (or is empty) and is not the current folder or one above it."""
    path = Path(path)
    check_out(path, owner, replace=True)
    if path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, owner: str) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it becomes ``path``,
    marked as ``owner``'s, replacing a previous output of ``owner`` (the old folder is
    renamed aside first, then deleted); on error it is deleted. An existing ``path`` that
    is not ``owner``'s is refused before anything is written."""
    path = Path(path)
    check_out(path, owner, replace=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(owner + "\n")
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it private
        check_out(path, owner, replace=True)  # again: it may have changed while we worked
        if path.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            if old.is_symlink():  # the link goes, the folder it pointed to stays
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
