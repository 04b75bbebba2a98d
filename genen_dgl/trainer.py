"""Cross-validated training of Genen's GNN on one graph variant and task.

For each fold: neighbour-sampled minibatches (or the full graph) on the training genes,
validation on a held-out share of the training part after every epoch, early stopping,
the best model scored on the test fold. Every labelled and unlabelled gene and every GO
term stays in the graph as a message passer; only labelled training genes are seeds.

Run directory::

    config.yaml  train.log  metrics.json  predictions.csv
    embeddings.npy  embeddings.genes.txt          refined gene embeddings (best fold)
    fold{k}/last.pt  fold{k}/best.pt  fold{k}/result.json
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import PPI, GeneGraph, load_graph
from genen_dgl.data.labels import Labels
from genen_dgl.data.sample import ensure_sample
from genen_dgl.dataloading import NeighborBatches, fixed_weights, parse_fanouts, to_message_block
from genen_dgl.device import pick_device
from genen_dgl.device_sampling import DeviceBatches
from genen_dgl.dgl_compat import dgl
from genen_dgl.evaluation import Fold, baseline, score_outputs, split_folds, summarize
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
            x = x * keep[:, None].to(x.dtype)
        out[t] = x
    return out


@dataclass
class Setup:
    """Everything a fold needs, prepared once per run."""

    config: TrainConfig
    data: GeneGraph
    nodes: np.ndarray  # gene node id of each labelled gene
    labels: Labels
    folds: list[Fold]
    feats: dict[str, torch.Tensor]  # on the device
    device: torch.device
    full_block: object  # MessageBlock of the whole graph, on the device
    weights: dict

    @property
    def out_dim(self) -> int:
        return 1 if self.labels.kind == "regression" else self.labels.num_classes

    @classmethod
    def prepare(cls, config: TrainConfig) -> "Setup":
        spec = config.data or ensure_sample()
        data = load_graph(spec, config.graph)
        log.info("%s", data)
        nodes, labels = data.labels(config.task)
        folds = split_folds(labels.values, labels.kind, config.folds, config.seed, config.val_share)
        device = pick_device(config.device)
        g = data.graph
        feats = {t: g.nodes[t].data["feat"] for t in g.ntypes}
        feats = mask_features(feats, config.mask_rate, config.mask_nodes, config.seed)
        weights = fixed_weights(g, config.edge_weight)
        full = to_message_block(g, weights).to(device)
        feats = {t: x.to(device) for t, x in feats.items()}
        return cls(config, data, nodes, labels, folds, feats, device, full, weights)

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

    @torch.no_grad()
    def full_forward(self, model: GenenGNN) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (probabilities or predictions) and refined embeddings for every gene."""
        model.eval()
        out, hidden = model([self.full_block] * model.num_layers, self.feats, return_hidden=True)
        out = out.reshape(-1, 1) if self.labels.kind == "regression" else torch.softmax(out, 1)
        return out.float().cpu().numpy(), hidden.float().cpu().numpy()

    def score(self, model: GenenGNN, positions: np.ndarray) -> dict[str, float]:
        """Metrics and loss of ``model`` on the labelled genes at ``positions``."""
        out, _ = self.full_forward(model)
        return score_outputs(self.labels.kind, self.labels.values[positions], out[self.nodes[positions]])


