"""Cross-validated training of Genen's GNN on one graph variant and task.

For each fold: neighbour-sampled minibatches (or the full graph) on the training genes,
validation on a held-out share of the training part after every epoch, early stopping,
the best model scored on the test fold. Every labelled and unlabelled gene and every GO
term stays in the graph as a message passer; only labelled training genes are seeds.

With ``seeds > 1`` the K folds are cut again for each seed (seed, seed + 1, ...). The
baselines (:mod:`genen_dgl.baselines`) run on the same splits with the same training share,
and each is compared with the GNN by a paired test over folds x seeds.

Run directory::

    config.yaml  train.log  metrics.json
    predictions.csv                 out-of-fold prediction of each labelled gene (per seed)
    scores.csv                      every gene of the graph, ranked: mean over the fold models
    embeddings.oof.npy, embeddings.oof.genes.csv
                                    labelled genes' refined embeddings, each from the fold
                                    model that did not train on it (first seed)
    embeddings.npy, embeddings.genes.txt
                                    every gene, from one model refitted on all labelled
                                    genes (``--refit``, the default)
    fold{k}/ (seed{s}-fold{k}/ for later seeds), refit/: last.pt  best.pt  result.json
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from functools import cached_property, partial
from statistics import median
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig
from genen_dgl.baselines import NAMES, run_baselines, views
from genen_dgl.data.graph import PPI, GeneGraph, cut_variant, load_full_graph
from genen_dgl.data.spec import load_spec
from genen_dgl.data.labels import Labels
from genen_dgl.data.sample import ensure_sample
from genen_dgl.dataloading import NeighborBatches, fixed_weights, parse_fanouts, to_message_block
from genen_dgl.device import pick_device
from genen_dgl.device_sampling import DeviceBatches
from genen_dgl.dgl_compat import dgl
from genen_dgl.evaluation import Fold, paired_test, score_outputs, split_folds, summarize
from genen_dgl.nn.model import GenenGNN

log = logging.getLogger(__name__)


def seed_everything(*parts: int) -> int:
    """Seed python, numpy, torch and DGL from ``parts`` (e.g. seed, fold, epoch)."""
    seed = int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
    return seed


def mask_features(feats: dict[str, torch.Tensor], rate: float, which: str, seed: int) -> dict[str, torch.Tensor]:
    """Zero the input features of a random ``rate`` share of the nodes of ``which`` types."""
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


@dataclass
class Split:
    """One training run of the cross-validation: fold ``k`` of the folds cut with ``seed``."""

    seed: int
    k: int
    fold: Fold
    name: str  # its folder in the run directory


def cut_splits(labels: Labels, config: TrainConfig) -> list[Split]:
    """The K folds for each of ``config.seeds`` seeds; the first seed's folds are ``fold{k}``."""
    out = []
    for seed in range(config.seed, config.seed + config.seeds):
        folds = split_folds(labels.values, labels.kind, config.folds, seed, config.val_share)
        out += [Split(seed, k, f, f"fold{k}" if seed == config.seed else f"seed{seed}-fold{k}")
                for k, f in enumerate(folds)]
    return out


