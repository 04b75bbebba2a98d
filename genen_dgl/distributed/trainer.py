"""``python -m genen_dgl.distributed.trainer``: cross-validated training on a DGL DistGraph.

Started by :mod:`genen_dgl.launch` (which sets DGL's environment), once per trainer
rank. Takes the options of ``python -m genen_dgl.train``; the graph variant and dataset
are the partitions' (``DGL_CONF_PATH``). Same folds, model, loss, early stopping and
outputs as the single-machine trainer (:mod:`genen_dgl.trainer`, whose ``Setup`` and
``FoldTrainer`` this extends); the differences:

* minibatches come from DGL's distributed neighbour sampling
  (``dgl.dataloading.DistNodeDataLoader`` + ``NeighborSampler`` on the heterograph),
  converted by :func:`genen_dgl.dataloading.to_message_block`; features, labels and edge
  weights are pulled from the servers;
* each epoch the training genes are shuffled (same seed on every rank) and cut into one
  equal share per rank, padded by wrapping around, so every rank runs the same number of
  batches; ``--batch-size`` is the global batch (each rank takes its share of it);
  gradients are averaged by ``DistributedDataParallel`` (gloo);
* validation and test use inference over every neighbour (``--eval-fanouts``, default -1
  per layer: the same operator as the single-machine full-graph evaluation, since sampled
  blocks carry whole-graph degrees) on each rank's share of the genes, gathered on every
  rank, so all ranks take the same early-stopping decisions; rank 0 writes the run
  directory, and computes the baselines from the dataset the partitions were cut from.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from genen_dgl.atomic import atomic_path
from genen_dgl.config import TrainConfig, parse_ints, build_parser, from_args
from genen_dgl.data.graph import GeneGraph, load_full_graph
from genen_dgl.data.spec import load_spec
from genen_dgl.dataloading import Degrees, fixed_weights, parse_fanouts, to_message_block
from genen_dgl.dgl_compat import dgl
from genen_dgl.distributed.env import required
from genen_dgl.errors import InputError, cli
from genen_dgl.evaluation import Fold, score_outputs
from genen_dgl.nn.sparse import MessageBlock
from genen_dgl.partition import PartitionInfo, degree_fields
from genen_dgl.train import run_dir_for
from genen_dgl.trainer import (FoldTrainer, Setup, Split, cut_splits, mask_features, pick_device, seed_everything,
                               summary_line, write_outputs)

log = logging.getLogger("genen_dgl.distributed.trainer")

TARGET = "gene"


def as_dict(nodes, ntype: str = TARGET) -> dict[str, torch.Tensor]:
    """DGL hands bare tensors back on a graph with one node type."""
    return nodes if isinstance(nodes, dict) else {ntype: nodes}


def seeds_of(g, ids: torch.Tensor):
    """Seed nodes for DGL's samplers: by type on a heterograph, a bare tensor on a graph
    with one node and edge type (DGL keeps those homogeneous)."""
    return {TARGET: ids} if len(g.ntypes) > 1 or len(g.canonical_etypes) > 1 else ids


def connect() -> None:
    """Join the run: DGL's client first (it must precede torch.distributed), then gloo."""
    logging.getLogger("dgl-distributed-socket").setLevel(logging.ERROR)  # "IP address not available for ifb0"
    dgl.distributed.initialize(required("DGL_IP_CONFIG"))
    tdist.init_process_group("gloo")


def disconnect() -> None:
    """Leave cleanly: wait for every trainer, then exit DGL's client (rank 0's exit shuts
    the servers down, so nobody may still be pulling)."""
    tdist.barrier()
    dgl.distributed.exit_client()
    tdist.destroy_process_group()


def graph_etype(g, etype: tuple[str, str, str]) -> tuple[str, str, str]:
    """The graph's name of a sampled block's edge type: DGL calls the one type of a
    homogeneous DistGraph ``(_N, _E, _N)`` in its blocks."""
    return etype if etype in g.canonical_etypes else g.canonical_etypes[0]


def message_block(block, g, weights: dict, degrees: Degrees) -> MessageBlock:
    """:func:`to_message_block` of a sampled block, under the graph's type names."""
    names = {e: graph_etype(g, e) for e in block.canonical_etypes}
    mb = to_message_block(block, {e: weights[ge] for e, ge in names.items() if ge in weights},
                          degrees={e: degrees[ge] for e, ge in names.items()})
    if all(e == ge for e, ge in names.items()):
        return mb
    ntype = {e[0]: ge[0] for e, ge in names.items()} | {e[2]: ge[2] for e, ge in names.items()}
    return MessageBlock({names[e]: r for e, r in mb.relations.items()},
                        {ntype[t]: n for t, n in mb.num_src.items()}, {ntype[t]: n for t, n in mb.num_dst.items()})


