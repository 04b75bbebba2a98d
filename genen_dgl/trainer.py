"""Cross-validated training of Genen's GNN, written once for one machine and many.

:class:`FoldTrainer` trains one :class:`Split` (fold ``k`` of the folds cut with one seed)
from what a :class:`TrainingData` gives it: a fresh model, a step source (``epoch(seed)``
yielding :class:`~genen_dgl.batches.Step` s) and a predictor (``predict(model, genes)``).
:mod:`genen_dgl.local` provides them on one machine (full graph, DGL's sampler, the
torch-op sampler), :mod:`genen_dgl.distributed.backend` on a DistGraph. Per split:
epochs over the training genes, the validation genes scored after each, early stopping on
the validation loss, checkpoints after every epoch (resumable), the best epoch's model
scored on the test genes. :func:`cross_validate` runs every split and the optional refit
on all labelled genes; :mod:`genen_dgl.outputs` writes the run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pickle
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Iterator, Protocol

import numpy as np
import psutil
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.batches import Predictor, Step, StepSource
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import ANNOTATED, PPI
from genen_dgl.data.labels import Labels
from genen_dgl.dgl_compat import dgl
from genen_dgl.errors import InputError
from genen_dgl.evaluation import Fold, headline_metric, score_outputs, split_folds, split_problem
from genen_dgl.host_memory import keep_freed_memory
from genen_dgl.nn.annotation_residual import AnnotationResidual
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.node_embedding import NodeEmbeddings
from genen_dgl.precision import autocast, set_matmul_precision

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1  # last.pt's layout; a file of another is refused (start the split again)


def seed_everything(*parts: int) -> int:
    """Seed python, numpy, torch and DGL from ``parts`` (e.g. seed, fold, epoch)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
    return seed


def apply_runtime(config: TrainConfig) -> None:
    """The process-wide settings a run asks for: torch's CPU threads, TF32 matmuls on or
    off (``precision``), and with ``deterministic`` one thread (torch and DGL) and
    deterministic kernels; and freed host memory kept for the next batch
    (:func:`~genen_dgl.host_memory.keep_freed_memory`)."""
    keep_freed_memory()
    set_matmul_precision(config.precision)
    threads = 1 if config.deterministic else config.threads
    if threads:
        torch.set_num_threads(threads)
    if config.deterministic:
        dgl.utils.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)


def mask_features(feats: dict[str, torch.Tensor], rate: float, which: str, seed: int) -> dict[str, torch.Tensor]:
    """Zero the input features of a random ``rate`` share of the nodes of ``which`` types
    (at one seed, a lower rate's masked nodes are among a higher rate's)."""
    if rate <= 0:
        return feats
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t, x in feats.items():
        if which in ("all", t):
            keep = torch.rand(x.shape[0], generator=gen) >= rate
            x = x * keep[:, None].to(x.device, x.dtype)
        out[t] = x
    return out


def embedded_types(config: TrainConfig, graph) -> list[str]:
    """The node types ``--node-embeddings`` gives a table; an InputError for one ``graph`` lacks."""
    types = [] if config.node_embeddings == "none" else config.node_embeddings.split(",")
    missing = [t for t in types if t not in graph.ntypes]
    if missing:
        raise InputError(f"node_embeddings = {config.node_embeddings!r}: the {config.graph} graph has no "
                         f"{missing[0]} nodes")
    return types


def new_model(config: TrainConfig, graph, in_dim: int, out_dim: int, device: torch.device | str = "cpu") -> GenenGNN:
    """The configured GCN or GAT over ``graph``'s relations (learned PPI weights: one
    parameter per PPI edge of the graph), with the node embeddings (their tables made on
    ``device``, where the features are) and the annotation residual it asks for."""
    learned = {PPI: graph.num_edges(PPI)} if config.edge_weight == "learned" and PPI in graph.canonical_etypes else None
    embeddings = residual = None
    types = embedded_types(config, graph)
    if types:
        embeddings = NodeEmbeddings({t: graph.num_nodes(t) for t in types}, config.node_embedding_dim or in_dim,
                                    graph.ntypes, device)
    if config.annotation_residual:
        if ANNOTATED not in graph.canonical_etypes:
            raise InputError(f"annotation_residual: the {config.graph} graph has no GO annotations; expected graph "
                             f"go or go_ppi")
        genes, terms = graph.edges(etype=ANNOTATED)
        residual = AnnotationResidual(genes, terms, graph.num_nodes("gene"), graph.num_nodes("go"), out_dim)
    return GenenGNN(config.model, in_dim, config.hidden, out_dim, config.layers, graph.canonical_etypes,
                    config.heads, config.dropout, learned, embeddings=embeddings, residual=residual)


