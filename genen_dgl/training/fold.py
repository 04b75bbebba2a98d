"""One split's training, as one loop a reader can follow.

:class:`FoldTrainer` trains one :class:`~genen_dgl.splits.Split` from what a
:class:`~genen_dgl.training.cross_validation.Backend` gives it: a fresh model, a step
source and a predictor. Each epoch::

    for step in source.epoch(seed):
        loss = step_fn(step)          # forward, loss, backward, Adam (training.optimise)

then the validation genes are scored, the stopping rule (injected: early stopping on the
validation loss, or fixed epochs for the refit) keeps the best weights, and the
checkpoints (injected) are written, so an interrupted split resumes. The best epoch's
model is then scored on the test genes.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from genen_dgl.evaluation import headline_metric, score_outputs
from genen_dgl.splits import Split
from genen_dgl.training.checkpoints import Checkpoints
from genen_dgl.training.optimise import OptimiserStep
from genen_dgl.training.runtime import seed_everything
from genen_dgl.training.stopping import EarlyStopping, FixedEpochs

log = logging.getLogger(__name__)


class FoldTrainer:
    """Trains ``split`` of ``backend``; ``checkpoints`` keeps its files, ``stopping`` says
    when it is done (:meth:`of` builds both from the backend's config)."""

    def __init__(self, backend, split: Split, checkpoints: Checkpoints, stopping: EarlyStopping):
        self.backend, self.split, self.checkpoints, self.stopping = backend, split, checkpoints, stopping
        c = backend.config
        seed_everything(split.seed, split.k, 1 << 20)  # the initial weights depend on seed and fold only
        self.model = backend.model(split)
        self.optimiser = OptimiserStep(self.model, backend.labels.kind, c.lr, c.weight_decay, c.precision,
                                       capturable=c.cuda_graph)
        self.source = backend.steps(split)
        self.step_fn = self.source.wrap(self.optimiser)  # the optimiser step, or it replayed as CUDA graphs
        self.predictor = backend.predictor(split)
        self.epoch, self.history = 0, []
        self.stopping.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @classmethod
    def of(cls, backend, split: Split, run_dir: Path, epochs: int | None = None) -> "FoldTrainer":
        """The trainer of ``split`` in ``run_dir/<split name>``: early stopping on the
        validation loss, or with ``epochs`` exactly that many epochs (the refit)."""
        c = backend.config
        stopping = FixedEpochs(epochs) if epochs is not None else EarlyStopping(c.epochs, c.patience)
        return cls(backend, split, Checkpoints(Path(run_dir) / split.name, backend.writes, c.keep_checkpoints),
                   stopping)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train_epoch(self) -> float:
        """One epoch; the mean training loss over every step of every process."""
        seed = seed_everything(self.split.seed, self.split.k, self.epoch)
        self.model.train()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, steps: no host sync per step
        for step in tqdm(self.source.epoch(seed), total=len(self.source), leave=False,
                         desc=f"{self.split.name} epoch {self.epoch}", disable=None):
            loss = self.step_fn(step)
            total += torch.stack([loss.to(torch.float64), total.new_ones(())])
        total = self.backend.reduce(total.cpu())
        return float(total[0] / total[1])

    def score(self, positions: np.ndarray) -> dict | None:
        """Metrics and loss on the labelled genes at ``positions`` (None: no genes)."""
        if not len(positions):
            return None
        labels = self.backend.labels
        out, _ = self.predictor.predict(self.model, self.backend.nodes[positions])
        return score_outputs(labels.kind, labels.values[positions], out, labels.classes)

    def fit(self) -> dict:
        """Epochs until the stopping rule ends them, each followed by validation and a
        checkpoint; then the kept weights, scored on the test genes (where the split has some)."""
        bar = tqdm(total=self.stopping.epochs, initial=self.epoch, desc=self.split.name, disable=None)
        tty, said = sys.stderr.isatty(), time.monotonic()  # without a terminal, log lines show progress
        while not self.stopping.done(self.epoch):
            loss = self.train_epoch()
            val = self.score(self.split.fold.val)
            if self.stopping.update(self.epoch, val and val["loss"], self.model):
                self.checkpoints.save_best(self.stopping.best_state)
            row = {"epoch": self.epoch, "loss": loss}
            if val is not None:  # the history is the validated epochs' (none for the refit)
                row.update({"val_loss": val["loss"], **{f"val_{k}": v for k, v in val.items()
                                                        if k not in ("loss", "undefined")}})
                self.history.append(row)
                if not tty and (self.epoch % 10 == 0 or time.monotonic() - said >= 30):
                    log.info("%s epoch %d/%d: %s", self.split.name, self.epoch, self.stopping.epochs,
                             self._progress(row))
                    said = time.monotonic()
            self.epoch += 1
            self.checkpoints.save({"epoch": self.epoch, "model": self.model.state_dict(),
                                   **self.optimiser.state_dict(), **self.stopping.state_dict(),
                                   "history": self.history}, self.history)
            bar.update(1)
            bar.set_postfix_str(self._progress(row))
        if self.stopping.finish(self.model):
            self.checkpoints.save_best(self.stopping.best_state)
        bar.close()
        self.source.close()
        self.model.load_state_dict(self.stopping.best_state)
        result = {"epochs_run": self.epoch}
        test = self.score(self.split.fold.test)
        if test is not None:
            test.pop("loss")
            result = {"seed": self.split.seed, "fold": self.split.k, "best_epoch": self.stopping.best_epoch,
                      "epochs_run": self.epoch, "val_loss": self.stopping.best_loss, **test}
            log.info("%s: best epoch %d, test %s", self.split.name, self.stopping.best_epoch,
                     ", ".join(f"{k}={v:.3f}" for k, v in test.items() if isinstance(v, float)))
        self.checkpoints.save_result(result)
        return result

    def _progress(self, row: dict) -> str:
        metric = "val_" + headline_metric(self.backend.labels.kind)
        shown = (("loss", ".4f"), ("val_loss", ".4f"), (metric, ".3f"))
        return ", ".join(f"{k} {row[k]:{fmt}}" for k, fmt in shown if k in row)

    def resume(self) -> bool:
        """Continue from the split's ``last.pt`` where there is one."""
        state = self.checkpoints.last(self.device)
        if state is None:
            return False
        with self.checkpoints.damaged(self.checkpoints.dir / "last.pt"):
            self.model.load_state_dict(state["model"])
            self.optimiser.load_state_dict(state, capturable=self.backend.config.cuda_graph)
            self.stopping.load_state_dict(state)
            self.epoch, self.history = state["epoch"], state["history"]
        log.info("%s: resumed after epoch %d", self.split.name, self.epoch)
        return True

    def load_best(self) -> dict:
        """A finished split: its best model and history; its result."""
        weights, self.history, result = self.checkpoints.best(self.device)
        with self.checkpoints.damaged(self.checkpoints.dir / "best.pt"):
            self.model.load_state_dict(weights)
        return result


@dataclass
class CrossValidation:
    """What training every split gives :func:`genen_dgl.outputs.write_outputs`."""

    results: list[dict]  # per split: seed, fold, best epoch, test metrics
    outputs: list[tuple[np.ndarray, np.ndarray]]  # per split: outputs and embeddings of every gene
    refit: tuple[int, np.ndarray] | None  # epochs and embeddings of every gene of the refit model
    histories: list[list[dict]]  # per split: epoch, train loss, validation loss and metrics
    checkpoints: list = field(default_factory=list)  # per split and the refit: their files (pruned once written)
