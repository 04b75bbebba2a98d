"""Node feature files: CSV ``id,v1..vN`` (the original Genen files) or ``.npy`` + ids."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genen_dgl.data.tables import first_line, locate_bad_line
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)


def read_ids(path: str | Path) -> list[str]:
    """One id per line (blank lines ignored)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise InputError("file is empty; expected one id per line", path)
    return ids


def read_features(path: str | Path, ids: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Read node features as ``(ids, float32 matrix)``.

    ``.npy`` needs ``ids`` (a text file, one id per line, in row order); a CSV has the
    id in its first column and one value per remaining column.
    """
    path = Path(path)
    if path.suffix == ".npy":
        if ids is None:
            raise InputError("a .npy feature file needs an ids file (features.*.ids)", path)
        names = read_ids(ids)
        if not path.exists():
            raise InputError("file not found", path)
        try:
            matrix = np.load(path, mmap_mode="r")
        except ValueError as err:
            raise InputError(f"not a NumPy array file ({err})", path) from None
        if matrix.ndim != 2 or matrix.shape[0] != len(names):
            raise InputError(f"expected a 2-d array with {len(names)} rows (one per id in {ids}), found shape {matrix.shape}", path)
        matrix = np.array(matrix, dtype=np.float32)  # a writable copy of the memory map
        line_of = lambda row: None  # noqa: E731
    else:
        header = first_line(path).split(",")
        if len(header) < 2:
            raise InputError("expected a header 'id,v1,...,vN' with at least one value column", path, 1)
        try:
            frame = pd.read_csv(path, dtype={header[0]: str}, engine="c")
            matrix = frame.iloc[:, 1:].to_numpy(dtype=np.float32)
        except (ValueError, pd.errors.ParserError):
            raise locate_bad_line(path, ",", header, {i: "float" for i in range(1, len(header))}, len(header)) from None
        if frame.empty:
            raise InputError("file has a header but no rows", path)
        names = frame.iloc[:, 0].astype(str).tolist()
        line_of = lambda row: row + 2  # noqa: E731
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"features of {names[row]!r} are not all finite numbers (NaN, inf or missing)", path, line_of(row))
    seen = pd.Index(names)
    if seen.has_duplicates:
        dup = seen[seen.duplicated()][0]
        raise InputError(f"id {dup!r} appears more than once", path)
    log.info("%s: %d x %d features", path.name, *matrix.shape)
    return names, matrix


def check_width(path: str | Path, matrix: np.ndarray, width: int) -> None:
    if matrix.shape[1] != width:
        raise InputError(f"expected {width} feature columns (as the other feature file), found {matrix.shape[1]}", path)
