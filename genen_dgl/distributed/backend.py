"""The DistGraph backend: what cross-validation trains on when the graph is partitioned.

:class:`DistBackend` is the :class:`~genen_dgl.training.cross_validation.Backend` of a DGL DistGraph,
so the folds, model, loss, early stopping, checkpoints, ``--resume`` and outputs are the
single-machine trainer's; what differs is where steps and predictions come from:

* :class:`DistSteps`: each epoch the training genes are shuffled (same seed on every rank)
  and cut into one equal share per rank, padded by wrapping around, so every rank runs the
  same number of steps; DGL's distributed neighbour sampling (``DistNodeDataLoader`` +
  ``NeighborSampler``) draws the blocks, :func:`genen_dgl.sampling.blocks.to_message_block`
  converts them with whole-graph degrees (partition node data, fetched once); features,
  labels and edge weights are pulled from the servers; ``--batch-size`` is the global
  batch; gradients are averaged by ``DistributedDataParallel`` (gloo).
* :class:`DistPredictor`: validation and test infer over every neighbour (``--eval-fanouts``,
  default -1 per layer: the operator single-machine runs evaluate) on each rank's share of
  the genes, gathered on every rank, so all ranks take the same early-stopping decisions.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np
import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from genen_dgl.config import TrainConfig
from genen_dgl.confounds import dataset_confounds
from genen_dgl.data.graph import gene_info, load_full_graph, relation_warnings
from genen_dgl.data.spec import load_spec
from genen_dgl.device import pick_device
from genen_dgl.dgl_compat import dgl
from genen_dgl.distributed.env import required
from genen_dgl.errors import InputError
from genen_dgl.nn.build import new_model
from genen_dgl.nn.sparse import MessageBlock
from genen_dgl.partition import PartitionInfo, degree_fields
from genen_dgl.precision import autocast
from genen_dgl.sampling.blocks import Degrees, fixed_weights, parse_fanouts, to_message_block
from genen_dgl.schema import GENE
from genen_dgl.splits import Split, cut_splits, mask_features
from genen_dgl.training.cross_validation import RunContext
from genen_dgl.training.objective import scores
from genen_dgl.training.sources import Step, StepSource

TARGET = GENE


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
    return to_message_block(block, {e: weights[ge] for e, ge in names.items() if ge in weights},
                            degrees=degrees, names=names,
                            etypes=list(g.canonical_etypes))


def rank_share(ids: torch.Tensor, rank: int, world: int, seed: int) -> torch.Tensor:
    """Rank ``rank``'s share of ``ids`` after a seeded shuffle: ``ceil(n / world)`` ids on
    every rank, the last shares padded with ids from the start of the shuffled order."""
    n = len(ids)
    per = -(-n // world)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order.repeat(-(-per * world // n))[: per * world]
    return ids[order[rank * per:(rank + 1) * per]]


class DistBackend:
    """A DistGraph run's labels, splits, and the pulls from the servers. ``nodes`` are the
    labelled genes' original ids; the servers index by partition ("shuffled") ids."""

    def __init__(self, config: TrainConfig, info: PartitionInfo, eval_fanouts: list[int] | None):
        if config.hide_test_annotations:
            raise InputError("hide_test_annotations: not available on a DistGraph (its partitions keep every "
                             "gene-GO edge); train on one machine (python -m genen_dgl.train)")
        self.config, self.info, self.eval_fanouts = config, info, eval_fanouts
        self.graph = g = dgl.distributed.DistGraph(info.graph_name)
        self.rank, self.world = tdist.get_rank(), tdist.get_world_size()
        self.writes = self.rank == 0
        device = pick_device(config.device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
            torch.cuda.set_device(device)
        self.device = device
        task = info.meta["tasks"][config.task]
        self.nodes, self.labels = info.labels(config.task)
        self.splits = cut_splits(self.labels, config)
        self.mapping = info.node_mapping()  # shuffled id -> original id
        self.to_shuffled = {}
        for t, orig in self.mapping.items():
            inv = torch.empty_like(orig)
            inv[orig] = torch.arange(len(orig))
            self.to_shuffled[t] = inv
        self.num_genes = len(self.mapping[TARGET])
        self.label = g.nodes[TARGET].data[task["label_field"]]
        if self.rank == 0:  # the labels the servers hold are the labels the folds were cut from
            shuffled = self.to_shuffled[TARGET][torch.as_tensor(self.nodes)]
            flagged = g.nodes[TARGET].data[task["labelled_field"]][shuffled].numpy()
            if not (flagged == 1).all() or not np.allclose(self.label[shuffled].numpy(), self.labels.values):
                raise InputError(f"partition labels of {config.task} do not match; partition again", info.root)
        self.feats = {t: g.nodes[t].data["feat"] for t in g.ntypes}
        self.weights = fixed_weights(g, config.edge_weight)
        self.degrees = Degrees({e: tuple(g.nodes[t].data[name][torch.arange(g.num_nodes(t))]  # fetched whole, once
                                         for t, name in zip((e[0], e[2]), degree_fields(e))) for e in g.canonical_etypes})
        self.train_sampler = dgl.dataloading.NeighborSampler(parse_fanouts(config.fanouts, config.fanout_rel, g))
        self.eval_sampler = dgl.dataloading.NeighborSampler(parse_fanouts(eval_fanouts or [-1] * config.layers, {}, g))

    @property
    def rank_batch(self) -> int:
        return max(1, -(-self.config.batch_size // self.world))

    def keep(self, seed: int) -> dict[str, torch.Tensor] | None:
        """The masking study's keep-masks by shuffled id for ``seed`` (None without masking):
        the nodes :func:`mask_features` zeroes on one machine."""
        c = self.config
        if c.mask_rate <= 0:
            return None
        ones = {t: torch.ones(len(orig), 1) for t, orig in self.mapping.items()}
        masked = mask_features(ones, c.mask_rate, c.mask_nodes, seed)
        return {t: masked[t][self.mapping[t], 0] > 0 for t in masked}

    def model(self, split: Split) -> DistributedDataParallel:
        net = new_model(self.config, self.graph, self.feats[TARGET].shape[1], self.labels.width).to(self.device)
        return DistributedDataParallel(net, find_unused_parameters=True)

    def steps(self, split: Split) -> "DistSteps":
        return DistSteps(self, self.to_shuffled[TARGET][torch.as_tensor(self.nodes[split.fold.train])],
                         self.keep(split.seed))

    def predictor(self, split: Split) -> "DistPredictor":
        return DistPredictor(self, self.keep(split.seed))

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        tdist.all_reduce(values)
        return values

    def context(self) -> RunContext:
        """The dataset's whole graph the partitions were cut from (the baselines read it),
        and the distributed layout for metrics.json."""
        spec = load_spec(self.config.data)
        full = load_full_graph(spec)[0]
        genes = gene_info(spec, full, self.info.gene_ids())
        return RunContext(full, self.info.gene_ids(), genes, meta={
            "distributed": {"world_size": self.world, "num_parts": self.info.num_parts,
                            "partition_method": self.info.meta["method"], "partitions": str(self.info.root),
                            "rank_batch_size": self.rank_batch, "eval_fanouts": self.eval_fanouts or "all neighbours"},
            "confounds": dataset_confounds(self.config.task, self.labels, spec, full, genes, self.nodes),
            "warnings": relation_warnings(spec)})

    def batches(self, ids: torch.Tensor, sampler, batch_size: int, keep: dict | None):
        """(input features, message blocks, output gene ids) per minibatch of ``ids`` (shuffled ids)."""
        loader = dgl.dataloading.DistNodeDataLoader(self.graph, seeds_of(self.graph, ids), sampler,
                                                    batch_size=batch_size, shuffle=False, drop_last=False)
        for input_nodes, output_nodes, blocks in loader:
            mblocks = [message_block(b, self.graph, self.weights, self.degrees).to(self.device) for b in blocks]
            x = {}
            for t, n in as_dict(input_nodes).items():
                v = self.feats[t][n]
                x[t] = (v if keep is None else v * keep[t][n, None].to(v.dtype)).to(self.device)
            yield x, mblocks, as_dict(output_nodes)[TARGET]


class DistSteps(StepSource):
    """This rank's training steps: its share of the training genes each epoch."""

    def __init__(self, data: DistBackend, genes: torch.Tensor, keep: dict | None):
        self.data, self.genes, self.keep = data, genes, keep

    def __len__(self) -> int:
        return -(-(-(-len(self.genes) // self.data.world)) // self.data.rank_batch)

    def epoch(self, seed: int) -> Iterator[Step]:
        d = self.data
        mine = rank_share(self.genes, d.rank, d.world, seed)
        for x, blocks, out_ids in d.batches(mine, d.train_sampler, d.rank_batch, self.keep):
            yield Step(x, blocks, d.label[out_ids].to(d.device))


class DistPredictor:
    """Outputs and embeddings of any genes by inference over the DistGraph; each rank infers
    a share, all get all."""

    def __init__(self, data: DistBackend, keep: dict | None):
        self.data, self.keep = data, keep

    @torch.no_grad()
    def predict(self, model, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        module = getattr(model, "module", model)
        module.eval()
        ids = d.to_shuffled[TARGET][torch.as_tensor(genes)]
        mine = np.array_split(np.arange(len(ids)), d.world)[d.rank]
        dgl.seed(d.config.seed)  # the same inference whenever it is asked
        seen, outs, hids = [], [], []
        for x, blocks, out_ids in d.batches(ids[mine], d.eval_sampler, d.config.batch_size, self.keep):
            with autocast(d.config.precision, d.device):
                out, h = module(blocks, x, return_hidden=True)
            seen.append(out_ids)
            outs.append(scores(d.labels.kind, out).cpu())
            hids.append(h.float().cpu())
        part = (torch.cat(seen).numpy(), torch.cat(outs).numpy(), torch.cat(hids).numpy()) if seen else None
        parts = [None] * d.world
        tdist.all_gather_object(parts, part)  # a rank with no genes (more ranks than genes) sends None
        parts = [p for p in parts if p is not None]
        where = {int(n): i for i, n in enumerate(ids.tolist())}
        out = np.zeros((len(ids), parts[0][1].shape[1]), dtype=np.float32)
        emb = np.zeros((len(ids), parts[0][2].shape[1]), dtype=np.float32)
        for got, o, h in parts:
            rows = np.array([where[int(n)] for n in got], dtype=np.int64)
            out[rows], emb[rows] = o, h
        return out, emb