def rank_share(ids: torch.Tensor, rank: int, world: int, seed: int) -> torch.Tensor:
    """Rank ``rank``'s share of ``ids`` after a seeded shuffle: ``ceil(n / world)`` ids on
    every rank, the last shares padded with ids from the start of the shuffled order."""
    n = len(ids)
    per = -(-n // world)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order.repeat(-(-per * world // n))[: per * world]
    return ids[order[rank * per:(rank + 1) * per]]


@dataclass
class DistSetup(Setup):
    """A :class:`Setup` whose graph is a DistGraph: ``data.graph`` is the DistGraph,
    ``feats`` its feature DistTensors, ``nodes`` still the labelled genes' original ids."""

    info: PartitionInfo = None
    rank: int = 0
    world: int = 1
    shuffled: torch.Tensor = None  # partition (shuffled) id of each labelled gene
    to_shuffled: dict = None  # ntype -> shuffled id of each original id
    mapping: dict = None  # ntype -> original id of each shuffled id
    train_sampler: object = None
    eval_sampler: object = None
    label: object = None  # DistTensor of the task's labels
    degrees: Degrees = None  # each relation's whole-graph degrees (DistTensors)

    @property
    def rank_batch(self) -> int:
        return max(1, -(-self.config.batch_size // self.world))

    def batch_source(self, train: np.ndarray) -> None:
        """None: :meth:`DistFoldTrainer.train_epoch` draws each rank's share itself."""
        return None

    def inputs(self, seed: int) -> dict[str, torch.Tensor] | None:
        """The masking study's keep-masks by shuffled id for ``seed`` (None without masking):
        the same nodes :func:`mask_features` zeroes on one machine."""
        c = self.config
        if c.mask_rate <= 0:
            return None
        ones = {t: torch.ones(len(orig), 1) for t, orig in self.mapping.items()}
        masked = mask_features(ones, c.mask_rate, c.mask_nodes, seed)
        return {t: masked[t][self.mapping[t], 0] > 0 for t in masked}

    def new_model(self):
        model = super().new_model()
        return DistributedDataParallel(model, find_unused_parameters=True)

    # -- pulling from the servers ----------------------------------------------------------
    def features(self, input_nodes: dict[str, torch.Tensor], keep: dict | None) -> dict[str, torch.Tensor]:
        x = {}
        for t, ids in input_nodes.items():
            v = self.feats[t][ids]
            if keep is not None:
                v = v * keep[t][ids, None].to(v.dtype)
            x[t] = v.to(self.device)
        return x

    def batches(self, ids: torch.Tensor, sampler, batch_size: int, keep: dict | None):
        """(input features, message blocks, output gene ids) per minibatch of ``ids``."""
        loader = dgl.dataloading.DistNodeDataLoader(self.data.graph, seeds_of(self.data.graph, ids), sampler,
                                                    batch_size=batch_size, shuffle=False, drop_last=False)
        for input_nodes, output_nodes, blocks in loader:
            mblocks = [message_block(b, self.data.graph, self.weights, self.degrees).to(self.device) for b in blocks]
            yield self.features(as_dict(input_nodes), keep), mblocks, as_dict(output_nodes)[TARGET]

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, ids: torch.Tensor, keep: dict | None, hidden: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs (probabilities or predictions) and, if asked, refined embeddings of the
        genes ``ids`` (shuffled ids), in that order; each rank infers a share, all get all."""
        module = getattr(model, "module", model)
        module.eval()
        mine = np.array_split(np.arange(len(ids)), self.world)[self.rank]
        dgl.seed(self.config.seed)  # local sampling repeats from epoch to epoch
        seen, outs, hids = [], [], []
        for x, blocks, out_ids in self.batches(ids[mine], self.eval_sampler, self.config.batch_size, keep):
            out, h = module(blocks, x, return_hidden=True)
            out = out.reshape(-1, 1) if self.labels.kind == "regression" else torch.softmax(out, 1)
            seen.append(out_ids)
            outs.append(out.float().cpu())
            if hidden:
                hids.append(h.float().cpu())
        part = (torch.cat(seen).numpy(), torch.cat(outs).numpy(), torch.cat(hids).numpy() if hidden else None) \
            if seen else None  # more ranks than genes: this rank had none
        parts = [None] * self.world
        tdist.all_gather_object(parts, part)
        parts = [p for p in parts if p is not None]
        where = {int(n): i for i, n in enumerate(ids.tolist())}
        out = np.zeros((len(ids), parts[0][1].shape[1]), dtype=np.float32)
        emb = np.zeros((len(ids), parts[0][2].shape[1]), dtype=np.float32) if hidden else None
        for got, o, h in parts:
            rows = np.array([where[int(n)] for n in got], dtype=np.int64)
            out[rows] = o
            if hidden:
                emb[rows] = h
        return out, emb

    def score(self, model, positions: np.ndarray, keep: dict | None) -> dict[str, float]:
        out, _ = self.predict(model, self.shuffled[torch.as_tensor(positions)], keep)
        return score_outputs(self.labels.kind, self.labels.values[positions], out)

    def full_forward(self, model, keep: dict | None) -> tuple[np.ndarray, np.ndarray]:
        """Outputs and embeddings of every gene (original order), by inference over the DistGraph."""
        return self.predict(model, self.to_shuffled[TARGET], keep, hidden=True)


class DistFoldTrainer(FoldTrainer):
    """One fold on every rank; checkpoints only from rank 0 (the others write to scratch)."""

    def __init__(self, setup: DistSetup, split: Split, run_dir: Path, scratch: Path):
        super().__init__(setup, split, run_dir if setup.rank == 0 else scratch)
        self.epoch_seconds: list[float] = []

    def train_epoch(self) -> float:
        s, c = self.s, self.s.config
        start = time.perf_counter()
        epoch_seed = seed_everything(self.split.seed, self.k, self.epoch)
        self.model.train()
        seeds = rank_share(s.shuffled[torch.as_tensor(self.fold.train)], s.rank, s.world, epoch_seed)
        total = torch.zeros(2, dtype=torch.float64)
        for x, blocks, out_ids in s.batches(seeds, s.train_sampler, s.rank_batch, self.x):
            out = self.model(blocks, x)
            loss = s.loss(out, s.label[out_ids].to(s.device))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
        tdist.all_reduce(total)
        self.epoch_seconds.append(time.perf_counter() - start)
        return float(total[0] / total[1])


def prepare(config: TrainConfig, info: PartitionInfo, eval_fanouts: list[int] | None) -> DistSetup:
    """Connect to the servers, open the DistGraph, and build the run's setup."""
    g = dgl.distributed.DistGraph(info.graph_name)
    rank, world = tdist.get_rank(), tdist.get_world_size()
    device = pick_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    task = info.meta["tasks"][config.task]
    nodes, labels = info.labels(config.task)
    mapping = info.node_mapping()  # shuffled id -> original id
    to_shuffled = {}
    for t, orig in mapping.items():
        inv = torch.empty_like(orig)
        inv[orig] = torch.arange(len(orig))
        to_shuffled[t] = inv
    shuffled = to_shuffled[TARGET][torch.as_tensor(nodes)]
    label = g.nodes[TARGET].data[task["label_field"]]
    if rank == 0:  # the labels the servers hold are the labels the folds were cut from
        held = label[shuffled].numpy()
        flagged = g.nodes[TARGET].data[task["labelled_field"]][shuffled].numpy()
        if not (flagged == 1).all() or not np.allclose(held, labels.values):
            raise RuntimeError(f"partition labels of {config.task} do not match {info.root}; partition again")
    feats = {t: g.nodes[t].data["feat"] for t in g.ntypes}
    fanouts = parse_fanouts(config.fanouts, config.fanout_rel, g)
    eval_fanouts = parse_fanouts(eval_fanouts or [-1] * config.layers, {}, g)
    degrees = {}
    for e in g.canonical_etypes:
        out_name, in_name = degree_fields(e)
        degrees[e] = (g.nodes[e[0]].data[out_name], g.nodes[e[2]].data[in_name])
    data = GeneGraph(g, info.gene_ids(), [], info.meta["variant"], load_spec(config.data))
    # the baselines (rank 0 only) read the dataset's graph the partitions were cut from
    full = load_full_graph(data.spec)[0] if rank == 0 else None
    return DistSetup(
        config, data, full, nodes, labels, cut_splits(labels, config), feats, device, None,
        fixed_weights(g, config.edge_weight), info=info, rank=rank, world=world, shuffled=shuffled,
        to_shuffled=to_shuffled, mapping=mapping, train_sampler=dgl.dataloading.NeighborSampler(fanouts),
        eval_sampler=dgl.dataloading.NeighborSampler(eval_fanouts), label=label, degrees=degrees,
    )


def train(setup: DistSetup, run_dir: Path, eval_fanouts: list[int] | None) -> dict | None:
    """All splits; rank 0 writes the outputs and returns the metrics."""
    c, start = setup.config, time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"genen-rank{setup.rank}-"))
    results, outputs, epoch_seconds = [], [], []
    refit = None
    try:
        for split in setup.splits:
            trainer = DistFoldTrainer(setup, split, run_dir, scratch)
            results.append(trainer.fit())
            outputs.append(setup.full_forward(trainer.model, trainer.x))
            epoch_seconds += trainer.epoch_seconds
        if c.refit:
            epochs = int(np.median([r["best_epoch"] for r in results])) + 1
            everyone = np.arange(len(setup.nodes))
            split = Split(c.seed, len(setup.splits), Fold(everyone, everyone[:0], everyone[:0]), "refit")
            trainer = DistFoldTrainer(setup, split, run_dir, scratch)
            trainer.fit_epochs(epochs)
            refit = (epochs, setup.full_forward(trainer.model, trainer.x)[1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if setup.rank != 0:
        return None
    write_outputs(setup, run_dir, results, outputs, refit, time.perf_counter() - start)
    report = json.loads((run_dir / "metrics.json").read_text())
    report["distributed"] = {
        "world_size": setup.world, "num_parts": setup.info.num_parts, "partition_method": setup.info.meta["method"],
        "partitions": str(setup.info.root), "rank_batch_size": setup.rank_batch,
        "eval_fanouts": eval_fanouts or "all neighbours", "epochs_run": len(epoch_seconds),
        "epoch_seconds_mean": round(float(np.mean(epoch_seconds)), 4) if epoch_seconds else None,
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    return report


def configure(argv: list[str]) -> tuple[TrainConfig, argparse.Namespace, PartitionInfo]:
    """Parse and check the options before anything connects (a bad option fails fast)."""
    parser = build_parser("python -m genen_dgl.distributed.trainer", __doc__.split("\n\n")[0])
    parser.add_argument("--eval-fanouts", type=parse_ints,
                        help="fanouts per layer for validation/test inference (default: -1 = every neighbour, "
                             "the operator single-machine runs evaluate)")
    args = parser.parse_args(argv)
    if args.resume:
        raise InputError("--resume: distributed runs do not resume; start a new run")
    info = PartitionInfo.load(Path(required("DGL_CONF_PATH")))
    config = from_args(args)
    variant = info.meta["variant"]
    if args.graph and args.graph != variant:
        raise InputError(f"--graph {args.graph}: the partitions hold the {variant!r} graph", info.root)
    if config.sampler != "neighbor":
        raise InputError(f"--sampler {config.sampler}: distributed training samples neighbours only")
    config.graph, config.data = variant, info.meta["dataset"]
    config.task = info.task_name(config.task)
    config = config.resolved()
    if args.eval_fanouts is not None and len(args.eval_fanouts) != config.layers:
        raise InputError(f"--eval-fanouts {args.eval_fanouts}: expected one per layer ({config.layers})")
    config.out = str(run_dir_for(config))
    if (Path(config.out) / "fold0").exists():
        raise InputError("run directory already has results; choose another --out", config.out)
    return config, args, info


@cli
def main(argv: list[str] | None = None) -> int:
    config, args, info = configure(sys.argv[1:] if argv is None else argv)
    if config.threads:
        torch.set_num_threads(config.threads)
    connect()
    rank = tdist.get_rank()
    run_dir = Path(config.out)
    handler = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("genen_dgl").addHandler(handler)
    tdist.barrier()
    setup = prepare(config, info, args.eval_fanouts)
    log.info("rank %d of %d: %d partitions of %s (%s), %d labelled genes, %d per rank per epoch in batches of %d",
             rank, setup.world, info.num_parts, info.meta["dataset_name"], info.meta["variant"], len(setup.nodes),
             -(-len(setup.splits[0].fold.train) // setup.world), setup.rank_batch)
    report = train(setup, run_dir, args.eval_fanouts)
    disconnect()
    if report is not None:
        print(summary_line(report, f"{config.graph}/{config.model}, {config.folds}-fold on {setup.world} trainers",
                           run_dir), flush=True)
        logging.getLogger("genen_dgl").removeHandler(handler)
    return 0


def entry(run=None) -> None:
    """Run ``run`` (default: :func:`main`) as a trainer process. On failure exit at once,
    skipping DGL's atexit hooks: they wait for the other trainers, which the launcher
    stops only once this process is gone."""
    try:
        code = (run or main)()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if code:
        os._exit(code)
    sys.exit(0)


if __name__ == "__main__":
    entry()
