"""Cross-validation over any backend, and the run it writes.

A :class:`Backend` is where a run's graph lives: :class:`~genen_dgl.local.LocalBackend`
(one machine) or :class:`~genen_dgl.distributed.backend.DistBackend` (a DistGraph). Both
command lines (``python -m genen_dgl.train``, ``python -m genen_dgl.distributed.train``)
and the experiments call :func:`run_cross_validation`: every split trained (finished ones
reloaded, interrupted ones resumed), the refit, then on the writing process the baselines
on the same folds, Correct & Smooth where asked, the GNN's ensemble with the baselines
(:mod:`genen_dgl.ensemble`), and the run's outputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from genen_dgl import correct_smooth, ensemble
from genen_dgl.baselines import baselines_for, not_run
from genen_dgl.config import TrainConfig
from genen_dgl.data.labels import Labels
from genen_dgl.outputs import run_meta, write_outputs
from genen_dgl.splits import Split, refit_split
from genen_dgl.training.fold import CrossValidation, FoldTrainer
from genen_dgl.training.sources import Predictor, StepSource

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What the run's outputs read besides the folds (asked of the writing process only)."""

    full_graph: object  # the dataset's whole graph, every relation (the baselines read it)
    gene_ids: list[str]  # by gene node id
    gene_info: pd.DataFrame  # per gene node: GO annotation count, text source
    meta: dict = field(default_factory=dict)  # metrics.json entries: confounds, warnings, the distributed layout
    smoothing: correct_smooth.Operator | None = None  # Correct & Smooth's operator, where the config asks for it


class Backend(Protocol):
    """What a run trains on, wherever the graph lives."""

    config: TrainConfig
    labels: Labels
    nodes: np.ndarray  # gene node id of each labelled gene
    splits: list[Split]
    num_genes: int
    writes: bool  # whether this process writes the run directory (one per run)
    device: torch.device

    def model(self, split: Split) -> torch.nn.Module:
        """A new model for ``split`` (its initial weights follow the torch seed)."""

    def steps(self, split: Split) -> StepSource:
        """Training steps over the split's training genes."""

    def predictor(self, split: Split) -> Predictor:
        """Outputs and embeddings of any genes, with the split's inputs."""

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the run's processes (itself on one machine)."""

    def context(self) -> RunContext | None:
        """What the outputs read besides the folds: called on every process once the splits
        are trained; the writing process's is used."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: where it stopped (the checkpoints on disk are whole)."""

    def __init__(self, split: str, epoch: int):
        super().__init__(f"interrupted after {split} epoch {epoch}")
        self.split, self.epoch = split, epoch


def train_split(trainer: FoldTrainer, resume: bool) -> dict:
    """A split's result: reloaded where it finished, else trained (resumed where it stopped)."""
    if resume and trainer.checkpoints.finished():
        log.info("%s: already finished", trainer.split.name)
        return trainer.load_best()
    if resume:
        trainer.resume()
    return trainer.fit()


def cross_validate(backend: Backend, run_dir: Path, resume: bool = False) -> CrossValidation:
    """Every split, then with ``config.refit`` one model on all labelled genes for the
    median best epoch count."""
    results, outputs, histories, written = [], [], [], []
    genes = np.arange(backend.num_genes)
    trainer = None
    try:
        for split in backend.splits:
            trainer = FoldTrainer.of(backend, split, run_dir)
            results.append(train_split(trainer, resume))
            histories.append(trainer.history)
            outputs.append(trainer.predictor.predict(trainer.model, genes))
            trainer.checkpoints.prune()
            written.append(trainer.checkpoints)
        refit = None
        if backend.config.refit:
            epochs = int(median(r["best_epoch"] for r in results)) + 1
            split = refit_split(backend.config, len(backend.nodes), len(backend.splits))
            trainer = FoldTrainer.of(backend, split, run_dir, epochs=epochs)
            train_split(trainer, resume)
            refit = (epochs, trainer.predictor.predict(trainer.model, genes)[1])
            trainer.checkpoints.prune()
            written.append(trainer.checkpoints)
    except KeyboardInterrupt:
        raise Interrupted(trainer.split.name if trainer else "start", trainer.epoch if trainer else 0) from None
    return CrossValidation(results, outputs, refit, histories, written)


def run_cross_validation(backend: Backend, run_dir: Path, resume: bool = False,
                         started: float | None = None) -> dict | None:
    """Train every split of ``backend`` in ``run_dir`` and, on the writing process, write the
    run (metrics.json, scores, predictions, plots); returns its report (None elsewhere).
    ``started``: when the run began (``time.perf_counter()``), for the wall time it reports."""
    started = time.perf_counter() if started is None else started
    run_dir = Path(run_dir)
    cv = cross_validate(backend, run_dir, resume)
    seconds = time.perf_counter() - started
    ctx = backend.context()
    if not backend.writes:
        return None
    c = backend.config
    meta = run_meta(c, seconds, backend.device, **ctx.meta, baselines_not_run=not_run(ctx.full_graph))
    baselines = baselines_for(ctx.full_graph, c, backend.labels, backend.nodes, backend.splits)
    smoothed = None
    if ctx.smoothing is not None:
        alpha = (c.cs_alpha1, c.cs_alpha2)
        smoothed = {"graph": c.correct_smooth, "alpha": list(alpha), **correct_smooth.apply_per_fold(
            ctx.smoothing, [out for out, _ in cv.outputs], backend.splits, backend.nodes, backend.labels.values,
            backend.labels.kind, alpha)}
    labels = backend.labels
    ensembled = ensemble.apply_per_fold([out for out, _ in cv.outputs], baselines.per_split, backend.splits,
                                        backend.nodes, labels.values, labels.kind, labels.classes)
    report = write_outputs(run_dir, meta, labels, backend.nodes, ctx.gene_ids, backend.splits, cv, baselines,
                           ctx.gene_info, smoothed, ensembled)
    for checkpoints in cv.checkpoints:  # keep_checkpoints none: best.pt goes once the run is written
        checkpoints.drop_best()
    return report