def check_memory(config: TrainConfig, graph, in_dim: int, out_dim: int, device: torch.device) -> None:
    r"""An InputError unless the configured model fits in the memory ``device`` has free.
    A lower bound in float32: :math:`4\,\mathrm{B} \times (4P + 3T + 2N\max(d_{in}, hidden, d_{out}))`,
    its ``P`` parameters four times (weights, gradients, Adam's two moments) and one
    full-graph pass over ``N`` nodes (input and output of the widest layer), plus the node
    embedding tables three times (rows, sparse Adam's two moments). The model is built on
    the meta device without its tables (they widen its input), so counting it allocates nothing."""
    embedded = embedded_types(config, graph)
    width = config.node_embedding_dim or in_dim if embedded else 0
    with torch.device("meta"):
        params = sum(p.numel() for p in new_model(dataclasses.replace(config, node_embeddings="none"), graph,
                                                  in_dim + width, out_dim).parameters())
    tables = 3 * width * sum(graph.num_nodes(t) for t in embedded)
    nodes = sum(graph.num_nodes(t) for t in graph.ntypes)
    need = 4 * (4 * params + tables + 2 * nodes * max(in_dim + width, config.hidden, out_dim))
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    if need > free:
        raise InputError(f"hidden = {config.hidden}: a {config.layers}-layer {config.model.upper()} on {nodes:,} nodes "
                         f"with {in_dim} input features needs at least {_size(need)} ({params:,} parameters with "
                         f"gradients and Adam state, and one full-graph pass); {_size(free)} is free on {device.type}: "
                         "lower hidden or layers")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def adam(params, lr: float, weight_decay: float = 0.0, capturable: bool = False) -> torch.optim.Adam:
    """Adam with its fused kernel: one operator per step for all parameters (the per-tensor
    loop costs ~12 operators per parameter tensor, a GPU kernel launch each).
    ``capturable`` (GPU only): a step of it can be captured in a CUDA graph
    (:mod:`genen_dgl.cuda_graph`)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=capturable)


def scores(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """What a predictor reports from the model's output: class probabilities (softmax; one
    sigmoid per class for multilabel), or the prediction as one column for regression;
    float32 whatever the precision."""
    logits = logits.float()
    if kind == "multilabel":
        return torch.sigmoid(logits)
    return logits.reshape(-1, 1) if kind == "regression" else torch.softmax(logits, 1)


def task_loss(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classes, MSE for regression (the paper's losses), binary
    cross-entropy with logits averaged over genes and classes for multilabel, on float32
    outputs (bf16 autocast: the logits are cast up first)."""
    out = out.float()
    if kind == "regression":
        return F.mse_loss(out.reshape(-1), y)
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(out, y)
    return F.cross_entropy(out, y)


@dataclass
class Split:
    """One training run of the cross-validation: fold ``k`` of the folds cut with ``seed``."""

    seed: int
    k: int
    fold: Fold
    name: str  # its folder in the run directory


def check_splits(labels: Labels, config: TrainConfig) -> None:
    """An InputError naming the task's file unless its labels can be cut into the
    configured folds and validation share (:func:`~genen_dgl.evaluation.split_problem`)."""
    problem = split_problem(labels.values, labels.kind, labels.classes, config.folds, config.val_share)
    if problem:
        raise InputError(problem, labels.source)