class FoldTrainer:
    """Trains one fold with checkpoints after every epoch, resumable."""

    def __init__(self, setup: Setup, k: int, run_dir: Path):
        self.s, self.k, self.dir = setup, k, run_dir / f"fold{k}"
        self.dir.mkdir(parents=True, exist_ok=True)
        c = setup.config
        self.fold = setup.folds[k]
        seed_everything(c.seed, k, 1 << 20)  # the initial weights depend on seed and fold only
        self.model = setup.new_model()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.epoch, self.best_score, self.best_epoch, self.history = 0, -np.inf, -1, []
        self.best_state = {k_: v.detach().clone() for k_, v in self.model.state_dict().items()}
        if c.sampler != "full":
            fanouts = parse_fanouts(c.fanouts, c.fanout_rel, setup.data.graph)
            kind = NeighborBatches if c.sampler == "neighbor" else partial(DeviceBatches, device=setup.device)
            self.batches = kind(setup.data.graph, setup.nodes[self.fold.train], fanouts, c.batch_size, setup.weights)

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        state = {"epoch": self.epoch, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "best_state": self.best_state, "best_score": self.best_score, "best_epoch": self.best_epoch,
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
        self.best_score, self.best_epoch, self.history = state["best_score"], state["best_epoch"], state["history"]
        log.info("fold %d: resumed after epoch %d", self.k, self.epoch)
        return True

    # -- training ----------------------------------------------------------------------------
    def train_epoch(self) -> float:
        s, c = self.s, self.s.config
        epoch_seed = seed_everything(c.seed, self.k, self.epoch)
        self.model.train()
        losses = []
        if c.sampler == "full":
            self.opt.zero_grad()
            out = self.model([s.full_block] * self.model.num_layers, s.feats)
            train = torch.as_tensor(s.nodes[self.fold.train], device=s.device)
            loss = s.loss(out[train], s.gene_targets[train])
            loss.backward()
            self.opt.step()
            return float(loss.detach())
        for batch in tqdm(self.batches.epoch(epoch_seed), total=len(self.batches), leave=False,
                          desc=f"fold {self.k} epoch {self.epoch}", disable=None):
            batch = batch.to(s.device)
            x = {t: s.feats[t][n] for t, n in batch.input_nodes.items()}
            out = self.model(batch.blocks, x)
            loss = s.loss(out, s.gene_targets[batch.seeds])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    def fit(self) -> dict:
        c = self.s.config
        bar = tqdm(total=c.epochs, initial=self.epoch, desc=f"fold {self.k}", disable=None)
        stale = self.epoch - 1 - self.best_epoch
        while self.epoch < c.epochs and stale < c.patience:
            loss = self.train_epoch()
            val = self.s.score(self.model, self.fold.val)
            score = -val["loss"]  # early stopping on validation loss keeps predictions calibrated
            if score > self.best_score:
                self.best_score, self.best_epoch = score, self.epoch
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                with atomic_path(self.dir / "best.pt") as tmp:
                    torch.save(self.best_state, tmp)
            self.history.append({"epoch": self.epoch, "loss": loss, **{f"val_{k}": v for k, v in val.items()}})
            log.debug("fold %d epoch %d loss %.4f val %s", self.k, self.epoch, loss, val)
            self.epoch += 1
            stale = self.epoch - 1 - self.best_epoch
            self.save()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val=f"{score:.3f}")
        bar.close()
        self.model.load_state_dict(self.best_state)
        test = self.s.score(self.model, self.fold.test)
        test.pop("loss")
        result = {"fold": self.k, "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                  "val_score": self.best_score, **test}
        with atomic_path(self.dir / "result.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        log.info("fold %d: best epoch %d, test %s", self.k, self.best_epoch,
                 ", ".join(f"{k}={v:.3f}" for k, v in test.items()))
        return result


def run(config: TrainConfig, run_dir: Path, resume: bool = False) -> dict:
    """Train all folds (resuming finished and interrupted ones) and write the run's outputs."""
    run_dir = Path(run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    start = time.perf_counter()
    setup = Setup.prepare(config)
    results, outputs, embeddings = [], [], []
    for k in range(config.folds):
        done = run_dir / f"fold{k}" / "result.json"
        trainer = FoldTrainer(setup, k, run_dir)
        if resume and done.exists():
            trainer.model.load_state_dict(torch.load(run_dir / f"fold{k}" / "best.pt", map_location=setup.device))
            result = json.loads(done.read_text())
            log.info("fold %d: already finished", k)
        else:
            if resume:
                trainer.load()
            result = trainer.fit()
        results.append(result)
        out, hidden = setup.full_forward(trainer.model)
        outputs.append(out[setup.nodes[setup.folds[k].test]])
        embeddings.append((result["val_score"], hidden))
    write_outputs(setup, run_dir, results, outputs, embeddings, time.perf_counter() - start)
    return json.loads((run_dir / "metrics.json").read_text())


def write_outputs(setup: Setup, run_dir: Path, results, outputs, embeddings, seconds: float) -> None:
    c, labels = setup.config, setup.labels
    x = setup.data.graph.nodes["gene"].data["feat"]
    x = mask_features({"gene": x}, c.mask_rate, c.mask_nodes, c.seed)["gene"] if c.mask_nodes != "go" else x
    base = baseline(x[setup.nodes].numpy(), labels.values, labels.kind, setup.folds, c.seed)
    metric_keys = [k for k in results[0] if k not in ("fold", "best_epoch", "epochs_run", "val_score")]
    summary = summarize([{k: float(r[k]) for k in metric_keys} for r in results])
    best = int(np.argmax([score for score, _ in embeddings]))
    report = {
        "task": c.task or next(iter(setup.data.spec.tasks)), "kind": labels.kind, "classes": labels.classes,
        "graph": c.graph, "model": c.model, "sampler": c.sampler, "labelled_genes": int(len(setup.nodes)),
        "folds": results, "summary": summary, "baseline": base, "embedding_fold": best,
        "seconds": round(seconds, 2), "device": str(setup.device),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    rows = []
    for k, out in enumerate(outputs):
        test = setup.folds[k].test
        frame = pd.DataFrame({"gene": labels.genes[test], "fold": k, "y_true": labels.values[test]})
        if labels.kind == "regression":
            frame["y_pred"] = out[:, 0]
        else:
            frame["y_pred"] = out.argmax(1)
            for i, name in enumerate(labels.classes):
                frame[f"p_{name}"] = out[:, i]
        rows.append(frame)
    with atomic_path(run_dir / "predictions.csv") as tmp:
        pd.concat(rows).sort_values("gene").to_csv(tmp, index=False)
    with atomic_path(run_dir / "embeddings.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, embeddings[best][1].astype(np.float32))
    with atomic_path(run_dir / "embeddings.genes.txt") as tmp:
        tmp.write_text("\n".join(setup.data.gene_ids) + "\n")
    log.info("summary %s | baseline %s", _fmt(summary), _fmt(base["summary"]))


def _fmt(summary: dict[str, float]) -> str:
    means = [k[:-5] for k in summary if k.endswith("_mean")]
    return ", ".join(f"{m}={summary[m + '_mean']:.3f}±{summary[m + '_std']:.3f}" for m in means)