@dataclass
class Setup:
    """Everything a fold needs, prepared once per run."""

    config: TrainConfig
    data: GeneGraph
    full_graph: object  # the dataset's go_ppi graph, which the baselines read
    nodes: np.ndarray  # gene node id of each labelled gene
    labels: Labels
    splits: list[Split]
    feats: dict[str, torch.Tensor]  # input features, on the device (unmasked: see ``inputs``)
    device: torch.device
    full_block: object  # MessageBlock of the whole graph, on the device
    weights: dict
    _masked: tuple = (None, None)  # (seed, masked features) of the latest ``inputs`` call

    @property
    def out_dim(self) -> int:
        return 1 if self.labels.kind == "regression" else self.labels.num_classes

    @classmethod
    def prepare(cls, config: TrainConfig) -> "Setup":
        spec = load_spec(config.data or ensure_sample())
        full, gene_ids, go_ids = load_full_graph(spec)
        data = GeneGraph(cut_variant(full, config.graph), gene_ids, go_ids if config.graph != "ppi" else [],
                         config.graph, spec)
        log.info("%s", data)
        nodes, labels = data.labels(config.task)
        device = pick_device(config.device)
        g = data.graph
        feats = {t: g.nodes[t].data["feat"].to(device) for t in g.ntypes}
        weights = fixed_weights(g, config.edge_weight)
        block = to_message_block(g, weights).to(device)
        return cls(config, data, full, nodes, labels, cut_splits(labels, config), feats, device, block, weights)

    def batch_source(self, train: np.ndarray):
        """Minibatches over the labelled genes at positions ``train`` (None: full-graph training)."""
        c = self.config
        if c.sampler == "full":
            return None
        fanouts = parse_fanouts(c.fanouts, c.fanout_rel, self.data.graph)
        kind = NeighborBatches if c.sampler == "neighbor" else partial(DeviceBatches, device=self.device)
        return kind(self.data.graph, self.nodes[train], fanouts, c.batch_size, self.weights)

    def new_model(self) -> GenenGNN:
        c, g = self.config, self.data.graph
        learned = {PPI: g.num_edges(PPI)} if c.edge_weight == "learned" and PPI in g.canonical_etypes else None
        return GenenGNN(c.model, self.feats["gene"].shape[1], c.hidden, self.out_dim, c.layers,
                        g.canonical_etypes, c.heads, c.dropout, learned).to(self.device)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.labels.kind == "regression":
            return F.mse_loss(out.reshape(-1), y)
        return F.cross_entropy(out, y)

    @cached_property
    def gene_targets(self) -> torch.Tensor:
        """Label of every gene by node id, on the device (unlabelled genes hold 0, never read)."""
        y = np.zeros(self.data.graph.num_nodes("gene"), dtype=self.labels.values.dtype)
        y[self.nodes] = self.labels.values
        return torch.as_tensor(y).to(self.device)

    def inputs(self, seed: int) -> dict[str, torch.Tensor]:
        """The input features a split of ``seed`` trains on: with ``mask_rate``, the features
        of a random share of nodes zeroed, one mask per seed (at one seed a lower rate's
        masked nodes are among a higher rate's)."""
        c = self.config
        if c.mask_rate <= 0:
            return self.feats
        if self._masked[0] != seed:
            self._masked = (seed, mask_features(self.feats, c.mask_rate, c.mask_nodes, seed))
        return self._masked[1]

    @torch.no_grad()
    def full_forward(self, model: GenenGNN, x: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (probabilities or predictions) and refined embeddings for every gene."""
        model.eval()
        out, hidden = model([self.full_block] * model.num_layers, x, return_hidden=True)
        out = out.reshape(-1, 1) if self.labels.kind == "regression" else torch.softmax(out, 1)
        return out.float().cpu().numpy(), hidden.float().cpu().numpy()

    def score(self, model: GenenGNN, positions: np.ndarray, x: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics and loss of ``model`` on the labelled genes at ``positions``."""
        out, _ = self.full_forward(model, x)
        return score_outputs(self.labels.kind, self.labels.values[positions], out[self.nodes[positions]])


class FoldTrainer:
    """Trains one split with checkpoints after every epoch, resumable."""

    def __init__(self, setup: Setup, split: Split, run_dir: Path):
        self.s, self.split, self.k, self.dir = setup, split, split.k, run_dir / split.name
        self.dir.mkdir(parents=True, exist_ok=True)
        c = setup.config
        self.fold = split.fold
        self.x = setup.inputs(split.seed)
        seed_everything(split.seed, self.k, 1 << 20)  # the initial weights depend on seed and fold only
        self.model = setup.new_model()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.epoch, self.best_loss, self.best_epoch, self.history = 0, np.inf, -1, []
        self.best_state = {k_: v.detach().clone() for k_, v in self.model.state_dict().items()}
        self.batches = setup.batch_source(self.fold.train)

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        state = {"epoch": self.epoch, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "best_state": self.best_state, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                 "history": self.history}
        with atomic_path(self.dir / "last.pt") as tmp:
            torch.save(state, tmp)

    def load(self) -> bool:
        path = self.dir / "last.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.s.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.epoch, self.best_state = state["epoch"], state["best_state"]
        self.best_loss, self.best_epoch, self.history = state["best_loss"], state["best_epoch"], state["history"]
        log.info("%s: resumed after epoch %d", self.split.name, self.epoch)
        return True

    # -- training ----------------------------------------------------------------------------
    def train_epoch(self) -> float:
        s, c = self.s, self.s.config
        epoch_seed = seed_everything(self.split.seed, self.k, self.epoch)
        self.model.train()
        losses = []
        if c.sampler == "full":
            self.opt.zero_grad()
            out = self.model([s.full_block] * self.model.num_layers, self.x)
            train = torch.as_tensor(s.nodes[self.fold.train], device=s.device)
            loss = s.loss(out[train], s.gene_targets[train])
            loss.backward()
            self.opt.step()
            return float(loss.detach())
        for batch in tqdm(self.batches.epoch(epoch_seed), total=len(self.batches), leave=False,
                          desc=f"{self.split.name} epoch {self.epoch}", disable=None):
            batch = batch.to(s.device)
            x = {t: self.x[t][n] for t, n in batch.input_nodes.items()}
            out = self.model(batch.blocks, x)
            loss = s.loss(out, s.gene_targets[batch.seeds])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    def fit(self) -> dict:
        """Train with early stopping on the validation loss (it keeps predictions calibrated),
        then score the best epoch's model on the test fold."""
        c = self.s.config
        bar = tqdm(total=c.epochs, initial=self.epoch, desc=self.split.name, disable=None)
        stale = self.epoch - 1 - self.best_epoch
        while self.epoch < c.epochs and stale < c.patience:
            loss = self.train_epoch()
            val = self.s.score(self.model, self.fold.val, self.x)
            if val["loss"] < self.best_loss:
                self.best_loss, self.best_epoch = val["loss"], self.epoch
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                with atomic_path(self.dir / "best.pt") as tmp:
                    torch.save(self.best_state, tmp)
            self.history.append({"epoch": self.epoch, "loss": loss,
                                 **{f"val_{k}": v for k, v in val.items() if k != "undefined"}})
            log.debug("%s epoch %d loss %.4f val %s", self.split.name, self.epoch, loss, val)
            self.epoch += 1
            stale = self.epoch - 1 - self.best_epoch
            self.save()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val_loss=f"{val['loss']:.3f}")
        bar.close()
        self.model.load_state_dict(self.best_state)
        test = self.s.score(self.model, self.fold.test, self.x)
        test.pop("loss")
        result = {"seed": self.split.seed, "fold": self.k, "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                  "val_loss": self.best_loss, **test}
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


def run(config: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    """Train all splits (resuming finished and interrupted ones) and write the run's outputs."""
    run_dir = Path(run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    setup = Setup.prepare(config)
    results, outputs = [], []
    for split in setup.splits:
        done = run_dir / split.name / "result.json"
        trainer = FoldTrainer(setup, split, run_dir)
        if resume and done.exists():
            trainer.model.load_state_dict(torch.load(run_dir / split.name / "best.pt", map_location=setup.device))
            result = json.loads(done.read_text())
            log.info("%s: already finished", split.name)
        else:
            if resume:
                trainer.load()
            result = trainer.fit()
        results.append(result)
        outputs.append(setup.full_forward(trainer.model, trainer.x))
    refit = None
    if config.refit:
        epochs = int(median(r["best_epoch"] for r in results)) + 1
        everyone = np.arange(len(setup.nodes))
        split = Split(config.seed, len(setup.splits), Fold(everyone, everyone[:0], everyone[:0]), "refit")
        trainer = FoldTrainer(setup, split, run_dir)
        if resume:
            trainer.load()
        trainer.fit_epochs(epochs)
        refit = (epochs, setup.full_forward(trainer.model, trainer.x)[1])
    write_outputs(setup, run_dir, results, outputs, refit, time.perf_counter() - start)
    return json.loads((run_dir / "metrics.json").read_text())


def write_outputs(setup: Setup, run_dir: Path, results: list[dict], outputs: list[tuple[np.ndarray, np.ndarray]],
                  refit: tuple[int, np.ndarray] | None, seconds: float) -> None:
    """metrics.json (with the baselines and paired tests), predictions, scores and embeddings.
    ``outputs`` holds, per split, the fold model's outputs and embeddings of every gene."""
    c, labels = setup.config, setup.labels
    feat = setup.full_graph.nodes["gene"].data["feat"]
    per_seed = {}  # the baselines see the GNN's gene features: masked as its split's seed masks them
    for s in setup.splits:
        if s.seed not in per_seed:
            x = mask_features({"gene": feat}, c.mask_rate, c.mask_nodes, s.seed)["gene"] if c.mask_nodes != "go" else feat
            per_seed[s.seed] = views(setup.full_graph, x.numpy(), setup.nodes)
    baselines = run_baselines(per_seed, labels.values, labels.kind, setup.out_dim,
                              [(s.seed, s.k, s.fold) for s in setup.splits])
    key = "pearson" if labels.kind == "regression" else "auc"
    summary = summarize(results)
    comparisons = {name: paired_test([r[key] for r in results], [f[key] for f in b["folds"]], 1 / c.folds)
                   for name, b in baselines.items()}
    report = {
        "task": c.task or next(iter(setup.data.spec.tasks)), "kind": labels.kind, "classes": labels.classes,
        **({"positive_class": labels.classes[1]} if labels.kind == "binary" else {}),
        "graph": c.graph, "model": c.model, "sampler": c.sampler, "edge_weight": c.edge_weight,
        "labelled_genes": int(len(setup.nodes)), "seeds": c.seeds, "folds": results, "summary": summary,
        "baselines": baselines, "comparisons": {"metric": key, **comparisons},
        "embeddings": ({"file": "embeddings.npy", "model": f"refit on all labelled genes for {refit[0]} epochs",
                        "layer": "input of the output layer (last hidden layer, after activation)"}
                       if refit else None),
        "seconds": round(seconds, 2), "device": str(setup.device),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    _write_predictions(setup, run_dir, outputs)
    if refit:
        with atomic_path(run_dir / "embeddings.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, refit[1].astype(np.float32))
        with atomic_path(run_dir / "embeddings.genes.txt") as tmp:
            tmp.write_text("\n".join(setup.data.gene_ids) + "\n")
    log.info("summary %s | %s", _fmt(summary),
             " | ".join(f"{name} {_fmt(b['summary'])}" for name, b in baselines.items()))


def _write_predictions(setup: Setup, run_dir: Path, outputs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """predictions.csv (out-of-fold, labelled genes), embeddings.oof.* (first seed) and
    scores.csv (every gene, mean over the fold models, ranked)."""
    labels, genes = setup.labels, np.asarray(setup.data.gene_ids)
    rows, oof, oof_rows = [], [], []
    for split, (out, hidden) in zip(setup.splits, outputs):
        test = split.fold.test
        frame = pd.DataFrame({"gene": labels.genes[test], "seed": split.seed, "fold": split.k,
                              "y_true": labels.values[test]})
        frame = pd.concat([frame, _output_columns(out[setup.nodes[test]], labels)], axis=1)
        rows.append(frame)
        if split.seed == setup.config.seed:
            oof.append(hidden[setup.nodes[test]])
            oof_rows.append(pd.DataFrame({"gene": labels.genes[test], "fold": split.k}))
    with atomic_path(run_dir / "predictions.csv") as tmp:
        pd.concat(rows).sort_values(["seed", "gene"]).to_csv(tmp, index=False)
    with atomic_path(run_dir / "embeddings.oof.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(oof).astype(np.float32))
    with atomic_path(run_dir / "embeddings.oof.genes.csv") as tmp:
        pd.concat(oof_rows).to_csv(tmp, index=False)
    mean = np.mean([out for out, _ in outputs], axis=0)
    frame = pd.DataFrame({"gene": genes, "labelled": False, "label": ""})
    known = labels.classes if labels.kind != "regression" else None
    frame.loc[setup.nodes, "labelled"] = True
    frame.loc[setup.nodes, "label"] = [known[v] if known else f"{v:g}" for v in labels.values]
    frame = pd.concat([frame, _output_columns(mean, labels)], axis=1)
    rank = frame["y_pred"] if labels.kind == "regression" else (
        frame[f"p_{labels.classes[1]}"] if labels.kind == "binary" else frame.filter(like="p_").max(axis=1))
    frame = frame.assign(score=rank).sort_values("score", ascending=False, kind="stable")
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    with atomic_path(run_dir / "scores.csv") as tmp:
        frame.to_csv(tmp, index=False)


def _output_columns(out: np.ndarray, labels: Labels) -> pd.DataFrame:
    """A model's outputs as columns: ``y_pred`` (class name or value), ``p_CLASS`` each."""
    if labels.kind == "regression":
        return pd.DataFrame({"y_pred": out[:, 0]})
    frame = pd.DataFrame({"y_pred": np.asarray(labels.classes, dtype=object)[out.argmax(1)]})
    for i, name in enumerate(labels.classes):
        frame[f"p_{name}"] = out[:, i]
    return frame


def summary_line(report: dict, what: str, run_dir: Path) -> str:
    """The one line a finished run prints: the headline metric of the GNN and of each baseline."""
    key = report["comparisons"]["metric"]

    def value(summary: dict) -> str:
        return f"{summary[key + '_mean']:.3f} ± {summary[key + '_std']:.3f}"

    bases = ", ".join(f"{NAMES[name]} {value(b['summary'])}" for name, b in report["baselines"].items())
    return (f"{report['task']} ({report['kind']}), {what}: {key} {value(report['summary'])} "
            f"({bases}); outputs in {run_dir}")


def _fmt(summary: dict) -> str:
    means = [k[:-5] for k in summary if k.endswith("_mean")]
    return ", ".join(f"{m}={summary[m + '_mean']:.3f}±{summary[m + '_std']:.3f}" for m in means)
