"""The DistGraph backend: what cross-validation trains on when the graph is partitioned.

:class:`DistBackend` is the :class:`~genen_dgl.training.cross_validation.Backend` of a DGL DistGraph,
so the folds, model, loss, early stopping, checkpoints, ``--resume`` and outputs are the
single-machine trainer's; what differs is where steps and predictions come from:

* :class:`DistSteps`: each epoch every rank trains on the fold's training genes its own
  partition owns (:func:`partition_shares`: a seeded shuffle, the same on every rank, each
  partition's genes dealt to its trainers, a rank's surplus over ``ceil(n / world)`` passed
  to the ranks short of it, the rest padded by wrapping around), so every rank runs the same
  number of steps and the union is every training gene; ``--seeds-from global`` restores
  the global shuffle cut into shares (:func:`rank_share`). DGL's distributed neighbour
  sampling (``DistNodeDataLoader`` + ``NeighborSampler``) draws the blocks,
  :func:`genen_dgl.sampling.blocks.to_message_block` converts them with whole-graph degrees
  (partition node data, fetched once); features, labels and edge weights are pulled from
  the servers; ``--batch-size`` is the global batch; gradients are averaged by
  ``DistributedDataParallel`` (gloo).
* Prediction (:class:`AutoPredictor`): every gene after a split by layer-wise inference
  (:class:`LayerwisePredictor`: each layer once for every node over all its neighbours,
  each rank its partition's nodes, hidden outputs in DistTensors), validation and test
  by :class:`DistPredictor`, minibatches over every neighbour
  (``--eval-fanouts``, default -1 per layer) on each rank's share of the genes; either is
  the full-graph operator single-machine runs evaluate, gathered on every rank, so all
  ranks take the same early-stopping decisions. ``--predict layerwise|batched`` forces one.
"""

from __future__ import annotations

import logging
import os
import time
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



def as_dict(nodes, ntype: str = GENE) -> dict[str, torch.Tensor]:
    """DGL hands bare tensors back on a graph with one node type."""
    return nodes if isinstance(nodes, dict) else {ntype: nodes}


def seeds_of(g, ids: torch.Tensor):
    """Seed nodes for DGL's samplers: by type on a heterograph, a bare tensor on a graph
    with one node and edge type (DGL keeps those homogeneous)."""
    return {GENE: ids} if len(g.ntypes) > 1 or len(g.canonical_etypes) > 1 else ids


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


def rank_partition(rank: int, world: int, num_parts: int) -> int:
    """The partition trainer ``rank`` runs beside: the launcher puts ``world / num_parts``
    trainers on each logical machine, ranks ``i*T .. i*T+T-1`` on machine (= partition) ``i``."""
    return rank * num_parts // world


