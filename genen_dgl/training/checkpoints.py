"""A split's files in the run directory (injected into
:class:`~genen_dgl.training.fold.FoldTrainer`): ``last.pt`` to resume, ``best.pt``, the
epoch ``history.json`` and the test ``result.json``. One process writes (``writes``);
every process reads, to resume. Everything is written to a temporary file and renamed,
and read back with ``weights_only``: tensors and plain values, never pickled objects."""

from __future__ import annotations

import contextlib
import json
import pickle
from pathlib import Path
from typing import Iterator

import torch

from genen_dgl.atomic import atomic_path
from genen_dgl.errors import InputError

FORMAT = 1  # last.pt's layout; a file of another is refused (start the split again)
LAST, BEST, HISTORY, RESULT = "last.pt", "best.pt", "history.json", "result.json"


class Checkpoints:
    """The files of the split trained in ``folder``; ``keep`` is ``keep_checkpoints``
    (``last``: all kept; ``best``: ``last.pt`` dropped once the split is done; ``none``:
    ``best.pt`` too, once the run is written)."""

    def __init__(self, folder: Path, writes: bool = True, keep: str = "best"):
        self.dir, self.writes, self.keep = Path(folder), writes, keep
        if writes:
            self.dir.mkdir(parents=True, exist_ok=True)

    def finished(self) -> bool:
        return (self.dir / RESULT).exists()

    def save(self, state: dict, history: list[dict]) -> None:
        """``last.pt`` (enough to resume: tensors, numbers, lists and dicts) and ``history.json``."""
        if self.writes:
            with atomic_path(self.dir / LAST) as tmp:
                torch.save({"format": FORMAT, **state}, tmp)
            self._write_json(HISTORY, history)

    def save_best(self, weights: dict[str, torch.Tensor]) -> None:
        if self.writes:
            with atomic_path(self.dir / BEST) as tmp:
                torch.save(weights, tmp)

    def save_result(self, result: dict) -> None:
        if self.writes:
            self._write_json(RESULT, result, indent=1)

    def last(self, device: torch.device) -> dict | None:
        """``last.pt``'s state, where there is one."""
        path = self.dir / LAST
        if not path.exists():
            return None
        state = self.read(path, device)
        with self.damaged(path):
            if state.get("format") != FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')}, expected {FORMAT}: "
                                 "written by another genen-dgl version")
        return state

    def best(self, device: torch.device) -> tuple[dict, list[dict], dict]:
        """A finished split's best weights, history and result."""
        weights = self.read(self.dir / BEST, device)
        return weights, self._read_json(HISTORY), self._read_json(RESULT)

    def prune(self) -> None:
        """A finished split: drop ``last.pt`` (optimizer state included: the bulk) unless kept."""
        if self.writes and self.keep != "last":
            (self.dir / LAST).unlink(missing_ok=True)

    def drop_best(self) -> None:
        """Once the run is written: drop ``best.pt`` where ``keep`` is ``none``."""
        if self.writes and self.keep == "none":
            (self.dir / BEST).unlink(missing_ok=True)

    def read(self, path: Path, device: torch.device) -> dict:
        """A checkpoint, read with ``weights_only`` (a file holding other objects is refused
        before anything in it runs)."""
        with self.damaged(path):
            state = torch.load(path, map_location=device, weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"a {type(state).__name__}, not a dict")
            return state

    @contextlib.contextmanager
    def damaged(self, path: Path) -> Iterator[None]:
        """A file of this split that cannot be read or used: an InputError naming it, and
        how to recover (the split trains again)."""
        try:
            yield
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # missing or unreadable: the cli wrapper names the file
        except Exception as err:  # torch: RuntimeError, OSError (truncated), UnpicklingError; json: ValueError
            if isinstance(err, pickle.UnpicklingError):
                why = "holds objects other than tensors and plain values (refused; nothing in it was run)"
            else:
                why = f"damaged ({(str(err).splitlines() or [type(err).__name__])[0][:120]})"
            raise InputError(f"{why}; delete the folder {self.dir} and resume the run (that split trains again)",
                             path) from None

    def _write_json(self, name: str, value, indent: int | None = None) -> None:
        with atomic_path(self.dir / name) as tmp:
            tmp.write_text(json.dumps(value, indent=indent))

    def _read_json(self, name: str):
        with self.damaged(self.dir / name):
            return json.loads((self.dir / name).read_text())
