"""``python -m genen_dgl.train``: cross-validated GCN/GAT training on a Genen graph.

With no ``--data`` it trains on the embedded sample dataset (generated on first use).
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from genen_dgl.config import build_parser, from_args
from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import load_spec
from genen_dgl.device import pick_device
from genen_dgl.errors import cli
from genen_dgl.local import run
from genen_dgl.rundir import RunDir, default_run_dir, summary_line

log = logging.getLogger("genen_dgl.train")


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser("python -m genen_dgl.train", __doc__.split("\n\n")[0]).parse_args(argv)
    config = from_args(args).resolved()
    pick_device(config.device)  # every input is checked before the run directory is touched
    spec = load_spec(config.data or ensure_sample())
    run_dir = RunDir(config.out or default_run_dir(config, spec.name, spec.task(config.task).name))
    if args.resume:
        stored = run_dir.stored()
        config = dataclasses.replace(stored, device=config.device if args.device else stored.device)
    else:
        config = dataclasses.replace(config, out=str(run_dir.path))
        run_dir.start(config)
    with run_dir.logging():
        log.info("run %s: %s", run_dir.path, " ".join(sys.argv[1:] if argv is None else argv))
        metrics = run(config, run_dir.path, resume=args.resume)
    seeds = f" x {config.seeds} seeds" if config.seeds > 1 else ""
    print(summary_line(metrics, f"{config.graph}/{config.model}, {config.folds}-fold{seeds}", run_dir.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
