"""The run directory: where a run's files go, and the one policy for creating, refusing,
resuming, reusing and replacing it (``python -m genen_dgl.train``, the experiments and
distributed runs all go through here), the log file, and the line a finished run prints."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import yaml

from genen_dgl.atomic import atomic_path, check_out, claim_dir, remove_dir
from genen_dgl.config import RUNTIME, TrainConfig, checked_options
from genen_dgl.data.graph import spec_key
from genen_dgl.data.spec import DatasetSpec, load_spec, run_spec
from genen_dgl.errors import InputError
from genen_dgl.provenance import environment

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
INPUTS = "inputs.json"
METRICS = "metrics.json"
LOG = "train.log"
OWNER = "genen_dgl.run"  # the marker of a run folder (genen_dgl.atomic), from train or the experiments


def fingerprint(spec: DatasetSpec) -> str:
    """What a run's numbers depend on besides its options: the spec, and the size and
    modification time of every input file (graph sources, features, task labels)."""
    h = hashlib.sha256(spec_key(spec).encode())
    if spec.added:  # a --labels task
        h.update(json.dumps(spec.added).encode())
    for task in spec.tasks.values():
        st = task.file.stat()
        h.update(f"{task.file.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def default_run_dir(config: TrainConfig, dataset: str, task: str) -> Path:
    """``runs/DATASET-GRAPH-MODEL-TASK-SAMPLER``: two runs that differ in any of these never share a folder."""
    return Path("runs") / f"{dataset}-{config.graph}-{config.model}-{task}-{config.sampler}"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    def has_results(self) -> bool:
        """Whether a run has trained here (a checkpoint folder or its metrics)."""
        return (self.path / METRICS).exists() or any(p.is_dir() for p in self.path.glob("*fold*"))

    def start(self, config: TrainConfig, spec: DatasetSpec, device=None) -> None:
        """A new run: refuse a folder that holds one, else create it and record ``config``
        and the dataset's fingerprint."""
        self.check_new()
        claim_dir(self.path, OWNER)
        self.record(config, spec, device)

    def check_new(self) -> None:
        """Refuse (InputError) a folder where a new run may not start: one holding a run, a
        file, a folder with files of something else."""
        if self.path.is_dir() and self.has_results():
            raise InputError("run directory already has results; pass --resume or choose another --out", self.path)
        check_out(self.path, OWNER, replace=False)

    def record(self, config: TrainConfig, spec: DatasetSpec, device=None) -> None:
        """config.yaml (the options as given: ``device: auto`` stays auto, so a resumed run
        may pick another) and inputs.json: the dataset, its fingerprint and the environment
        (version, commit, the device ``auto`` resolved to, library versions)."""
        with atomic_path(self.config_file) as tmp:
            tmp.write_text(config.to_yaml())
        with atomic_path(self.path / INPUTS) as tmp:
            tmp.write_text(json.dumps({"dataset": str(spec.path.resolve()), "fingerprint": fingerprint(spec),
                                       "environment": environment(device)}, indent=1))

    def resume(self, requested: dict[str, Any]) -> TrainConfig:
        """The stored configuration of the run to continue, after checking that the options
        given now (``requested``; runtime ones such as ``device`` may change) and the
        dataset's inputs are the ones it started with: else a one-line diff."""
        if not self.config_file.exists():
            raise InputError(f"nothing to resume: no {CONFIG}", self.path)
        stored = self.stored()
        asked = dataclasses.replace(stored, **{k: v for k, v in requested.items() if k != "out"}).resolved()
        if "data" in requested:
            asked.data = str(load_spec(requested["data"]).path.resolve())
        diff = [f"{k}: {getattr(stored, k)!r} -> {getattr(asked, k)!r}" for k in requested
                if k not in RUNTIME and getattr(asked, k) != getattr(stored, k)]
        if diff:
            raise InputError(f"--resume: the run was started with other options ({'; '.join(diff)}); "
                             "drop them or choose another --out", self.path)
        inputs = self.inputs() or {}
        now = fingerprint(run_spec(stored.data, stored))
        if inputs.get("fingerprint") not in (None, now):
            raise InputError(f"--resume: the dataset's input files changed since the run started (fingerprint "
                             f"{inputs['fingerprint']} -> {now}); start a new run", self.path)
        return dataclasses.replace(stored, **{k: v for k, v in requested.items() if k in RUNTIME and k != "out"})

    def reuse(self, config: TrainConfig, spec: DatasetSpec) -> bool:
        """The experiments' policy: a run of the same ``config`` and dataset inputs is
        resumed (True), a run of another is replaced, a folder that is no run is refused;
        returns whether to resume. A run recorded before input fingerprints existed is
        taken as of the current inputs (and its fingerprint recorded)."""
        if self.config_file.exists() and _same(self.stored(), config):
            inputs = self.inputs()
            if inputs is None:
                log.info("run %s has no input fingerprint (an older run): taking it as of the current inputs",
                         self.path)
                self.record(config, spec)
                return True
            if inputs.get("fingerprint") == fingerprint(spec):
                return True
        if self.path.exists():
            if not self.config_file.exists():
                raise InputError(f"not a run folder (no {CONFIG}); remove it or choose another --out", self.path)
            log.info("options or inputs changed: replacing run %s", self.path)
            remove_dir(self.path, OWNER)  # only a folder that carries the run marker
        claim_dir(self.path, OWNER)
        self.record(config, spec)
        return False

    def stored(self) -> TrainConfig:
        """The run's ``config.yaml`` (a damaged one: an InputError naming it)."""
        try:
            return TrainConfig(**checked_options(yaml.safe_load(self.config_file.read_text(encoding="utf-8")) or {},
                                                 self.config_file))
        except (yaml.YAMLError, TypeError, UnicodeDecodeError, InputError) as err:
            why = err.message if isinstance(err, InputError) else type(err).__name__
            raise InputError(f"damaged run configuration ({why}); the run cannot be resumed: "
                             "delete its folder and start again", self.config_file) from None

    def inputs(self) -> dict | None:
        """The run's ``inputs.json`` (the dataset's fingerprint), None if absent."""
        path = self.path / INPUTS
        if not path.exists():
            return None
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            found = None
        if not isinstance(found, dict):
            raise InputError("damaged input fingerprint; delete it to take the run as of the current inputs", path)
        return found

    def finished(self) -> bool:
        return (self.path / METRICS).exists()

    @contextlib.contextmanager
    def logging(self, earlier: list[logging.LogRecord] = ()) -> Iterator[None]:
        """The package's log records also go to ``train.log`` while the block runs, after
        ``earlier`` ones (:func:`collect_log`: those of the data preparation, logged before
        the run directory existed)."""
        handler = logging.FileHandler(self.path / LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for record in earlier:
            handler.handle(record)
        package = logging.getLogger("genen_dgl")
        package.addHandler(handler)
        try:
            yield
        finally:
            package.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def collect_log() -> Iterator[list[logging.LogRecord]]:
    """The package's log records of the block, kept for ``train.log`` (:meth:`RunDir.logging`)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    package = logging.getLogger("genen_dgl")
    package.addHandler(handler)
    try:
        yield records
    finally:
        package.removeHandler(handler)


def _same(a: TrainConfig, b: TrainConfig) -> bool:
    """The same run options (the dataset path compared as a resolved path)."""
    def norm(c: TrainConfig) -> TrainConfig:
        return dataclasses.replace(c, data=str(Path(c.data).resolve()) if c.data else None)
    return norm(a) == norm(b)
