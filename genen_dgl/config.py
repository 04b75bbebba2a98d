"""Training configuration: defaults (the paper's), a YAML file, then command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from genen_dgl.errors import InputError


@dataclass
class TrainConfig:
    data: str | None = None  # dataset.yaml; None: the embedded sample
    graph: str = "go_ppi"
    sampler: str = "neighbor"
    model: str = "gcn"
    task: str | None = None
    fanouts: list[int] | None = None  # per layer; default 10 each
    fanout_rel: dict[str, list[int]] = field(default_factory=dict)
    batch_size: int = 128
    epochs: int = 60
    lr: float = 0.005
    weight_decay: float = 5e-4
    hidden: int = 256
    layers: int | None = None  # GCN 3, GAT 2 (the paper's best)
    heads: int = 4
    dropout: float = 0.5
    edge_weight: str | None = None  # none | fixed | learned; default: fixed for GCN on ppi, else none
    folds: int = 5
    seeds: int = 1  # repeat the K folds over this many seeds (seed, seed + 1, ...)
    val_share: float = 0.15
    patience: int = 10
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    mask_rate: float = 0.0
    mask_nodes: str = "all"  # all | gene | go
    threads: int | None = None
    refit: bool = True  # after CV, one model on all labelled genes for embeddings.npy

    def resolved(self) -> "TrainConfig":
        """Fill the model-dependent defaults and check values."""
        c = dataclasses.replace(self)
        c.layers = c.layers or (3 if c.model == "gcn" else 2)
        c.fanouts = c.fanouts or [10] * c.layers
        if c.edge_weight is None:  # the paper: fixed scores on the PPI graph, go_ppi "without edge weights"
            c.edge_weight = "fixed" if c.model == "gcn" and c.graph == "ppi" else "none"
        for name, allowed in CHOICES.items():
            value = getattr(c, name)
            if value not in allowed:
                raise InputError(f"{name} = {value!r}: expected one of {', '.join(allowed)}")
        if c.model == "gat" and c.edge_weight != "none":
            raise InputError(f"edge_weight = {c.edge_weight!r}: GAT has no edge weights (attention replaces them)")
        if len(c.fanouts) != c.layers:
            raise InputError(f"fanouts {c.fanouts}: expected one per layer ({c.layers})")
        if not 0 <= c.mask_rate < 1:
            raise InputError(f"mask_rate = {c.mask_rate}: expected a share in [0, 1)")
        if c.folds < 2:
            raise InputError(f"folds = {c.folds}: expected at least 2")
        if c.seeds < 1:
            raise InputError(f"seeds = {c.seeds}: expected at least 1")
        if c.model == "gat" and c.hidden % c.heads:
            raise InputError(f"hidden = {c.hidden}: expected a multiple of heads ({c.heads}) for GAT")
        return c

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


CHOICES = {
    "graph": ("ppi", "go", "go_ppi"), "sampler": ("neighbor", "device", "full"), "model": ("gcn", "gat"),
    "edge_weight": ("none", "fixed", "learned"), "device": ("auto", "cpu", "cuda"), "mask_nodes": ("all", "gene", "go"),
}

HELP = {
    "data": "dataset spec (dataset.yaml); default: the embedded sample dataset",
    "graph": "graph variant: ppi (genes, PPI edges), go (genes + GO terms), go_ppi (all edges)",
    "sampler": "neighbor: minibatches with DGL's neighbour sampler (on the CPU); device: the same uniform "
               "sampling in torch ops on the training device (fast on a GPU); full: full-graph training",
    "model": "gcn (paper eq. 1) or gat (paper eq. 2)",
    "task": "task name from the dataset spec (default: its first task)",
    "fanouts": "neighbours sampled per layer and relation, e.g. 10,10,10",
    "fanout_rel": "per-relation override, REL=F1,F2,.. (repeatable), e.g. interacts=5,5,5",
    "batch_size": "seed genes per minibatch",
    "epochs": "maximum epochs per fold",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "hidden": "hidden width (GAT: total over heads)",
    "layers": "number of layers (default GCN 3, GAT 2); the output layer is a convolution",
    "heads": "GAT attention heads",
    "dropout": "dropout after each hidden layer",
    "edge_weight": "PPI edge weights for GCN: none, fixed (STRING score) or learned; default as the paper: "
                   "fixed on the ppi graph, none on go_ppi (its PPI edges are unweighted) and for GAT",
    "folds": "cross-validation folds",
    "seeds": "repeat the folds over N seeds (seed, seed+1, ...): mean ± std over seeds x folds, paired tests",
    "val_share": "share of each training part held out for early stopping",
    "patience": "epochs without validation improvement before stopping",
    "seed": "random seed (folds, initialisation, sampling)",
    "device": "auto, cpu or cuda",
    "out": "run directory (default runs/GRAPH-MODEL-TASK)",
    "mask_rate": "share of nodes whose input features are zeroed (robustness study)",
    "mask_nodes": "which nodes masking draws from: all, gene or go",
    "threads": "torch CPU threads (default: torch's choice)",
    "refit": "after cross-validation, train one model on all labelled genes (for the folds' median best "
             "epoch count) and export its refined embeddings of every gene",
}


def parse_ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _rel_fanout(text: str) -> tuple[str, list[int]]:
    rel, sep, values = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected REL=F1,F2,..., got {text!r}")
    return rel, parse_ints(values)


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML file of these options (flags override it)")
    types = {"fanouts": parse_ints, "fanout_rel": _rel_fanout}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"help": HELP[f.name], "default": None}
        if f.name == "fanout_rel":
            kwargs["action"] = "append"
        if f.name in types:
            kwargs["type"] = types[f.name]
        elif f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        elif f.type in ("int", "int | None"):
            kwargs["type"] = int
        elif f.type == "float":
            kwargs["type"] = float
        elif f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then the flags that were given."""
    values: dict = {}
    if args.config is not None:
        if not args.config.exists():
            raise InputError("config file not found", args.config)
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise InputError("expected a mapping of option: value", args.config)
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(loaded) - names
        if unknown:
            raise InputError(f"unknown option {sorted(unknown)[0]!r}", args.config)
        values.update(loaded)
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = dict(v) if f.name == "fanout_rel" else v
    return TrainConfig(**values)