def cut_splits(labels: Labels, config: TrainConfig) -> list[Split]:
    """The K folds for each of ``config.seeds`` seeds; the first seed's folds are ``fold{k}``."""
    check_splits(labels, config)
    out = []
    for seed in range(config.seed, config.seed + config.seeds):
        folds = split_folds(labels.values, labels.kind, config.folds, seed, config.val_share)
        out += [Split(seed, k, f, f"fold{k}" if seed == config.seed else f"seed{seed}-fold{k}")
                for k, f in enumerate(folds)]
    return out


REFIT = "refit"  # the folder of the model trained on every labelled gene


def refit_split(config: TrainConfig, labelled: int, index: int) -> Split:
    """Training on every labelled gene (no validation, no test): the refit's split."""
    everyone = np.arange(labelled)
    return Split(config.seed, index, Fold(everyone, everyone[:0], everyone[:0]), REFIT)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: where it stopped (the checkpoints on disk are whole)."""

    def __init__(self, split: str, epoch: int):
        super().__init__(f"interrupted after {split} epoch {epoch}")
        self.split, self.epoch = split, epoch


class TrainingData(Protocol):
    """What a run trains on, wherever the graph lives."""

    config: TrainConfig
    labels: Labels
    nodes: np.ndarray  # gene node id of each labelled gene
    splits: list[Split]
    num_genes: int
    writes: bool  # whether this process writes checkpoints (one per run)

    def model(self, split: Split) -> torch.nn.Module:
        """A new model for ``split`` (its initial weights follow the torch seed)."""

    def steps(self, split: Split) -> StepSource:
        """Training steps over the split's training genes."""

    def predictor(self, split: Split) -> Predictor:
        """Outputs and embeddings of any genes, with the split's inputs."""

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the run's processes (itself on one machine)."""


