"""``python -m genen_dgl.train``: cross-validated GCN/GAT training on a Genen graph.

With no ``--data`` it trains on the embedded sample dataset (generated on first use).
``--labels FILE`` trains a label file of one's own as a task of the dataset.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from genen_dgl.config import TrainConfig, build_parser, given
from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import run_spec
from genen_dgl.errors import cli
from genen_dgl.local import LocalBackend
from genen_dgl.outputs import summary_line
from genen_dgl.rundir import RunDir, collect_log, default_run_dir
from genen_dgl.training.cross_validation import Interrupted, run_cross_validation
from genen_dgl.training.runtime import apply_runtime

log = logging.getLogger("genen_dgl.train")


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser("python -m genen_dgl.train", __doc__.split("\n\n")[0]).parse_args(argv)
    requested = given(args)
    if requested.get("labels"):  # a run resumed from another folder still finds it
        requested["labels"] = str(Path(requested["labels"]).resolve())
    config = TrainConfig(**requested).resolved()
    with collect_log() as preparation:  # train.log gets these lines once the run directory exists
        spec = run_spec(config.data or ensure_sample(), config)
        config = dataclasses.replace(config, data=str(spec.path.resolve()), task=spec.task(config.task).name)
        run_dir = RunDir(config.out or default_run_dir(config, spec.name, config.task))
        if args.resume:
            config = run_dir.resume(requested)
        else:
            config = dataclasses.replace(config, out=str(run_dir.path))
            run_dir.check_new()  # before the inputs are read (the graph may take minutes)
        apply_runtime(config)
        backend = LocalBackend(config)  # every input is checked before the run directory is touched
        if not args.resume:
            run_dir.start(config, backend.spec, backend.device)
    with run_dir.logging(preparation):
        log.info("run %s: %s", run_dir.path, " ".join(sys.argv[1:] if argv is None else argv))
        try:
            metrics = run_cross_validation(backend, run_dir.path, resume=args.resume)
        except Interrupted as stop:
            print(f"interrupted after {stop.split} epoch {stop.epoch}; resume with: "
                  f"python -m genen_dgl.train --resume --out {run_dir.path}", file=sys.stderr)
            return 130
    seeds = f" x {config.seeds} seeds" if config.seeds > 1 else ""
    print(summary_line(metrics, f"{config.graph}/{config.model}, {config.folds}-fold{seeds}", run_dir.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