def partition_shares(ids: torch.Tensor, owner: torch.Tensor, world: int, num_parts: int,
                     seed: int) -> list[torch.Tensor]:
    """Every rank's seeds for one epoch, each rank taking the ids its own partition owns
    (``owner``: each id's partition), ``ceil(n / world)`` ids per rank.

    After a seeded shuffle (the same on every rank, so every rank computes the same
    shares), each partition's ids are dealt round-robin to its ``world / num_parts``
    trainers. A rank that got more than ``ceil(n / world)`` passes its surplus to the ranks
    that got fewer (in rank order): those few seeds are the only ones sampled away from
    their partition; METIS's ``balance_ntypes`` keeps them few. Ranks still short (``n`` not
    a multiple of ``world``) wrap around their own list, as :func:`rank_share` pads. So the
    union over ranks is every id each epoch, and every rank runs the same number of steps."""
    n = len(ids)
    per = -(-n // world)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    ids, owner = ids[order], owner[order]
    trainers = world // num_parts
    owner_rank = torch.empty(n, dtype=torch.int64)
    for p in range(num_parts):
        where = (owner == p).nonzero().squeeze(1)
        owner_rank[where] = p * trainers + torch.arange(len(where)) % trainers
    lists = [ids[owner_rank == r] for r in range(world)]
    surplus = torch.cat([mine[per:] for mine in lists])
    shares, taken = [], 0
    for mine in lists:
        mine = mine[:per]
        extra = surplus[taken: taken + per - len(mine)]
        taken += len(extra)
        mine = torch.cat([mine, extra])
        if len(mine) < per:  # wrap around (own ids, else the whole shuffled order)
            source = mine if len(mine) else ids
            mine = torch.cat([mine, source.repeat(-(-(per - len(mine)) // len(source)))[: per - len(mine)]])
        shares.append(mine[torch.randperm(per, generator=gen)])  # surplus seeds not all in the last batch
    return shares


SEEDS_FROM = ("partition", "global")
PREDICT = ("auto", "layerwise", "batched")


class Traffic:
    """What this rank's sampling read, for the locality benchmark: input nodes of sampled
    minibatches (and how many its own partition owns), the bytes of input features pulled
    from other partitions, and wall time of training epochs and predictions."""

    def __init__(self):
        self.counts: dict[str, float] = {}
        self.predict_all_s: list[float] = []

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def summary(self) -> dict:
        return {**self.counts, "predict_all_s": self.predict_all_s}


class DistBackend:
    """A DistGraph run's labels, splits, and the pulls from the servers. ``nodes`` are the
    labelled genes' original ids; the servers index by partition ("shuffled") ids.
    ``seeds_from``: ``partition`` (each rank trains on the training genes its partition
    owns, :func:`partition_shares`) or ``global`` (a seeded global shuffle, :func:`rank_share`:
    the behaviour before issue 26). ``predict``: how every gene is predicted, ``layerwise``
    (:class:`LayerwisePredictor`), ``batched`` (:class:`DistPredictor` over all neighbours),
    or ``auto``: layer-wise for at least half the genes (every gene after a split), batched
    for fewer (validation and test)."""

    def __init__(self, config: TrainConfig, info: PartitionInfo, eval_fanouts: list[int] | None,
                 seeds_from: str = "partition", predict: str = "auto"):
        if config.hide_test_annotations:
            raise InputError("hide_test_annotations: not available on a DistGraph (its partitions keep every "
                             "gene-GO edge); train on one machine (python -m genen_dgl.train)")
        if seeds_from not in SEEDS_FROM or predict not in PREDICT:
            raise InputError(f"seeds_from {seeds_from!r} / predict {predict!r}: expected one of {SEEDS_FROM} / "
                             f"{PREDICT}")
        self.config, self.info = config, info
        self.seeds_from, self.predict_mode, self.eval_fanouts = seeds_from, predict, eval_fanouts
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
        self.num_genes = len(self.mapping[GENE])
        self.label = g.nodes[GENE].data[task["label_field"]]
        if self.rank == 0:  # the labels the servers hold are the labels the folds were cut from
            shuffled = self.to_shuffled[GENE][torch.as_tensor(self.nodes)]
            flagged = g.nodes[GENE].data[task["labelled_field"]][shuffled].numpy()
            if not (flagged == 1).all() or not np.allclose(self.label[shuffled].numpy(), self.labels.values):
                raise InputError(f"partition labels of {config.task} do not match; partition again", info.root)
        self.feats = {t: g.nodes[t].data["feat"] for t in g.ntypes}
        self.weights = fixed_weights(g, config.edge_weight)
        self.degrees = Degrees({e: tuple(g.nodes[t].data[name][torch.arange(g.num_nodes(t))]  # fetched whole, once
                                         for t, name in zip((e[0], e[2]), degree_fields(e))) for e in g.canonical_etypes})
        self.train_sampler = dgl.dataloading.NeighborSampler(parse_fanouts(config.fanouts, config.fanout_rel, g))
        self.eval_sampler = dgl.dataloading.NeighborSampler(parse_fanouts(eval_fanouts or [-1] * config.layers, {}, g))
        self.full_sampler = dgl.dataloading.NeighborSampler([-1])  # one layer, every neighbour
        # which partition owns each node (shuffled ids: every partition holds a range per type)
        self.num_parts = info.num_parts
        self.part = rank_partition(self.rank, self.world, self.num_parts)
        book = g.get_partition_book()
        self.owner = {t: book.nid2partid(torch.arange(g.num_nodes(t)), t) for t in g.ntypes}
        trainers = self.world // self.num_parts
        # the nodes this rank computes in layer-wise inference: its partition's, split among its trainers
        self.own_nodes = {t: torch.tensor_split((o == self.part).nonzero().squeeze(1), trainers)[self.rank % trainers]
                          for t, o in self.owner.items()}
        self.first_rows = {t: torch.stack([(o == p).nonzero()[0, 0] for p in o.unique()]) for t, o in self.owner.items()}
        self.traffic = Traffic()
        self._buffers: dict[tuple, object] = {}

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
        net = new_model(self.config, self.graph, self.feats[GENE].shape[1], self.labels.width).to(self.device)
        return DistributedDataParallel(net, find_unused_parameters=True)

    def steps(self, split: Split) -> "DistSteps":
        return DistSteps(self, self.to_shuffled[GENE][torch.as_tensor(self.nodes[split.fold.train])],
                         self.keep(split.seed))

    def predictor(self, split: Split) -> "AutoPredictor":
        keep = self.keep(split.seed)
        return AutoPredictor(self, DistPredictor(self, keep), LayerwisePredictor(self, keep))

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        tdist.all_reduce(values)
        return values

    def context(self) -> RunContext | None:
        """Every rank's traffic counters, gathered (all ranks call this); on rank 0, the
        dataset's whole graph the partitions were cut from (the baselines read it) and the
        distributed layout for metrics.json."""
        traffic = [None] * self.world
        tdist.all_gather_object(traffic, self.traffic.summary())  # per rank: sampled inputs, pulls, times
        if not self.writes:
            return None
        spec = load_spec(self.config.data)
        full = load_full_graph(spec)[0]
        genes = gene_info(spec, full, self.info.gene_ids())
        return RunContext(full, self.info.gene_ids(), genes, meta={
            "distributed": {"world_size": self.world, "num_parts": self.info.num_parts,
                            "partition_method": self.info.meta["method"], "partitions": str(self.info.root),
                            "rank_batch_size": self.rank_batch, "eval_fanouts": self.eval_fanouts or "all neighbours",
                            "seeds_from": self.seeds_from, "predict": self.predict_mode, "per_rank": traffic},
            "confounds": dataset_confounds(self.config.task, self.labels, spec, full, genes, self.nodes),
            "warnings": relation_warnings(spec)})

    def count(self, input_nodes: dict[str, torch.Tensor], kind: str, feats: dict) -> None:
        """Add a minibatch's input nodes to :attr:`traffic`: how many, how many this rank's
        partition owns, and the feature bytes pulled from the others."""
        total = local = remote_bytes = 0
        for t, n in input_nodes.items():
            mine = int((self.owner[t][n] == self.part).sum())
            total, local = total + len(n), local + mine
            f = feats[t]
            remote_bytes += (len(n) - mine) * int(np.prod(f.shape[1:])) * f.dtype.itemsize
        self.traffic.add(**{f"{kind}_input_nodes": total, f"{kind}_local_input_nodes": local,
                            f"{kind}_remote_feature_bytes": remote_bytes})

    def batches(self, ids, sampler, batch_size: int, keep: dict | None, kind: str | None = None,
                feats: dict | None = None):
        """(input features, message blocks, output node ids by type) per minibatch of ``ids``
        (shuffled ids: a tensor of genes, or a dict by node type); ``feats``: the input rows to
        read (default: the features); ``kind``: count the inputs in :attr:`traffic` under it."""
        feats = self.feats if feats is None else feats
        seeds = ids if isinstance(ids, dict) else seeds_of(self.graph, ids)
        loader = dgl.dataloading.DistNodeDataLoader(self.graph, seeds, sampler,
                                                    batch_size=batch_size, shuffle=False, drop_last=False)
        for input_nodes, output_nodes, blocks in loader:
            input_nodes = as_dict(input_nodes)
            if kind is not None:
                self.count(input_nodes, kind, feats)
            mblocks = [message_block(b, self.graph, self.weights, self.degrees).to(self.device) for b in blocks]
            x = {}
            for t, n in input_nodes.items():
                v = feats[t][n]
                x[t] = (v if keep is None else v * keep[t][n, None].to(v.dtype)).to(self.device)
            yield x, mblocks, as_dict(output_nodes)

    def buffer(self, slot: int, t: str, width: int):
        """A DistTensor ``(num_nodes(t), width)`` for a layer's outputs (``slot`` 0/1: layers
        alternate), made once per run, on every server (:func:`dist_tensor`)."""
        key = (slot, t, width)
        if key not in self._buffers:
            self._buffers[key] = dist_tensor(self.graph, f"genen_layer{slot}_{t}_{width}", t, width, self.owner[t])
        return self._buffers[key]


def dist_tensor(g, name: str, ntype: str, width: int, owner: torch.Tensor):
    """A float32 ``dgl.distributed.DistTensor`` of ``ntype`` rows, made known to *every*
    graph server. DGL asks only the servers of the client's own machine to make a new
    tensor; in a ``--local`` run (or several machines on one host) every trainer counts as
    the host's first machine, so the other servers would never hear of it and the first
    push to them fails ("KVServer cannot find partition policy"). Each trainer therefore
    sends the same request to the remaining servers too, with their partition's row count
    (a server ignores a request for a tensor it holds). Persistent: kept until the servers stop."""
    kvstore, rpc = dgl.distributed.kvstore, dgl.distributed.rpc
    policy = g.get_node_partition_policy(ntype)
    tensor = dgl.distributed.DistTensor((g.num_nodes(ntype), width), torch.float32, name=name,
                                        part_policy=policy, persistent=True)
    client = kvstore.get_kvstore()
    group = client._group_count
    sizes = torch.bincount(owner, minlength=int(owner.max()) + 1 if len(owner) else 1)
    asked = 0
    for p, size in enumerate(sizes.tolist()):
        if p == policy.part_id:
            continue
        request = kvstore.InitDataRequest(tensor.kvstore_key, (size, width), "float32", policy.policy_str,
                                          dgl.distributed.dist_tensor._default_init_data)
        for n in range(group):
            rpc.send_request(p * group + n, request)
            asked += 1
    for _ in range(asked):
        assert rpc.recv_response().msg == kvstore.INIT_MSG
    tdist.barrier()  # every server holds it before anyone pushes
    return tensor


class DistSteps(StepSource):
    """This rank's training steps: its share of the training genes each epoch, from its own
    partition (:func:`partition_shares`) or a global shuffle (:func:`rank_share`)."""

    def __init__(self, data: DistBackend, genes: torch.Tensor, keep: dict | None):
        self.data, self.genes, self.keep = data, genes, keep
        self.owner = data.owner[GENE][genes]

    def __len__(self) -> int:
        return -(-(-(-len(self.genes) // self.data.world)) // self.data.rank_batch)

    def share(self, seed: int) -> torch.Tensor:
        d = self.data
        if d.seeds_from == "global":
            return rank_share(self.genes, d.rank, d.world, seed)
        return partition_shares(self.genes, self.owner, d.world, d.num_parts, seed)[d.rank]

    def epoch(self, seed: int) -> Iterator[Step]:
        d = self.data
        mine = self.share(seed)
        d.traffic.add(epochs=1, seeds=len(mine), local_seeds=int((d.owner[GENE][mine] == d.part).sum()))
        start = time.perf_counter()
        for x, blocks, out_ids in d.batches(mine, d.train_sampler, d.rank_batch, self.keep, kind="train"):
            out_ids = out_ids[GENE]
            yield Step(x, blocks, d.label[out_ids].to(d.device))
        d.traffic.add(train_s=time.perf_counter() - start)  # sampling, pulls and the steps themselves


def gather_rows(d: DistBackend, genes: np.ndarray, ids: torch.Tensor, part) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (shuffled gene ids, outputs, embeddings) gathered on every rank, as rows
    of ``genes`` (original ids; ``ids`` their shuffled ids). A rank with nothing sends None."""
    parts = [None] * d.world
    tdist.all_gather_object(parts, part)
    parts = [p for p in parts if p is not None]
    where = torch.full((d.num_genes,), -1, dtype=torch.int64)
    where[ids] = torch.arange(len(ids))
    out = np.zeros((len(ids), parts[0][1].shape[1]), dtype=np.float32)
    emb = np.zeros((len(ids), parts[0][2].shape[1]), dtype=np.float32)
    for got, o, h in parts:
        rows = where[torch.as_tensor(got)]
        take = rows >= 0
        out[rows[take].numpy()], emb[rows[take].numpy()] = o[take.numpy()], h[take.numpy()]
    return out, emb


class _Inference:
    """A predictor over the DistGraph, with the masking study's keep-masks (None: none)."""

    def __init__(self, data: DistBackend, keep: dict | None):
        self.data, self.keep = data, keep

    @staticmethod
    def unwrapped(model) -> torch.nn.Module:
        """The model inside DistributedDataParallel, in eval mode."""
        module = getattr(model, "module", model)
        module.eval()
        return module


class DistPredictor(_Inference):
    """Outputs and embeddings of any genes by minibatch inference over the DistGraph
    (``--eval-fanouts``, default every neighbour through every layer); each rank infers a
    share, all get all."""

    @torch.no_grad()
    def predict(self, model, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, module = self.data, self.unwrapped(model)
        ids = d.to_shuffled[GENE][torch.as_tensor(genes)]
        mine = np.array_split(np.arange(len(ids)), d.world)[d.rank]
        dgl.seed(d.config.seed)  # the same inference whenever it is asked
        seen, outs, hids = [], [], []
        for x, blocks, out_ids in d.batches(ids[mine], d.eval_sampler, d.config.batch_size, self.keep):
            with autocast(d.config.precision, d.device):
                out, h = module(blocks, x, return_hidden=True)
            seen.append(out_ids[GENE])
            outs.append(scores(d.labels.kind, out).cpu())
            hids.append(h.float().cpu())
        part = (torch.cat(seen).numpy(), torch.cat(outs).numpy(), torch.cat(hids).numpy()) if seen else None
        return gather_rows(d, genes, ids, part)


class LayerwisePredictor(_Inference):
    """Outputs and embeddings of genes by layer-wise inference, as DGL's distributed
    GraphSAGE example: layer ``i`` is computed once for every node over all its neighbours
    (one-hop blocks, whole-graph GCN degrees: the full-graph operator), each rank computing
    the nodes its partition owns; hidden outputs go to DistTensors (two, alternating) that
    the next layer's neighbourhoods read from every partition; the output layer runs on the
    genes only. Costs ``layers`` passes over the graph's edges, whatever the number of genes."""

    @torch.no_grad()
    def predict(self, model, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, module = self.data, self.unwrapped(model)
        layers = module.num_layers
        h = d.feats
        seen, outs = [], []
        emb = {}  # shuffled gene id -> embedding rows, from the last hidden layer
        for i in range(layers):
            last = i == layers - 1
            width = None if last else module.layers[i + 1].weight.shape[1]
            out_h = {} if last else {t: d.buffer(i % 2, t, width) for t in d.graph.ntypes}
            # one node type per loader: DGL's distributed sampler got some GO rows of minibatches
            # mixing genes and GO terms wrong (seen on the sample dataset: 5 of 239, partition 1)
            batches = (batch for t in ([GENE] if last else d.graph.ntypes) for batch in d.batches(
                d.own_nodes[t] if len(d.graph.ntypes) == 1 else {t: d.own_nodes[t]}, d.full_sampler,
                d.config.batch_size, self.keep if i == 0 else None, kind="layerwise", feats=h))
            for x, blocks, out_nodes in batches:
                block = blocks[0]
                with autocast(d.config.precision, d.device):
                    y, pre = module.apply_layer(i, block, torch.cat([x[t] for t in block.ntypes]))
                for t, n in out_nodes.items():
                    rows = slice(block.dst_off[t], block.dst_off[t] + block.num_dst[t])
                    if last:
                        seen.append(n)
                        outs.append(scores(d.labels.kind, y[rows]).cpu())
                    else:
                        out_h[t][n] = y[rows].float().cpu()
                        if i == layers - 2 and t == GENE:
                            emb[i] = emb.get(i, []) + [(n, pre[rows].float().cpu())]
            if last and layers == 1:  # the embedding of a one-layer model is its input
                emb[0] = [(n, h[GENE][n] if self.keep is None else h[GENE][n] * self.keep[GENE][n, None])
                          for n in seen]
            if not last:
                for t, tensor in out_h.items():  # pushes are one-way messages: a pull from the same
                    tensor[d.first_rows[t]]      # servers returns once they handled this rank's pushes
                tdist.barrier()  # then every rank's layer i is on the servers before anyone reads it
                h = out_h
        hid_of = {}
        for n, rows in emb.get(layers - 2 if layers > 1 else 0, []):  # none: this rank owns no gene
            hid_of.update(zip(n.tolist(), rows))
        part = None
        if seen:
            got = torch.cat(seen)
            part = (got.numpy(), torch.cat(outs).numpy(), torch.stack([hid_of[int(v)] for v in got]).numpy())
        ids = d.to_shuffled[GENE][torch.as_tensor(genes)]
        return gather_rows(d, genes, ids, part)


class AutoPredictor:
    """The backend's ``predict`` mode: ``layerwise`` / ``batched`` for every call, or ``auto``:
    layer-wise when asked for at least half the genes (every gene, after a split), else
    batched (validation and test). Measured on the paper-scale sample (docs/distributed.md):
    one layer-wise pass took 8 s, minibatches over a 1,734-gene validation fold 4.8 s, over
    every gene 42 s. Every rank gets the same genes, so all choose alike."""

    def __init__(self, data: DistBackend, batched: DistPredictor, layerwise: LayerwisePredictor):
        self.data, self.batched, self.layerwise = data, batched, layerwise

    def predict(self, model, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        mode = d.predict_mode
        if mode == "auto":  # a layer-wise pass costs the same for any genes; minibatches grow with them
            mode = "layerwise" if 2 * len(genes) >= d.num_genes else "batched"
        start = time.perf_counter()
        result = (self.layerwise if mode == "layerwise" else self.batched).predict(model, genes)
        if len(genes) == d.num_genes:
            d.traffic.predict_all_s.append(time.perf_counter() - start)
        else:
            d.traffic.add(predict_eval_s=time.perf_counter() - start, predict_eval_calls=1)
        return result