class FoldTrainer:
    """Trains one split with checkpoints after every epoch, resumable."""

    def __init__(self, data: TrainingData, split: Split, run_dir: Path):
        self.data, self.split, self.k, self.dir = data, split, split.k, Path(run_dir) / split.name
        if data.writes:
            self.dir.mkdir(parents=True, exist_ok=True)
        c = data.config
        self.fold = split.fold
        seed_everything(split.seed, self.k, 1 << 20)  # the initial weights depend on seed and fold only
        self.model = data.model(split)
        self.opt = adam(self.model.parameters(), c.lr, c.weight_decay, capturable=c.cuda_graph)
        tables = getattr(self.model, "embeddings", None)  # the node embeddings' own sparse optimiser
        self.sparse_opt = tables.optimizer(c.lr) if tables is not None else None
        self.steps = data.steps(split)
        self.predictor = data.predictor(split)
        self.epoch, self.best_loss, self.best_epoch, self.history = 0, np.inf, -1, []
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        """``last.pt`` (model, optimizers, best state: enough to resume; tensors, numbers,
        lists and dicts only, read back with ``weights_only``) and ``history.json``; the node
        embedding tables are in the model's state, their optimiser's in ``sparse_opt``."""
        if not self.data.writes:
            return
        state = {"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "model": self.model.state_dict(),
                 "opt": self.opt.state_dict(), "best_state": self.best_state, "best_loss": float(self.best_loss),
                 "best_epoch": self.best_epoch, "history": self.history}
        if self.sparse_opt is not None:
            state["sparse_opt"] = self.sparse_opt.state_dict()
        with atomic_path(self.dir / "last.pt") as tmp:
            torch.save(state, tmp)
        with atomic_path(self.dir / "history.json") as tmp:
            tmp.write_text(json.dumps(self.history))

    def prune(self) -> None:
        """A finished split's checkpoints as ``keep_checkpoints`` says: ``best`` drops
        ``last.pt`` (optimizer state included: the bulk), ``none`` both (once the run is
        written: see :func:`cross_validate`), ``last`` keeps them."""
        if self.data.writes and self.data.config.keep_checkpoints != "last":
            (self.dir / "last.pt").unlink(missing_ok=True)

    def load(self) -> bool:
        """Continue from ``last.pt`` where there is one (every process reads the writer's)."""
        path = self.dir / "last.pt"
        if not path.exists():
            return False
        state = self.read(path)
        with self.damaged(path):
            if state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')}, expected {CHECKPOINT_FORMAT}: "
                                 "written by another genen-dgl version")
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            if self.sparse_opt is not None:
                self.sparse_opt.load_state_dict(state["sparse_opt"])
            self.epoch, self.best_state = state["epoch"], state["best_state"]
            self.best_loss, self.best_epoch, self.history = state["best_loss"], state["best_epoch"], state["history"]
        for group in self.opt.param_groups:  # loading restores the saving run's; --cuda-graph may differ
            group["capturable"] = self.data.config.cuda_graph
        log.info("%s: resumed after epoch %d", self.split.name, self.epoch)
        return True

    def load_best(self) -> dict:
        """A finished split: its best model, history and result."""
        state = self.read(self.dir / "best.pt")
        with self.damaged(self.dir / "best.pt"):
            self.model.load_state_dict(state)
        with self.damaged(self.dir / "history.json"):
            self.history = json.loads((self.dir / "history.json").read_text())
        with self.damaged(self.dir / "result.json"):
            return json.loads((self.dir / "result.json").read_text())

    def read(self, path: Path) -> dict:
        """A checkpoint, read with ``weights_only``: tensors and plain values, never pickled
        objects (a file holding any is refused before anything in it runs)."""
        with self.damaged(path):
            state = torch.load(path, map_location=self._device, weights_only=True)
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

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- training ----------------------------------------------------------------------------
    def optimise(self, step: Step) -> torch.Tensor:
        """One optimisation step: forward (at the configured precision), loss, backward,
        Adam; the loss, detached (a device scalar)."""
        with autocast(self.data.config.precision, self._device):
            out = self.model(step.blocks, step.inputs, nodes=step.nodes, seeds=step.seeds)
        loss = task_loss(self.data.labels.kind, out if step.rows is None else out[step.rows], step.targets)
        self.opt.zero_grad()
        if self.sparse_opt is not None:
            self.sparse_opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.sparse_opt is not None:
            self.sparse_opt.step()
        return loss.detach()

    def train_epoch(self) -> float:
        """One epoch; the mean training loss over every step of every process."""
        epoch_seed = seed_everything(self.split.seed, self.k, self.epoch)
        self.model.train()
        total = torch.zeros(2, dtype=torch.float64, device=self._device)  # loss sum, steps: no host sync per step
        for loss in tqdm(self.steps.losses(epoch_seed, self.optimise), total=len(self.steps), leave=False,
                         desc=f"{self.split.name} epoch {self.epoch}", disable=None):
            total += torch.stack([loss.to(torch.float64), total.new_ones(())])
        total = self.data.reduce(total.cpu())
        return float(total[0] / total[1])

    def score(self, positions: np.ndarray) -> dict:
        """Metrics and loss on the labelled genes at ``positions``."""
        labels = self.data.labels
        out, _ = self.predictor.predict(self.model, self.data.nodes[positions])
        return score_outputs(labels.kind, labels.values[positions], out, labels.classes)

    def fit(self) -> dict:
        """Train with early stopping on the validation loss (it keeps predictions calibrated),
        then score the best epoch's model on the test fold."""
        c = self.data.config
        bar = tqdm(total=c.epochs, initial=self.epoch, desc=self.split.name, disable=None)
        stale = self.epoch - 1 - self.best_epoch
        tty, said = sys.stderr.isatty(), time.monotonic()  # without a terminal, log lines show progress
        metric = headline_metric(self.data.labels.kind)
        while self.epoch < c.epochs and stale < c.patience:
            loss = self.train_epoch()
            val = self.score(self.fold.val)
            if val["loss"] < self.best_loss:
                self.best_loss, self.best_epoch = val["loss"], self.epoch
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                if self.data.writes:
                    with atomic_path(self.dir / "best.pt") as tmp:
                        torch.save(self.best_state, tmp)
            self.history.append({"epoch": self.epoch, "loss": loss, "val_loss": val["loss"],
                                 **{f"val_{k}": v for k, v in val.items() if k not in ("loss", "undefined")}})
            if not tty and (self.epoch % 10 == 0 or time.monotonic() - said >= 30):
                log.info("%s epoch %d/%d: loss %.4f, val_loss %.4f, val_%s %.3f", self.split.name, self.epoch,
                         c.epochs, loss, val["loss"], metric, val[metric])
                said = time.monotonic()
            self.epoch += 1
            stale = self.epoch - 1 - self.best_epoch
            self.save()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val_loss=f"{val['loss']:.3f}")
        bar.close()
        self.steps.close()
        self.model.load_state_dict(self.best_state)
        test = self.score(self.fold.test)
        test.pop("loss")
        result = {"seed": self.split.seed, "fold": self.k, "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                  "val_loss": self.best_loss, **test}
        if self.data.writes:
            with atomic_path(self.dir / "result.json") as tmp:
                tmp.write_text(json.dumps(result, indent=1))
        log.info("%s: best epoch %d, test %s", self.split.name, self.best_epoch,
                 ", ".join(f"{k}={v:.3f}" for k, v in test.items() if isinstance(v, float)))
        return result

    def fit_epochs(self, epochs: int) -> None:
        """Train for exactly ``epochs`` epochs, no validation (the refit on all labelled genes)."""
        for _ in tqdm(range(self.epoch, epochs), desc=self.split.name, disable=None):
            self.train_epoch()
            self.epoch += 1
            self.best_epoch, self.best_state = self.epoch - 1, self.model.state_dict()
            self.save()
        self.steps.close()
        if self.data.writes:
            with atomic_path(self.dir / "best.pt") as tmp:
                torch.save(self.best_state, tmp)
            with atomic_path(self.dir / "result.json") as tmp:
                tmp.write_text(json.dumps({"epochs_run": self.epoch}))


@dataclass
class CrossValidation:
    """What :func:`cross_validate` hands to :func:`genen_dgl.outputs.write_outputs`."""

    results: list[dict]  # per split: seed, fold, best epoch, test metrics
    outputs: list[tuple[np.ndarray, np.ndarray]]  # per split: outputs and embeddings of every gene
    refit: tuple[int, np.ndarray] | None  # epochs and embeddings of every gene of the refit model
    histories: list[list[dict]]  # per split: epoch, train loss, validation loss and metrics


def cross_validate(data: TrainingData, run_dir: Path, resume: bool = False) -> CrossValidation:
    """Every split (finished ones reloaded, interrupted ones resumed when ``resume``), then
    with ``config.refit`` one model on all labelled genes for the median best epoch count."""
    results, outputs, histories = [], [], []
    genes = np.arange(data.num_genes)
    trainer = None
    try:
        for split in data.splits:
            trainer = FoldTrainer(data, split, run_dir)
            if resume and (trainer.dir / "result.json").exists():
                result = trainer.load_best()
                log.info("%s: already finished", split.name)
            else:
                if resume:
                    trainer.load()
                result = trainer.fit()
            results.append(result)
            histories.append(trainer.history)
            outputs.append(trainer.predictor.predict(trainer.model, genes))
            trainer.prune()
        refit = None
        if data.config.refit:
            epochs = int(median(r["best_epoch"] for r in results)) + 1
            trainer = FoldTrainer(data, refit_split(data.config, len(data.nodes), len(data.splits)), run_dir)
            if resume and (trainer.dir / "result.json").exists():
                trainer.load_best()
            else:
                if resume:
                    trainer.load()
                trainer.fit_epochs(epochs)
            refit = (epochs, trainer.predictor.predict(trainer.model, genes)[1])
            trainer.prune()
    except KeyboardInterrupt:
        raise Interrupted(trainer.split.name if trainer else "start", trainer.epoch if trainer else 0) from None
    if data.writes and data.config.keep_checkpoints == "none":
        for name in [s.name for s in data.splits] + ([REFIT] if refit else []):
            (Path(run_dir) / name / "best.pt").unlink(missing_ok=True)
    return CrossValidation(results, outputs, refit, histories)
