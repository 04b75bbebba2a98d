"""User-facing errors: one line naming the file, line or value, and what was expected."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable


class InputError(Exception):
    """Bad input. ``str()`` is ``FILE:LINE: message`` (line and file when known)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


def cli(main: Callable[[list[str] | None], int | None]):
    """Wrap a CLI ``main(argv)``: an InputError prints ``error: ...`` on one line and exits 2;
    ``--debug`` anywhere in argv re-raises with the traceback instead."""

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
        except (InputError, FileNotFoundError) as err:
            if debug:
                raise
            if isinstance(err, FileNotFoundError):
                err = InputError("file not found", err.filename)
            print(f"error: {err}", file=sys.stderr)
            return 2

    return run
