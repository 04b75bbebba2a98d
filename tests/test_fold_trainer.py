"""The FoldTrainer contract, against a small fake backend (no graph, no DGL): what the loop
calls and in which order, what the injected stopping rule and checkpoints decide, what a
resumed split reproduces, and what a process that does not write leaves on disk."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genen_dgl.config import TrainConfig
from genen_dgl.data.labels import Labels
from genen_dgl.errors import InputError
from genen_dgl.evaluation import Fold
from genen_dgl.splits import Split
from genen_dgl.training.checkpoints import Checkpoints
from genen_dgl.training.cross_validation import cross_validate
from genen_dgl.training.fold import FoldTrainer
from genen_dgl.training.sources import Step, StepSource
from genen_dgl.training.stopping import EarlyStopping, FixedEpochs

GENES, DIM = 40, 4


class Linear(torch.nn.Module):
    """A model with the GNN's call signature that ignores the blocks."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(DIM, 2)

    def forward(self, blocks, inputs, nodes=None, seeds=None, return_hidden=False):
        out = self.lin(inputs["gene"])
        return (out, inputs["gene"]) if return_hidden else out


class Batches(StepSource):
    """Every training gene, in batches of 8, shuffled by the epoch seed; records the seeds."""

    def __init__(self, backend, genes):
        self.backend, self.genes, self.seeds = backend, genes, []

    def __len__(self):
        return -(-len(self.genes) // 8)

    def epoch(self, seed):
        self.seeds.append(seed)
        if self.backend.interrupt_at == len(self.seeds) - 1:
            raise KeyboardInterrupt
        order = np.random.default_rng(seed).permutation(self.genes)
        x, y = self.backend.x, self.backend.y
        for i in range(0, len(order), 8):
            rows = torch.as_tensor(order[i:i + 8])
            yield Step({"gene": x[rows]}, [], y[rows])


class Counted(StepSource):
    """Wraps the step function: counts what the trainer runs through it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __len__(self):
        return len(self.inner)

    def epoch(self, seed):
        return self.inner.epoch(seed)

    def wrap(self, step_fn):
        def counted(step):
            self.calls += 1
            return step_fn(step)
        return counted


class Predictor:
    def predict(self, model, genes):
        model.eval()
        with torch.no_grad():
            out, hidden = model([], {"gene": FakeBackend.x[genes]}, return_hidden=True)
        return torch.softmax(out, 1).numpy(), hidden.numpy()


class FakeBackend:
    """Two linearly separable classes over 40 genes: 24 train, 8 validate, 8 test."""

    x = torch.randn(GENES, DIM, generator=torch.Generator().manual_seed(0))

    def __init__(self, writes=True, interrupt_at=None, wrap=False, **config):
        self.config = TrainConfig(**{"epochs": 12, "patience": 3, "lr": 0.05, **config})
        y = (self.x[:, 0] > 0).long()
        self.labels = Labels(np.array([f"G{i}" for i in range(GENES)]), y.numpy(), "binary", ["no", "yes"])
        self.y = y
        self.nodes = np.arange(GENES)
        self.splits = [Split(0, 0, Fold(np.arange(0, 24), np.arange(24, 32), np.arange(32, 40)), "fold0")]
        self.num_genes, self.writes, self.device = GENES, writes, torch.device("cpu")
        self.interrupt_at, self.wrap, self.sources, self.reduced = interrupt_at, wrap, [], 0

    def model(self, split):
        return Linear()

    def steps(self, split):
        source = Batches(self, self.nodes[split.fold.train])
        source = Counted(source) if self.wrap else source
        self.sources.append(source)
        return source

    def predictor(self, split):
        return Predictor()

    def reduce(self, values):
        self.reduced += 1
        return values


def trainer(backend, tmp_path, stopping=None):
    split = backend.splits[0]
    return FoldTrainer(backend, split, Checkpoints(tmp_path / split.name, backend.writes),
                       stopping or EarlyStopping(backend.config.epochs, backend.config.patience))


def test_each_epoch_runs_every_step_through_the_step_function_and_reduces_once(tmp_path):
    backend = FakeBackend(wrap=True, epochs=3, patience=10)
    t = trainer(backend, tmp_path)
    result = t.fit()
    source = backend.sources[0]
    assert source.calls == 3 * len(source) and backend.reduced == 3 and result["epochs_run"] == 3
    assert len(set(source.inner.seeds)) == 3  # a new seed per epoch
    again = FakeBackend(wrap=True, epochs=3, patience=10)
    trainer(again, tmp_path / "again").fit()
    assert again.sources[0].inner.seeds == source.inner.seeds  # seeds follow (seed, fold, epoch) only
    assert [h["epoch"] for h in t.history] == [0, 1, 2] and all("val_loss" in h for h in t.history)


class Scripted(EarlyStopping):
    """Early stopping fed a scripted validation loss instead of the measured one."""

    def __init__(self, losses, patience):
        super().__init__(len(losses), patience)
        self.losses = losses

    def update(self, epoch, val_loss, model):
        return super().update(epoch, self.losses[epoch], model)


def test_early_stopping_is_the_injected_rule_and_the_best_weights_are_scored(tmp_path):
    backend = FakeBackend()
    t = trainer(backend, tmp_path, Scripted([0.9, 0.5, 0.4, 0.6, 0.7, 0.8, 0.1, 0.1], patience=3))
    best, real = {}, t.stopping.update

    def keep(epoch, val_loss, model):  # the weights after the best epoch, as the rule saw them
        improved = real(epoch, val_loss, model)
        if improved:
            best.update({k: v.clone() for k, v in model.state_dict().items()})
        return improved
    t.stopping.update = keep
    result = t.fit()
    assert result["best_epoch"] == 2 and result["epochs_run"] == 6  # three epochs without improvement
    for k, v in t.model.state_dict().items():
        torch.testing.assert_close(v, best[k])
    assert torch.load(tmp_path / "fold0" / "best.pt", weights_only=True).keys() == best.keys()


def test_fixed_epochs_train_without_validation(tmp_path):
    backend = FakeBackend()
    split = dataclasses.replace(backend.splits[0], fold=Fold(np.arange(GENES), np.arange(0), np.arange(0)))
    backend.splits = [split]
    t = trainer(backend, tmp_path, FixedEpochs(4))
    assert t.fit() == {"epochs_run": 4}
    assert t.stopping.best_epoch == 3 and t.history == []  # no validation, no history rows
    best = torch.load(tmp_path / "fold0" / "best.pt", weights_only=True)
    for k, v in t.model.state_dict().items():
        torch.testing.assert_close(best[k], v)  # the last epoch's weights
    none = trainer(backend, tmp_path / "none", FixedEpochs(0))  # every fold stopped before its first epoch
    assert none.fit() == {"epochs_run": 0} and (tmp_path / "none" / "fold0" / "best.pt").exists()


def test_an_interrupted_split_resumes_to_the_same_result(tmp_path):
    whole = trainer(FakeBackend(), tmp_path / "whole").fit()
    cut = FakeBackend(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        trainer(cut, tmp_path / "cut").fit()
    resumed = trainer(FakeBackend(), tmp_path / "cut")
    assert resumed.resume() and resumed.epoch == 4
    assert resumed.fit() == whole
    (tmp_path / "cut" / "fold0" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="last.pt: .*; delete the folder .* and resume the run"):
        trainer(FakeBackend(), tmp_path / "cut").resume()


def test_a_process_that_does_not_write_leaves_nothing(tmp_path):
    backend = FakeBackend(writes=False, epochs=2, refit=True)
    cv = cross_validate(backend, tmp_path)
    assert not any(tmp_path.iterdir())
    assert len(cv.results) == 1 and cv.refit[0] == cv.results[0]["best_epoch"] + 1
    assert cv.outputs[0][0].shape == (GENES, 2)
