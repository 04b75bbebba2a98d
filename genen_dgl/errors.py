"""User-facing errors: one line naming the file, line or value, and what was expected."""

from __future__ import annotations

import functools
import gzip
import logging
import os
import sys
import zlib
from pathlib import Path
from types import TracebackType
from typing import Callable

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT)


class InputError(Exception):
    """Bad input. ``str()`` is ``FILE:LINE: message`` (line and file when known)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


def _file_in_traceback(tb: TracebackType | None) -> Path | None:
    """The file being read where an error without a file name was raised: the innermost
    frame's local ``path`` (or ``file``) that names an existing file (every reader here
    keeps the file it reads in one)."""
    found = None
    while tb is not None:
        for name in ("path", "file"):
            value = tb.tb_frame.f_locals.get(name)
            if isinstance(value, (str, Path)) and value and os.path.isfile(value):
                found = Path(value)
                break
        tb = tb.tb_next
    return found


def _os_fault(err: OSError) -> InputError:
    """One line for a file-system fault, naming the file (or folder) and what is wrong."""
    path = Path(err.filename) if err.filename else None
    if isinstance(err, FileNotFoundError):
        return InputError("file not found", path)
    if isinstance(err, IsADirectoryError):
        return InputError("is a folder; expected a file", path)
    if isinstance(err, NotADirectoryError):
        return InputError("a file where a folder is expected (in this path)", path)
    if isinstance(err, FileExistsError):
        return InputError("exists and is in the way (a file where a folder is expected?)", path)
    if isinstance(err, PermissionError) or err.errno == 30:  # EROFS: read-only file system
        if path is not None and not path.exists():
            path = next((p for p in path.parents if p.exists()), path)  # the folder it would be written in
            return InputError("not writable (permission denied); choose another folder or fix its permissions", path)
        if path is not None and path.is_dir():
            return InputError("folder not writable or not readable (permission denied); fix its permissions", path)
        return InputError("not readable or not writable (permission denied); fix its permissions", path)
    return InputError(f"{err.strerror or err}", path)


def cli(main: Callable[[list[str] | None], int | None]):
    """Wrap a CLI ``main(argv)``: an InputError, or a file-system or decoding fault, prints
    ``error: ...`` on one line and exits 2; Ctrl-C prints one line and exits 130; ``--debug``
    anywhere in argv re-raises with the traceback instead."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else argv
        debug = "--debug" in args
        logging.basicConfig(
            level=logging.DEBUG if debug else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        logging.getLogger("genen_dgl").setLevel(logging.DEBUG if debug else logging.INFO)
        try:
            return main([a for a in args if a != "--debug"]) or 0
        except KeyboardInterrupt as err:  # trainer.Interrupted says where
            if debug:
                raise
            print(f"{str(err) or 'interrupted'} (Ctrl-C); nothing half-written was left: run the command again "
                  "(a training run: with --resume)", file=sys.stderr)
            return INTERRUPTED
        except (InputError, OSError, UnicodeDecodeError, EOFError, zlib.error) as err:
            if debug:
                raise
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2

    return run


def _one_line(err: BaseException) -> InputError:
    if isinstance(err, InputError):
        return err
    where = _file_in_traceback(err.__traceback__)
    if isinstance(err, UnicodeDecodeError):
        return InputError(f"not UTF-8 text (a byte {err.object[err.start]:#04x}); save it as UTF-8", where)
    if isinstance(err, (gzip.BadGzipFile, EOFError, zlib.error)):
        return InputError(f"not a complete gzip file ({err}); download or compress it again", where)
    if isinstance(err, OSError) and not err.filename:
        return InputError(f"{err.strerror or err}", where)
    return _os_fault(err)
