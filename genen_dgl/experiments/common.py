"""What the experiments share: options passed through to TrainConfig, running one
config variant through the trainer (finished runs reused), fold metrics, CSV output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd

from genen_dgl.atomic import atomic_path
from genen_dgl.config import OPTIONS, TrainConfig, flag, from_args
from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import load_spec
from genen_dgl.errors import InputError
from genen_dgl.local import LocalBackend
from genen_dgl.rundir import METRICS, RunDir
from genen_dgl.training.cross_validation import run_cross_validation
from genen_dgl.training.runtime import apply_runtime

log = logging.getLogger(__name__)

# TrainConfig options every experiment passes through (``--config`` covers the rest)
PASSED = ("epochs", "folds", "seeds", "model", "task", "seed", "device", "sampler", "hidden", "threads")
FOLD_KEYS = ("seed", "fold", "best_epoch", "epochs_run", "val_loss", "undefined")


def add_common(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument("--data", type=Path, help=OPTIONS["data"].help)
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder; OUT/runs/ keeps each training run (reused when rerun)")
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig options (flags override it)")
    for name in PASSED:
        if name in skip:
            continue
        o = OPTIONS[name]  # its type or choices; the range is checked with the rest by base_config
        extra = {"choices": o.choices} if o.choices else {"type": o.kind}
        parser.add_argument(flag(name), default=None, help=o.help, **extra)


def base_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig defaults, then ``--config``, then the flags; ``data`` is the spec's path
    (``--data``, else the config file's, else the embedded sample)."""
    config = from_args(args)  # --data (a Path) and --out land here too: both replaced below
    # experiments read out-of-fold outputs only: no refit on all labelled genes
    config = dataclasses.replace(config, data=str(load_spec(config.data or ensure_sample()).path.resolve()), out=None,
                                 refit=False)
    config.resolved()  # every option checked now; the variants fill their own model-dependent defaults
    return config


def train(config: TrainConfig, run_dir: Path) -> dict:
    """Run ``config`` on one machine in ``run_dir``, returning its metrics (this process
    takes the config's runtime settings: the experiments run one config per process at a
    time). A finished run of the same config is reused, an interrupted one resumed, a run
    of another config replaced (:meth:`genen_dgl.rundir.RunDir.reuse`)."""
    spec = load_spec(config.data)
    config = dataclasses.replace(config, out=str(run_dir), task=spec.task(config.task).name).resolved()
    folder = RunDir(run_dir)
    apply_runtime(config)
    backend = LocalBackend(config)  # every input (labels, memory) checked before the run directory is touched
    resume = folder.reuse(config, spec)
    if resume and folder.finished():
        log.info("reusing finished run %s", run_dir)
        return json.loads((run_dir / METRICS).read_text())
    log.info("training %s/%s on %s (%s)%s", config.graph, config.model, config.task, run_dir,
             f", mask {config.mask_rate:g} of {config.mask_nodes}" if config.mask_rate else "")
    with folder.logging():
        return run_cross_validation(backend, run_dir, resume=resume)


def fold_rows(metrics: dict, baseline: str | None = None) -> list[dict]:
    """Per-split test metrics of a run (or of one of its baselines, by name) as rows
    ``{seed, fold, metric: value}``."""
    folds = metrics["baselines"][baseline]["folds"] if baseline else metrics["folds"]
    return [{"seed": f["seed"], "fold": f["fold"], **{m: v for m, v in f.items() if m not in FOLD_KEYS}}
            for f in folds]


def split_list(text: str | None, allowed: tuple[str, ...] | None = None, what: str = "value") -> list[str] | None:
    """``a,b,c`` as a list (None stays None), each checked against ``allowed``."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    for item in items:
        if allowed is not None and item not in allowed:
            raise InputError(f"{what} {item!r}: expected one of {', '.join(allowed)}")
    if not items:
        raise InputError(f"no {what} given")
    return items


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("wrote %s (%d rows)", path, len(frame))
    return path


def mean_std(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean and sample std (ddof = 1, as the trainer's summary) of ``value`` over folds x seeds."""
    g = frame.groupby(by, sort=False)[value]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1)}).reset_index()
