"""``python -m genen_dgl.partition``: split a Genen graph into partitions for DistGraph.

Partitions one graph variant with METIS (``dgl.distributed.partition_graph``: node
types balanced so every part gets its share of labelled genes, edges balanced) or at
random for comparison. Labels go into the graph's node data *before* partitioning, so
each server holds its genes' labels (DistTensors created at run time do not work with
several servers on one host)::

    gene/feat  go/feat                 input features
    gene/label_TASK                    class index (int64, -1 unlabelled) or value (float32, NaN)
    gene/labelled_TASK                 1 where the gene is labelled for TASK (int8)
    SRC/deg_out_REL  DST/deg_in_REL    each relation's whole-graph degrees, which the GCN
                                       normalisation of sampled blocks reads

Output folder::

    NAME.json  part0/ part1/ ...       DGL's partition config and parts (DGL_CONF_PATH)
    genen-partition.json               what the trainer needs: variant, tasks, files below
    mapping.pt                         {"node": {ntype: orig id of each shuffled id}, "edge": ...}
    labels/TASK.npz                    labelled genes in label-file order (the CV folds' order)
    gene_ids.txt                       gene symbol of each original gene node id
    partition-report.json              per-part counts, edge cut, wall time, peak RSS
    partition.log                      DGL's own progress output
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genen_dgl.atomic import atomic_dir, check_out
from genen_dgl.data.graph import GeneGraph, load_graph
from genen_dgl.schema import VARIANTS
from genen_dgl.data.labels import Labels
from genen_dgl.dgl_compat import dgl
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger(__name__)

META = "genen-partition.json"
REPORT = "partition-report.json"
MAPPING = "mapping.pt"  # tensors only: read with torch.load(weights_only=True)
OWNER = "genen_dgl.partition"  # the marker of a partition folder (genen_dgl.atomic)
METHODS = ("metis", "random")
FORMAT_VERSION = 2  # 2: degree node data


def label_field(task: str) -> str:
    return f"label_{task}"


def labelled_field(task: str) -> str:
    return f"labelled_{task}"


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------- preparing

def attach_labels(data: GeneGraph, tasks: list[str]) -> tuple[dict[str, tuple[np.ndarray, Labels]], torch.Tensor]:
    """Put each task's labels into ``gene`` node data; return the labels by task and
    the union mask of labelled genes (the nodes METIS balances)."""
    g = data.graph
    n = g.num_nodes("gene")
    any_labelled = torch.zeros(n, dtype=torch.bool)
    out = {}
    for task in tasks:
        nodes, labels = data.labels(task)
        if labels.kind == "multilabel":
            raise InputError(f"task {task!r} is multilabel: it trains on one machine only (python -m genen_dgl.train)")
        idx = torch.as_tensor(nodes)
        if labels.kind == "regression":
            y = torch.full((n,), float("nan"), dtype=torch.float32)
            y[idx] = torch.as_tensor(labels.values, dtype=torch.float32)
        else:
            y = torch.full((n,), -1, dtype=torch.int64)
            y[idx] = torch.as_tensor(labels.values, dtype=torch.int64)
        mask = torch.zeros(n, dtype=torch.int8)
        mask[idx] = 1
        g.nodes["gene"].data[label_field(task)] = y
        g.nodes["gene"].data[labelled_field(task)] = mask
        any_labelled[idx] = True
        out[task] = (nodes, labels)
    return out, any_labelled


def degree_fields(etype: tuple[str, str, str]) -> tuple[str, str]:
    """Node-data names of a relation's out-degrees (on its source type) and in-degrees."""
    return f"deg_out_{etype[1]}", f"deg_in_{etype[1]}"


def attach_degrees(graph) -> None:
    """Each relation's whole-graph out- and in-degrees as node data, so that trainers read
    them for the nodes of their sampled blocks (a DistGraph cannot count a relation's
    degrees; :func:`genen_dgl.sampling.blocks.graph_degrees` on one machine)."""
    for e in graph.canonical_etypes:
        out_name, in_name = degree_fields(e)
        graph.nodes[e[0]].data[out_name] = graph.out_degrees(etype=e)
        graph.nodes[e[2]].data[in_name] = graph.in_degrees(etype=e)


def balance_types(labelled: torch.Tensor) -> dict[str, torch.Tensor]:
    """``balance_ntypes`` for DGL: genes split into labelled / unlabelled (GO terms get a
    class of their own), so METIS spreads the training genes evenly. DGL wants the
    classes of a type numbered 0..k-1."""
    _, classes = torch.unique(labelled.to(torch.int64), return_inverse=True)
    return {"gene": classes}


