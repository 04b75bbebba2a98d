"""``python -m genen_dgl.distributed.train``: cross-validated training on a DGL DistGraph.

Started by :mod:`genen_dgl.distributed.launch` (which sets DGL's environment), once per trainer
rank. Takes the options of ``python -m genen_dgl.train``; the graph variant and dataset
are the partitions' (``DGL_CONF_PATH``). The DistGraph backend is
:mod:`genen_dgl.distributed.backend`. Rank 0 writes the run directory (checkpoints
included; every rank reads them to resume) and computes the baselines from the dataset
the partitions were cut from.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as tdist

from genen_dgl.config import TrainConfig, build_parser, given, parse_ints
from genen_dgl.data.spec import load_spec
from genen_dgl.device import pick_device
from genen_dgl.dgl_compat import dgl
from genen_dgl.distributed.backend import PREDICT, SEEDS_FROM, DistBackend, connect, disconnect
from genen_dgl.distributed.env import required
from genen_dgl.errors import InputError, cli
from genen_dgl.nn.build import check_memory
from genen_dgl.partition import PartitionInfo
from genen_dgl.outputs import summary_line
from genen_dgl.rundir import RunDir, default_run_dir
from genen_dgl.splits import check_splits
from genen_dgl.training.cross_validation import run_cross_validation
from genen_dgl.training.runtime import apply_runtime

log = logging.getLogger("genen_dgl.distributed.train")


def configure(argv: list[str]) -> tuple[TrainConfig, argparse.Namespace, PartitionInfo]:
    """Parse and check the options before anything connects (a bad option fails fast)."""
    parser = build_parser("python -m genen_dgl.distributed.train", __doc__.split("\n\n")[0])
    parser.add_argument("--eval-fanouts", type=parse_ints,
                        help="fanouts per layer for validation/test inference (default: -1 = every neighbour, "
                             "the operator single-machine runs evaluate)")
    parser.add_argument("--seeds-from", choices=SEEDS_FROM, default="partition",
                        help="each trainer's training genes: those its own partition owns (default), or a global "
                             "shuffle cut into equal shares (the behaviour before issue 26, for comparison)")
    parser.add_argument("--predict", choices=PREDICT, default="auto",
                        help="inference: layerwise (each layer once for every node, over DistTensors), batched "
                             "(minibatches over --eval-fanouts, the behaviour before issue 26), or auto (default: "
                             "layer-wise for every gene after a split, batched for validation and test)")
    args = parser.parse_args(argv)
    info = PartitionInfo.load(Path(required("DGL_CONF_PATH")))
    requested = given(args)
    config = TrainConfig(**requested)
    variant = info.meta["variant"]
    if args.graph and args.graph != variant:
        raise InputError(f"--graph {args.graph}: the partitions hold the {variant!r} graph", info.root)
    if config.sampler != "neighbor":
        raise InputError(f"--sampler {config.sampler}: distributed training samples neighbours only")
    for name in ("node_embeddings", "annotation_residual", "correct_smooth"):
        if getattr(config, name) not in ("none", False):
            raise InputError(f"--{name.replace('_', '-')}: not in distributed training yet (one machine only)")
    config = dataclasses.replace(config, graph=variant, data=info.meta["dataset"],
                                 task=info.task_name(config.task)).resolved()
    if args.eval_fanouts is not None and len(args.eval_fanouts) != config.layers:
        raise InputError(f"--eval-fanouts {args.eval_fanouts}: expected one per layer ({config.layers})")
    labels = info.labels(config.task)[1]
    check_splits(labels, config)
    skeleton = dgl.heterograph({tuple(e): (torch.zeros(0, dtype=torch.int64),) * 2 for e in info.canonical_etypes},
                               num_nodes_dict=info.meta["num_nodes"])  # what the model's size depends on
    check_memory(config, skeleton, info.meta["feat_dim"], labels.width, pick_device(config.device))
    run_dir = RunDir(config.out or default_run_dir(config, info.meta["dataset_name"], config.task))
    if args.resume:
        config = run_dir.resume({k: v for k, v in requested.items() if k not in ("graph", "data")})
    else:
        config = dataclasses.replace(config, out=str(run_dir.path))
        run_dir.check_new()  # every rank, before connecting: a refused --out stops the whole run at once
    return config, args, info


@cli
def main(argv: list[str] | None = None) -> int:
    config, args, info = configure(sys.argv[1:] if argv is None else argv)
    apply_runtime(config)
    start = time.perf_counter()
    connect()
    rank = tdist.get_rank()
    run_dir = RunDir(config.out)
    if rank == 0 and not args.resume:
        run_dir.start(config, load_spec(config.data))
    tdist.barrier()
    with run_dir.logging() if rank == 0 else contextlib.nullcontext():
        backend = DistBackend(config, info, args.eval_fanouts, seeds_from=args.seeds_from, predict=args.predict)
        log.info("rank %d of %d: %d partitions of %s (%s), %d labelled genes, %d per rank per epoch in batches of %d",
                 rank, backend.world, info.num_parts, info.meta["dataset_name"], info.meta["variant"],
                 len(backend.nodes), -(-len(backend.splits[0].fold.train) // backend.world), backend.rank_batch)
        report = run_cross_validation(backend, run_dir.path, resume=args.resume, started=start)
    disconnect()
    if report is not None:
        print(summary_line(report, f"{config.graph}/{config.model}, {config.folds}-fold on {backend.world} trainers",
                           run_dir.path), flush=True)
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
