"""Delimited text tables read fast with pandas, and errors that name the bad line.

The fast path is one ``pandas.read_csv`` call. When it fails (or leaves holes), the file
is scanned line by line in Python to find the first offending line, so that the error
says exactly where and what was expected; that scan runs only on bad input.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
from pathlib import Path
from typing import Iterator

import pandas as pd

from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

# Column kinds: how a value must parse.
KINDS = {"str": str, "int": int, "float": float}


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def first_line(path: str | Path) -> str:
    """The first non-empty line of a file, or an InputError if there is none."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    raise InputError("file is empty", path)


def _split(line: str, sep: str | None) -> list[str]:
    if sep is None:
        return line.split()
    return next(csv.reader([line], delimiter=sep))


def _parse(value: str, kind: str) -> bool:
    if kind == "str":
        return value != ""
    try:
        x = KINDS[kind](value)
    except ValueError:
        return False
    return not (isinstance(x, float) and math.isnan(x))


def _numbered_lines(path: Path, comment: str | None) -> Iterator[tuple[int, str]]:
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or (comment and line.startswith(comment)):
                continue
            yield number, line


def locate_bad_line(
    path: Path, sep: str | None, header: list[str] | None, kinds: dict[int, str],
    n_fields: int | None, comment: str | None = None,
) -> InputError:
    """Scan ``path`` and describe its first line that does not fit. ``header`` is the
    expected header (None: the file has none); ``kinds`` maps field index to kind."""
    lines = _numbered_lines(path, comment)
    if header is not None:
        next(lines, None)
    names = header or [f"field {i + 1}" for i in range(n_fields or 0)]
    for number, line in lines:
        fields = _split(line, sep)
        if n_fields is not None and len(fields) != n_fields:
            return InputError(f"expected {n_fields} fields, found {len(fields)}", path, number)
        for i, kind in kinds.items():
            if i < len(fields) and not _parse(fields[i], kind):
                name = names[i] if i < len(names) else f"field {i + 1}"
                return InputError(f"{name}: expected {kind} value, found {fields[i]!r}", path, number)
    return InputError("could not parse the file", path)


def read_table(
    path: str | Path, columns: dict[str, str], sep: str | None = ",",
    comment: str | None = None, optional: tuple[str, ...] = (), hint: str = "",
) -> pd.DataFrame:
    """Read a table with a header, keeping ``columns`` (name -> kind), found by name;
    text columns come back categorical.

    ``sep=None`` means runs of whitespace (slower than a single-character ``sep``); ``optional`` columns may have empty values
    (kept as NaN); ``hint`` is appended to the missing-column error (say which option
    names the columns). Raises InputError naming the missing column,
    or the first line whose field count or value kind is wrong.
    """
    path = Path(path)
    head = _split(first_line(path).lstrip("#"), sep)
    head = [h.strip() for h in head]
    missing = [c for c in columns if c not in head]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(map(repr, missing))}; header has {', '.join(map(repr, head))}{hint}", path, 1
        )
    dtypes = {c: (object if k == "str" else "float64") for c, k in columns.items()}
    try:
        frame = pd.read_csv(
            path, sep=r"\s+" if sep is None else sep, header=0, names=head, usecols=list(columns),
            dtype=dtypes, comment=comment, skip_blank_lines=True, engine="c", na_filter=True,
            keep_default_na=False, na_values=[""],
        )
        required = [c for c in columns if c not in optional]
        bad = frame[required].isna().any(axis=None)
    except (ValueError, pd.errors.ParserError):
        bad = True
    if bad:
        kinds = {head.index(c): k for c, k in columns.items() if c not in optional}
        raise locate_bad_line(path, sep, head, kinds, len(head), comment)
    for c, k in columns.items():
        if k == "str":  # categorical: factorize is ~2x faster than the parser's category dtype
            codes, uniques = pd.factorize(frame[c])
            frame[c] = pd.Categorical.from_codes(codes, pd.Index(uniques, dtype=object))
        if k == "int":
            if not (frame[c] == frame[c].round()).all():
                raise locate_bad_line(path, sep, head, {head.index(c): "int"}, len(head), comment)
            frame[c] = frame[c].astype("int64")
    if frame.empty:
        raise InputError("file has a header but no rows", path)
    return frame


def collapse_duplicates(frame: pd.DataFrame, key: str, value: str, path: str | Path | list, what: str,
                        conflicts: str = "error") -> pd.DataFrame:
    """Collapse rows that repeat ``(key, value)`` exactly, with one logged line; a key listed
    with different values is an InputError naming it and its rows (``conflicts='error'``),
    or is left in the frame (``conflicts='keep'``) for the caller's own policy.
    ``frame`` may carry a ``_source`` column (file name) and ``_row`` (data row, 1-based)."""
    exact = frame.duplicated([key, value])
    if exact.any():
        log.info("%s: %d exact duplicate row(s) (same %s and %s) collapsed, e.g. %r", _names(path), int(exact.sum()),
                 key, value, str(frame.loc[exact, key].iloc[0]))
        frame = frame[~exact]
    if conflicts == "keep":
        return frame
    dup = frame[key].duplicated(keep=False)
    if dup.any():
        first = str(frame.loc[dup, key].iloc[0])
        rows = frame[frame[key] == first]
        where = ", ".join(_where(r) for _, r in rows.iterrows() if _where(r))
        n = frame.loc[dup, key].nunique()
        raise InputError(f"{what} {first!r} appears with different {value} values{f' ({where})' if where else ''}; "
                         f"{n} {what}(s) do; expected one {value} per {what}", _names(path))
    return frame


def _names(path) -> str:
    if isinstance(path, (list, tuple)):  # several files: their folder once, then the names
        folders = {str(Path(p).parent) for p in path}
        names = ", ".join(Path(p).name for p in path)
        return f"{folders.pop()}/{{{names}}}" if len(folders) == 1 else ", ".join(str(p) for p in path)
    return str(path)


def _where(row) -> str:
    parts = [str(row[c]) for c in ("_source",) if c in row]
    if "_row" in row:
        parts.append(f"row {row['_row']}")
    return " ".join(parts)
