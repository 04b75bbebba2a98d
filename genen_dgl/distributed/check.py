"""``python -m genen_dgl.distributed.check``: check a distributed setup end to end.

Run in place of the trainer::

    python -m genen_dgl.distributed.launch --parts DIR --local 2 --trainer-module genen_dgl.distributed.check

Every trainer takes its share of the labelled genes, runs full epochs of DGL's
distributed neighbour sampling on the heterograph (``DistNodeDataLoader`` +
``NeighborSampler``) and checks every sampled edge against the original graph (through
the partition mapping) and every pulled feature and label against the original values.
It loads the original graph, so the dataset files must be readable. Exit 0: all equal.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.distributed as tdist

from genen_dgl.config import parse_ints
from genen_dgl.data.graph import load_graph
from genen_dgl.dgl_compat import dgl
from genen_dgl.distributed.env import required
from genen_dgl.distributed.backend import as_dict, connect, disconnect, graph_etype, rank_share, seeds_of
from genen_dgl.distributed.train import entry
from genen_dgl.errors import cli
from genen_dgl.partition import PartitionInfo
from genen_dgl.provenance import add_version
from genen_dgl.schema import GENE


def original_ids(mapping: torch.Tensor, ids: torch.Tensor, what: str) -> torch.Tensor:
    """The original graph's ids of the partitioned graph's ``ids`` (``mapping``: one row per
    id); a ValueError naming the first id no partition holds, which only a corrupted sampler
    returns."""
    outside = ids >= len(mapping)
    if outside.any():
        raise ValueError(f"DGL sampled {what} id {int(ids[outside][0])}; the partitioned graph has "
                         f"{len(mapping)} (ids 0-{len(mapping) - 1})")
    return mapping[ids]


def check_batch(blocks, input_nodes, g, original, nmap, emap) -> tuple[int, int, int]:
    """(edges checked, feature rows checked, mismatches) of one sampled minibatch."""
    edges = rows = bad = 0
    for block in blocks:
        for etype in block.canonical_etypes:
            if block.num_edges(etype) == 0:
                continue
            ge = graph_etype(g, etype)
            u, v = block.edges(etype=etype)
            ou, ov = original.find_edges(original_ids(emap[ge], block.edges[etype].data[dgl.EID], f"{ge[1]} edge"),
                                         etype=ge)
            src = block.srcnodes[etype[0]].data[dgl.NID][u]
            dst = block.dstnodes[etype[2]].data[dgl.NID][v]
            bad += int((original_ids(nmap[ge[0]], src, f"{ge[0]} node") != ou).sum())
            bad += int((original_ids(nmap[ge[2]], dst, f"{ge[2]} node") != ov).sum())
            edges += len(u)
    for t, ids in input_nodes.items():
        known = original_ids(nmap[t], ids, f"{t} node")
        pulled = g.nodes[t].data["feat"][ids]
        bad += int((pulled != original.nodes[t].data["feat"][known]).any(1).sum())
        rows += len(ids)
    return edges, rows, bad


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.distributed.check", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--fanouts", type=parse_ints, default=[10, 10, 5], help="fanouts per layer")
    parser.add_argument("--batch-size", type=int, default=64, help="seed genes per minibatch and rank")
    parser.add_argument("--epochs", type=int, default=1, help="full passes over the labelled genes")
    parser.add_argument("--task", help="whose labelled genes are the seeds (default: the first task)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    info = PartitionInfo.load(required("DGL_CONF_PATH"))
    task = info.task_name(args.task)
    original = load_graph(info.meta["dataset"], info.meta["variant"]).graph
    connect()
    rank, world = tdist.get_rank(), tdist.get_world_size()
    g = dgl.distributed.DistGraph(info.graph_name)
    mapping = info.mapping()
    nmap, emap = mapping["node"], mapping["edge"]
    nodes, labels = info.labels(task)
    inv = torch.empty_like(nmap[GENE])
    inv[nmap[GENE]] = torch.arange(len(inv))
    seeds_all = inv[torch.as_tensor(nodes)]
    label = g.nodes[GENE].data[info.meta["tasks"][task]["label_field"]]
    counts = torch.zeros(5, dtype=torch.int64)  # batches, edges, feature rows, label rows, mismatches
    sampler = dgl.dataloading.NeighborSampler(args.fanouts)
    for epoch in range(args.epochs):
        seeds = rank_share(seeds_all, rank, world, epoch)
        loader = dgl.dataloading.DistNodeDataLoader(g, seeds_of(g, seeds), sampler, batch_size=args.batch_size,
                                                    shuffle=True)
        for input_nodes, output_nodes, blocks in loader:
            edges, rows, bad = check_batch(blocks, as_dict(input_nodes), g, original, nmap, emap)
            out = as_dict(output_nodes)[GENE]
            order = torch.argsort(seeds_all)
            want = torch.as_tensor(labels.values)[order][torch.searchsorted(seeds_all[order], out)]
            bad += int((label[out] != want).sum())
            counts += torch.tensor([1, edges, rows, len(out), bad])
        etypes = sorted({graph_etype(g, e)[1] for e in blocks[0].canonical_etypes})
        print(f"check rank {rank}: epoch {epoch}: {int(counts[0])} batches so far; relations sampled: "
              f"{', '.join(etypes)}", flush=True)
    total = counts.clone()
    tdist.all_reduce(total)
    disconnect()
    if rank == 0:
        print(f"check: {world} trainers, {info.num_parts} partitions: {int(total[0])} batches, {int(total[1])} sampled "
              f"edges, {int(total[2])} feature rows, {int(total[3])} labels checked; {int(total[4])} mismatches",
              flush=True)
    return 0 if int(total[4]) == 0 else 1


if __name__ == "__main__":
    entry(main)
