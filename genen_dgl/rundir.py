"""The run directory: where a run's files go, and the one policy for creating, refusing,
resuming, reusing and replacing it (``python -m genen_dgl.train``, the experiments and
distributed runs all go through here), the log file, and the line a finished run prints."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Iterator

import yaml

from genen_dgl.atomic import atomic_path
from genen_dgl.baselines import NAMES
from genen_dgl.config import TrainConfig
from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "train.log"


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

    def start(self, config: TrainConfig) -> None:
        """A new run: refuse a folder that holds one, else create it and record ``config``."""
        if self.has_results():
            raise InputError("run directory already has results; pass --resume or choose another --out", self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.record(config)

    def record(self, config: TrainConfig) -> None:
        with atomic_path(self.config_file) as tmp:
            tmp.write_text(config.to_yaml())

    def stored(self) -> TrainConfig:
        """The configuration of the run to resume."""
        if not self.config_file.exists():
            raise InputError(f"nothing to resume: no {CONFIG}", self.path)
        return TrainConfig(**yaml.safe_load(self.config_file.read_text()))

    def reuse(self, config: TrainConfig) -> bool:
        """The experiments' policy: a run of the same ``config`` is resumed (True), a run of
        another is replaced, a folder that is no run is refused; returns whether to resume."""
        text = config.to_yaml()
        if self.config_file.exists() and self.config_file.read_text() == text:
            return True
        if self.path.exists():
            if not self.config_file.exists():
                raise InputError(f"not a run folder (no {CONFIG}); remove it or choose another --out", self.path)
            log.info("options changed: replacing run %s", self.path)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.record(config)
        return False

    def finished(self) -> bool:
        return (self.path / METRICS).exists()

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """The package's log records also go to ``train.log`` while the block runs."""
        handler = logging.FileHandler(self.path / LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package = logging.getLogger("genen_dgl")
        package.addHandler(handler)
        try:
            yield
        finally:
            package.removeHandler(handler)
            handler.close()


def summary_line(report: dict, what: str, run_dir: Path) -> str:
    """The one line a finished run prints: the headline metric of the GNN and of each baseline."""
    key = report["comparisons"]["metric"]

    def value(summary: dict) -> str:
        return f"{summary[key + '_mean']:.3f} ± {summary[key + '_std']:.3f}"

    bases = ", ".join(f"{NAMES[name]} {value(b['summary'])}" for name, b in report["baselines"].items())
    return (f"{report['task']} ({report['kind']}), {what}: {key} {value(report['summary'])} "
            f"({bases}); outputs in {run_dir}")
