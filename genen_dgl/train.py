"""``python -m genen_dgl.train``: cross-validated GCN/GAT training on a Genen graph.

With no ``--data`` it trains on the embedded sample dataset (generated on first use).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from genen_dgl.config import TrainConfig, build_parser, from_args
from genen_dgl.errors import InputError, cli
from genen_dgl.trainer import run, summary_line

log = logging.getLogger("genen_dgl.train")


def run_dir_for(config: TrainConfig) -> Path:
    return Path(config.out or f"runs/{config.graph}-{config.model}-{config.task or 'default'}")


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser("python -m genen_dgl.train", __doc__.split("\n\n")[0]).parse_args(argv)
    config = from_args(args)
    run_dir = run_dir_for(config)
    saved = run_dir / "config.yaml"
    if args.resume:
        if not saved.exists():
            raise InputError("nothing to resume: no config.yaml", run_dir)
        stored = TrainConfig(**yaml.safe_load(saved.read_text()))
        config = TrainConfig(**{**stored.__dict__, "device": config.device if args.device else stored.device})
    else:
        if (run_dir / "fold0").exists():
            raise InputError("run directory already has results; pass --resume or choose another --out", run_dir)
        config = config.resolved()
        config.out = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(config.to_yaml())
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package_log = logging.getLogger("genen_dgl")
    package_log.addHandler(handler)
    try:
        log.info("run %s: %s", run_dir, " ".join(sys.argv[1:]) if argv is None else " ".join(argv))
        metrics = run(config, run_dir, resume=args.resume)
    finally:
        package_log.removeHandler(handler)
        handler.close()
    seeds = f" x {config.seeds} seeds" if config.seeds > 1 else ""
    print(summary_line(metrics, f"{config.graph}/{config.model}, {config.folds}-fold{seeds}", run_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
