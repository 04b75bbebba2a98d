"""A trainer module for ``tests/test_distributed.py`` (``--trainer-module dist_probe``, with
``tests/`` on PYTHONPATH): checks of the DistGraph backend that need running servers.

* partition-local seeds: for the first split's training genes and a few epochs, every
  rank's seeds are gathered; printed: per rank the share its own partition owns, whether
  the union is the fold's training genes, and every rank's step count (of ``len`` and of
  an actual epoch);
* layer-wise inference: one model (same seed on every rank) predicts every gene by
  :class:`LayerwisePredictor`, by the batched full-neighbour :class:`DistPredictor` and
  (rank 0) by the single-machine full-graph predictor on the original graph; printed:
  the largest absolute differences of outputs and embeddings.

Rank 0 prints one line ``probe: {json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch
import torch.distributed as tdist

from genen_dgl.config import TrainConfig
from genen_dgl.data.graph import load_graph
from genen_dgl.sampling.blocks import fixed_weights, to_message_block
from genen_dgl.distributed.backend import (
    DistBackend, DistPredictor, LayerwisePredictor, connect, disconnect,
)
from genen_dgl.distributed.env import required
from genen_dgl.distributed.train import entry
from genen_dgl.local import FullGraphPredictor
from genen_dgl.partition import PartitionInfo
from genen_dgl.schema import GENE
from genen_dgl.nn.build import new_model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="gcn,gat")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(sys.argv[1:])
    info = PartitionInfo.load(required("DGL_CONF_PATH"))
    config = TrainConfig(data=info.meta["dataset"], graph=info.meta["variant"], task=info.task_name(None),
                         hidden=32, layers=args.layers, batch_size=64, folds=2).resolved()
    connect()
    rank, world = tdist.get_rank(), tdist.get_world_size()
    data = DistBackend(config, info, None)
    report: dict = {"world": world}
    # partition-local seeds
    steps = data.steps(data.splits[0])
    want = set(steps.genes.tolist())
    for epoch in range(args.epochs):
        mine = steps.share(epoch)
        owned = float((data.owner[GENE][mine] == data.part).float().mean())
        n_steps = sum(1 for _ in steps.epoch(epoch))
        got = [None] * world
        tdist.all_gather_object(got, (mine.tolist(), owned, len(steps), n_steps))
        report[f"epoch{epoch}"] = {"owned": [g[1] for g in got], "len": [g[2] for g in got],
                                   "steps": [g[3] for g in got], "sizes": [len(g[0]) for g in got],
                                   "covers": set().union(*(g[0] for g in got)) == want,
                                   "only_train": set().union(*(g[0] for g in got)) <= want}
    report["fold_genes_per_part"] = torch.bincount(steps.owner, minlength=data.num_parts).tolist()
    # layer-wise inference against batched and full-graph prediction
    genes = np.arange(data.num_genes)
    original = load_graph(info.meta["dataset"], info.meta["variant"]).graph if rank == 0 else None
    for model_name in args.models.split(","):
        cfg = dataclasses.replace(config, model=model_name)
        data.config = cfg
        torch.manual_seed(0)
        model = new_model(cfg, data.graph, data.feats[GENE].shape[1], data.labels.width)
        lw = LayerwisePredictor(data, None).predict(model, genes)
        bt = DistPredictor(data, None).predict(model, genes)
        row = {"batched_out": float(np.abs(lw[0] - bt[0]).max()), "batched_emb": float(np.abs(lw[1] - bt[1]).max()),
               "scale_out": float(np.abs(lw[0]).max()), "scale_emb": float(np.abs(lw[1]).max())}
        if rank == 0:
            g = original
            block = to_message_block(g, fixed_weights(g, cfg.edge_weight))
            feats = {t: g.nodes[t].data["feat"] for t in g.ntypes}
            full = FullGraphPredictor(block, feats, data.labels.kind).predict(model, genes)
            row.update(full_out=float(np.abs(lw[0] - full[0]).max()), full_emb=float(np.abs(lw[1] - full[1]).max()))
        report[model_name] = row
    report["traffic"] = data.traffic.summary()
    disconnect()
    if rank == 0:
        print("probe: " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    entry(main)