# -------------------------------------------------------------------------- reporting

def part_assignment(part_meta: dict, mapping: dict[str, torch.Tensor], ntypes: list[str]) -> dict[str, np.ndarray]:
    """Partition id of every original node id, per node type."""
    out = {}
    for t in ntypes:
        ranges = part_meta["node_map"][t]
        counts = np.array([end - start for start, end in ranges], dtype=np.int64)
        shuffled_part = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        part = np.empty(len(shuffled_part), dtype=np.int32)
        part[mapping[t].numpy()] = shuffled_part
        out[t] = part
    return out


def partition_stats(graph, parts: dict[str, np.ndarray], num_parts: int, labelled: torch.Tensor) -> dict:
    """Per-part node / edge / labelled-gene counts, halo nodes, and the edge cut, from the
    node assignment. DGL assigns an edge to its destination's part; an edge is cut when
    its source lies in another part (it then reaches the part as a HALO node)."""
    nodes = {t: np.bincount(parts[t], minlength=num_parts).tolist() for t in graph.ntypes}
    edges, cut, halo_ids = {}, {}, [[] for _ in range(num_parts)]
    offset = {t: 0 for t in graph.ntypes}
    total = 0
    for t in graph.ntypes:
        offset[t] = total
        total += graph.num_nodes(t)
    for etype in graph.canonical_etypes:
        src, dst = graph.edges(etype=etype)
        ps, pd = parts[etype[0]][src.numpy()], parts[etype[2]][dst.numpy()]
        crossing = ps != pd
        key = ":".join(etype)
        edges[key] = np.bincount(pd, minlength=num_parts).tolist()
        cut[key] = np.bincount(pd[crossing], minlength=num_parts).tolist()
        global_src = src.numpy()[crossing] + offset[etype[0]]
        for p in range(num_parts):
            halo_ids[p].append(np.unique(global_src[pd[crossing] == p]))
        del src, dst, ps, pd, crossing, global_src
    num_edges = graph.num_edges()
    cut_edges = int(sum(sum(v) for v in cut.values()))
    per_part = []
    for p in range(num_parts):
        inner_edges = sum(v[p] for v in edges.values())
        per_part.append({
            "part": p,
            "nodes": {t: nodes[t][p] for t in graph.ntypes},
            "halo_nodes": int(len(np.unique(np.concatenate(halo_ids[p])))) if halo_ids[p] else 0,
            "edges": int(inner_edges),
            "cut_edges": int(sum(v[p] for v in cut.values())),
        })
    return {
        "parts": per_part,
        "edges_total": int(num_edges),
        "cut_edges": cut_edges,
        "edge_cut_ratio": cut_edges / num_edges if num_edges else 0.0,
        "edge_cut_ratio_by_relation": {
            k: (sum(cut[k]) / sum(edges[k]) if sum(edges[k]) else 0.0) for k in edges
        },
        "labelled_genes_per_part": np.bincount(parts["gene"][labelled.numpy()], minlength=num_parts).tolist(),
    }


def format_report(report: dict) -> str:
    """The report as a few lines of text."""
    rows = [
        f"{report['method']} partition of {report['dataset']} ({report['variant']}) into {report['num_parts']} parts "
        f"-> {report['out']}",
        f"  wall {report['seconds']['total']:.1f} s (load {report['seconds']['load']:.1f}, partition "
        f"{report['seconds']['partition']:.1f}, report {report['seconds']['report']:.1f}); "
        f"peak RSS {report['peak_rss_gb']:.2f} GB",
        f"  edge cut {report['cut_edges']:,} of {report['edges_total']:,} edges = {report['edge_cut_ratio']:.4f}",
    ]
    ntypes = list(report["parts"][0]["nodes"])
    rows.append("  part " + "".join(f"{t + ' nodes':>14}" for t in ntypes)
                + f"{'labelled':>10}{'halo nodes':>12}{'edges':>14}{'cut edges':>14}")
    for p, labelled in zip(report["parts"], report["labelled_genes_per_part"]):
        rows.append(f"  {p['part']:>4} " + "".join(f"{p['nodes'][t]:>14,}" for t in ntypes)
                    + f"{labelled:>10,}{p['halo_nodes']:>12,}{p['edges']:>14,}{p['cut_edges']:>14,}")
    return "\n".join(rows)


# ------------------------------------------------------------------------ partitioning

@dataclass
class PartitionRequest:
    data: str | Path
    out: str | Path
    num_parts: int
    graph: str = "go_ppi"
    method: str = "metis"
    name: str = "genen"
    tasks: list[str] | None = None  # default: every task of the dataset
    num_hops: int = 1

    def check(self) -> None:
        if self.num_parts < 1:
            raise InputError(f"num_parts = {self.num_parts}: expected at least 1")
        if self.method not in METHODS:
            raise InputError(f"method = {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.graph not in VARIANTS:
            raise InputError(f"graph = {self.graph!r}: expected one of {', '.join(VARIANTS)}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
            raise InputError(f"name = {self.name!r}: expected letters, digits and _ (it names shared memory)")
        if self.num_hops < 1:
            raise InputError(f"num_hops = {self.num_hops}: expected at least 1")


def partition(req: PartitionRequest) -> dict:
    """Partition the graph, write the output folder atomically, return the report."""
    req.check()
    check_out(req.out, OWNER, replace=True)
    start = time.perf_counter()
    data = load_graph(req.data, req.graph)
    nodes = data.graph.num_nodes()
    if req.num_parts > nodes:
        raise InputError(f"num_parts = {req.num_parts}: expected at most the graph's {nodes} nodes")
    tasks = req.tasks or list(data.spec.tasks)
    for t in tasks:
        data.spec.task(t)  # unknown task: InputError naming the dataset
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", t):
            raise InputError(f"task name {t!r}: expected letters, digits, '_', '.', '-' (it names node data)")
    labels, labelled = attach_labels(data, tasks)
    g = data.graph
    attach_degrees(g)
    loaded = time.perf_counter()
    log.info("%s", data)
    out = Path(req.out)
    with atomic_dir(out, OWNER) as tmp:
        with open(tmp / "partition.log", "w") as dgl_log, contextlib.redirect_stdout(dgl_log):
            nmap, emap = dgl.distributed.partition_graph(
                g, req.name, req.num_parts, str(tmp), num_hops=req.num_hops, part_method=req.method,
                balance_ntypes=balance_types(labelled) if req.method == "metis" else None,
                balance_edges=req.method == "metis", return_mapping=True, graph_formats=["csc"],
            )
        if not isinstance(nmap, dict):  # one node type: DGL returns bare tensors
            nmap, emap = {g.ntypes[0]: nmap}, {g.canonical_etypes[0]: emap}
        partitioned = time.perf_counter()
        part_meta = json.loads((tmp / f"{req.name}.json").read_text())
        torch.save({"node": nmap, "edge": emap}, tmp / MAPPING)
        (tmp / "labels").mkdir()
        for task, (nodes, lab) in labels.items():
            np.savez(tmp / "labels" / f"{task}.npz", nodes=nodes, genes=lab.genes.astype(str), values=lab.values,
                     kind=lab.kind, classes=np.array(lab.classes, dtype=str))
        (tmp / "gene_ids.txt").write_text("\n".join(data.gene_ids) + "\n")
        parts = part_assignment(part_meta, nmap, g.ntypes)
        stats = partition_stats(g, parts, req.num_parts, labelled)
        meta = {
            "format": FORMAT_VERSION, "graph_name": req.name, "part_config": f"{req.name}.json",
            "dataset": str(data.spec.path), "dataset_name": data.spec.name, "variant": req.graph,
            "method": req.method, "num_parts": req.num_parts, "num_hops": req.num_hops,
            "ntypes": g.ntypes, "canonical_etypes": [list(e) for e in g.canonical_etypes],
            "num_nodes": {t: g.num_nodes(t) for t in g.ntypes},
            "num_edges": {":".join(e): g.num_edges(e) for e in g.canonical_etypes},
            "feat_dim": int(g.nodes["gene"].data["feat"].shape[1]),
            "tasks": {t: {"kind": lab.kind, "classes": lab.classes, "labelled": int(len(nodes)),
                          "labels": f"labels/{t}.npz", "label_field": label_field(t),
                          "labelled_field": labelled_field(t)} for t, (nodes, lab) in labels.items()},
            "mapping": MAPPING, "gene_ids": "gene_ids.txt",
        }
        (tmp / META).write_text(json.dumps(meta, indent=1))
        end = time.perf_counter()
        report = {
            "dataset": str(data.spec.path), "variant": req.graph, "method": req.method,
            "num_parts": req.num_parts, "out": str(out), "graph_name": req.name,
            "nodes_total": {t: g.num_nodes(t) for t in g.ntypes},
            **stats,
            "seconds": {"load": round(loaded - start, 2), "partition": round(partitioned - loaded, 2),
                        "report": round(end - partitioned, 2), "total": round(end - start, 2)},
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }
        (tmp / REPORT).write_text(json.dumps(report, indent=1))
    return report


# ------------------------------------------------------------------ reading (trainers)

@dataclass
class PartitionInfo:
    """The ``genen-partition.json`` of a partition folder, with paths resolved."""

    root: Path
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> "PartitionInfo":
        """``path``: the partition folder, its ``genen-partition.json`` or DGL's ``NAME.json``."""
        path = Path(path)
        if not path.exists():
            raise InputError("not found; expected a partition folder (python -m genen_dgl.partition --out)", path)
        root = path if path.is_dir() else path.parent
        file = root / META
        if not file.exists():
            raise InputError(f"not a genen-dgl partition folder (no {META}); run python -m genen_dgl.partition", root)
        meta = json.loads(file.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise InputError(f"partition format {meta.get('format')}: expected {FORMAT_VERSION}; partition again", file)
        return cls(root.resolve(), meta)

    @property
    def graph_name(self) -> str:
        return self.meta["graph_name"]

    @property
    def part_config(self) -> Path:
        return self.root / self.meta["part_config"]

    @property
    def num_parts(self) -> int:
        return int(self.meta["num_parts"])

    @property
    def canonical_etypes(self) -> list[tuple[str, str, str]]:
        return [tuple(e) for e in self.meta["canonical_etypes"]]

    def task_name(self, task: str | None) -> str:
        tasks = self.meta["tasks"]
        if task is None:
            return next(iter(tasks))
        if task not in tasks:
            raise InputError(f"task {task!r} is not in the partitions (they hold {', '.join(tasks)}); "
                             "partition again with --task", self.root / META)
        return task

    def labels(self, task: str | None) -> tuple[np.ndarray, Labels]:
        """(original gene node ids, Labels) in label-file order, as ``GeneGraph.labels`` gives them."""
        info = self.meta["tasks"][self.task_name(task)]
        with np.load(self.root / info["labels"]) as z:
            return z["nodes"], Labels(z["genes"].astype(object), z["values"], str(z["kind"]),
                                      [str(c) for c in z["classes"]], self.root / info["labels"])

    def mapping(self) -> dict[str, dict]:
        """``node`` / ``edge``: original id of each shuffled (partition) id, per type; read
        with ``weights_only`` (a file holding anything but tensors is refused, not run)."""
        path = self.root / self.meta["mapping"]
        try:
            return torch.load(path, weights_only=True)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except Exception as err:  # pickle.UnpicklingError, or a damaged file
            raise InputError(f"not a tensors-only mapping ({type(err).__name__}; nothing in it was run); "
                             "partition again", path) from None

    def node_mapping(self) -> dict[str, torch.Tensor]:
        """Original id of each shuffled (partition) node id, per node type."""
        return self.mapping()["node"]

    def gene_ids(self) -> list[str]:
        return (self.root / self.meta["gene_ids"]).read_text().split("\n")[:-1]


# ----------------------------------------------------------------------------- the CLI

@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.partition", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_version(parser)
    parser.add_argument("--data", type=Path, help="dataset spec (dataset.yaml); default: the embedded sample")
    parser.add_argument("--graph", default="go_ppi", choices=VARIANTS, help="graph variant")
    parser.add_argument("--num-parts", type=int, required=True, help="partitions (= machines / servers)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (an earlier partition there is replaced; any other folder is refused)")
    parser.add_argument("--method", default="metis", choices=METHODS, help="node assignment")
    parser.add_argument("--name", default="genen", help="graph name (DistGraph name; names shared memory)")
    parser.add_argument("--task", action="append", help="task whose labels to store (repeatable; default all)")
    parser.add_argument("--num-hops", type=int, default=1, help="hops of HALO nodes kept in each part")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.data is None:
        from genen_dgl.data.sample import ensure_sample
        args.data = ensure_sample()
    report = partition(PartitionRequest(args.data, args.out, args.num_parts, args.graph, args.method,
                                        args.name, args.task, args.num_hops))
    print(format_report(report))
    print(f"report: {Path(args.out) / REPORT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
