"""Training configuration: defaults (the paper's), a YAML file, then command-line flags.

Every option is one row of :data:`OPTIONS` (help, type, choices or range). The same row
builds its command-line flag (checked when the command line is parsed: one-line error,
exit 2), checks a value from a ``--config`` file, and writes the ``--help`` default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from genen_dgl.errors import InputError
from genen_dgl.provenance import add_version
from genen_dgl.precision import PRECISIONS


@dataclass
class TrainConfig:
    data: str | None = None  # dataset.yaml; None: the embedded sample
    graph: str = "go_ppi"
    sampler: str = "neighbor"
    model: str = "gcn"
    task: str | None = None
    labels: str | None = None  # a label file of one's own, trained as a task of the dataset (named by its stem)
    label_column: str | None = None
    gene_column: str | None = None
    task_type: str | None = None
    text_column: str | None = None
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
    precision: str = "fp32"  # fp32 | tf32 | bf16 (genen_dgl.precision)
    out: str | None = None
    mask_rate: float = 0.0
    mask_nodes: str = "all"  # all | gene | go
    hide_test_annotations: bool = False  # novel-gene regime: each fold's held-out genes lose their GO edges
    threads: int | None = None
    refit: bool = True  # after CV, one model on all labelled genes for embeddings.npy
    keep_checkpoints: str = "best"  # best | last | none, once a split has finished
    deterministic: bool = False  # bit-identical reruns: sampling in the main thread, deterministic kernels
    cuda_graph: bool = False  # --sampler device on a GPU: each whole step replayed as a CUDA graph
    node_embeddings: str = "none"  # none | go | gene | go,gene: learnable per-node inputs (genen_dgl.nn.node_embedding)
    node_embedding_dim: int | None = None  # default: the input feature width
    annotation_residual: bool = False  # logits += a linear layer on the gene's own GO multi-hot
    correct_smooth: str = "none"  # none | ppi | go | go_ppi: C&S on each fold's outputs (genen_dgl.correct_smooth)
    cs_alpha1: float = 0.8  # C&S: correct step's alpha
    cs_alpha2: float = 0.8  # C&S: smooth step's alpha

    def resolved(self) -> "TrainConfig":
        """Check every value against :data:`OPTIONS`, fill the model-dependent defaults,
        and check the options that depend on each other."""
        c = dataclasses.replace(self)
        for f in dataclasses.fields(c):
            value = getattr(c, f.name)
            if value is not None and f.name != "fanout_rel":
                OPTIONS[f.name].check(f.name, value)
        c.layers = c.layers or (3 if c.model == "gcn" else 2)
        c.fanouts = list(c.fanouts or [10] * c.layers)
        if c.edge_weight is None:  # the paper: fixed scores on the PPI graph, go_ppi "without edge weights"
            c.edge_weight = "fixed" if c.model == "gcn" and c.graph == "ppi" else "none"
        if c.model == "gat" and c.edge_weight != "none":
            raise InputError(f"edge_weight = {c.edge_weight!r}: GAT has no edge weights (attention replaces them)")
        if len(c.fanouts) != c.layers:
            raise InputError(f"fanouts {c.fanouts}: expected one per layer ({c.layers})")
        if not isinstance(c.fanout_rel, dict):
            raise InputError(f"fanout_rel = {c.fanout_rel!r}: expected a mapping REL: [F1, F2, ...]")
        for rel, values in c.fanout_rel.items():
            OPTIONS["fanouts"].check(f"fanout_rel {rel}", values)
            if len(values) != c.layers:
                raise InputError(f"fanout_rel {rel}={values}: expected one fanout per layer ({c.layers})")
        own = [k for k in ("label_column", "gene_column", "task_type", "text_column") if getattr(c, k) is not None]
        if own and c.labels is None:
            flag = OPTIONS[own[0]].flag or "--" + own[0].replace("_", "-")
            raise InputError(f"{flag}: describes a --labels file; none is given")
        if c.labels is not None:
            if c.task not in (None, Path(c.labels).stem):
                raise InputError(f"task = {c.task!r}: --labels trains the task {Path(c.labels).stem!r} (the file's name)")
            c.task = Path(c.labels).stem
        if c.cuda_graph and c.sampler != "device":
            raise InputError(f"cuda_graph: replays steps of the device sampler; expected sampler = device, "
                             f"got {c.sampler!r}")
        if c.cuda_graph and c.node_embeddings != "none":
            raise InputError("node_embeddings: DGL's sparse optimiser steps outside a captured CUDA graph; "
                             "expected no cuda_graph with node embeddings")
        if c.model == "gat" and c.hidden % c.heads:
            raise InputError(f"hidden = {c.hidden}: expected a multiple of heads ({c.heads}) for GAT")
        return c

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def parse_ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _rel_fanout(text: str) -> tuple[str, list[int]]:
    rel, sep, values = text.partition("=")
    if not sep or not rel:
        raise argparse.ArgumentTypeError(f"expected REL=F1,F2,..., got {text!r}")
    return rel, parse_ints(values)


@dataclass(frozen=True)
class Option:
    """One option: its help, its type, and the values it takes (``choices``, or a range:
    ``min`` inclusive, ``above`` / ``below`` exclusive)."""

    help: str
    kind: Any = str  # int, float, str, bool, or a parser (text -> value) for list-valued options
    choices: tuple[str, ...] = ()
    min: float | None = None
    above: float | None = None
    below: float | None = None
    default: str | None = None  # the --help default, where it depends on other options
    flag: str | None = None  # the command-line flag, where it is not --NAME

    def expected(self) -> str:
        if self.kind in (parse_ints, _rel_fanout):
            return "integers >= 1 (or -1: every neighbour)"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = {int: "an integer", float: "a number", bool: "a bool (true or false)"}.get(self.kind, "a string")
        parts = [f">= {self.min:g}" if self.min is not None else "", f"> {self.above:g}" if self.above is not None
                 else "", f"< {self.below:g}" if self.below is not None else ""]
        return " ".join([noun, " and ".join(p for p in parts if p)]).strip()

    def check(self, name: str, value: Any) -> None:
        """An InputError naming ``name`` unless ``value`` is one this option takes."""
        if self.kind is _rel_fanout:
            return OPTIONS["fanouts"].check(name, value[1])
        values = value if isinstance(value, list) else [value]
        if self.kind is parse_ints:  # fanouts: each >= 1, or -1 for every neighbour
            if not values or not all(isinstance(v, int) and (v >= 1 or v == -1) for v in values):
                raise InputError(f"{name} = {value!r}: expected {self.expected()}")
            return
        for v in values:
            if self.choices:
                good = v in self.choices
            elif self.kind is bool:
                good = isinstance(v, bool)
            elif self.kind in (int, float):
                good = (isinstance(v, int if self.kind is int else (int, float)) and not isinstance(v, bool)
                        and math.isfinite(v) and (self.min is None or v >= self.min)
                        and (self.above is None or v > self.above) and (self.below is None or v < self.below))
            else:
                good = isinstance(v, str)
            if not good:
                quoted = " (text: write the number unquoted, an exponent with a dot: 1.0e-3)" \
                    if isinstance(v, str) and self.kind in (int, float) else ""
                raise InputError(f"{name} = {value!r}: expected {self.expected()}{quoted}")

    def parser(self, name: str) -> Callable[[str], Any]:
        """The argparse ``type``: converts the text and checks it at parse time."""
        def parse(text: str):
            try:
                value = self.kind(text)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise argparse.ArgumentTypeError(str(err) if isinstance(err, argparse.ArgumentTypeError)
                                                 else f"expected {self.expected()}, got {text!r}") from None
            try:
                self.check(name, value)
            except InputError:
                raise argparse.ArgumentTypeError(f"expected {self.expected()}, got {text!r}") from None
            return value
        return parse


OPTIONS: dict[str, Option] = {
    "data": Option("dataset spec (dataset.yaml)", default="the embedded sample dataset"),
    "graph": Option("graph variant: ppi (genes, PPI edges), go (genes + GO terms), go_ppi (all edges)",
                    choices=("ppi", "go", "go_ppi")),
    "sampler": Option("neighbor: minibatches with DGL's neighbour sampler (in a background thread); device: the "
                      "same uniform sampling in torch ops on the training device (the choice on a GPU; on a CPU "
                      "neighbor is faster, 2.3x on the real human graph, but device is reproducible without "
                      "--deterministic); full: full-graph training",
                      choices=("neighbor", "device", "full")),
    "model": Option("gcn (paper eq. 1) or gat (paper eq. 2)", choices=("gcn", "gat")),
    "task": Option("task name from the dataset spec", default="its first task"),
    "labels": Option("a label file of your own (CSV, LitGene-like), trained as a task of the dataset named by the "
                     "file's stem", default="none: the dataset's tasks"),
    "label_column": Option("with --labels: the label column", default="Label"),
    "gene_column": Option("with --labels: the gene symbol column", default="Gene name"),
    "task_type": Option("with --labels: the task's type", choices=("binary", "multiclass", "multilabel", "regression", "auto"),
                        default="auto: text or integer labels are classes, other numbers regression", flag="--type"),
    "text_column": Option("with --labels: a column of gene text (e.g. Summary) used as those genes' text, as "
                          "summaries are (encode it first: the error says the command)", default="none"),
    "fanouts": Option("neighbours sampled per layer and relation, e.g. 10,10,10 (-1: every neighbour)",
                      kind=parse_ints, default="10 per layer"),
    "fanout_rel": Option("per-relation override, REL=F1,F2,.. (repeatable), e.g. interacts=5,5,5",
                         kind=_rel_fanout, default="none"),
    "batch_size": Option("seed genes per minibatch", int, min=1),
    "epochs": Option("maximum epochs per fold", int, min=1),
    "lr": Option("Adam learning rate", float, above=0),
    "weight_decay": Option("Adam weight decay", float, min=0),
    "hidden": Option("hidden width (GAT: total over heads)", int, min=1),
    "layers": Option("number of layers; the output layer is a convolution", int, min=1,
                     default="GCN 3, GAT 2, the paper's best"),
    "heads": Option("GAT attention heads", int, min=1),
    "dropout": Option("dropout after each hidden layer", float, min=0, below=1),
    "edge_weight": Option("PPI edge weights for GCN: none, fixed (STRING score) or learned",
                          choices=("none", "fixed", "learned"),
                          default="as the paper: fixed on the ppi graph, none on go_ppi (its PPI edges are "
                                  "unweighted) and for GAT"),
    "folds": Option("cross-validation folds", int, min=2),
    "seeds": Option("repeat the folds over N seeds (seed, seed+1, ...): mean ± std over seeds x folds, paired tests",
                    int, min=1),
    "val_share": Option("share of each training part held out for early stopping", float, above=0, below=1),
    "patience": Option("epochs without validation improvement before stopping", int, min=1),
    "seed": Option("random seed (folds, initialisation, sampling)", int, min=0),
    "device": Option("where the model runs", choices=("auto", "cpu", "cuda"), default="auto: cuda if torch sees a GPU"),
    "precision": Option("numeric precision of training and prediction: fp32; tf32 (float32 tensors, TF32 "
                        "tensor-core matmuls on CUDA; on the CPU the same as fp32); bf16 (the forward pass under "
                        "bfloat16 autocast, CPU or CUDA; float32 weights and loss)", choices=PRECISIONS),
    "out": Option("run directory", default="runs/DATASET-GRAPH-MODEL-TASK-SAMPLER"),
    "mask_rate": Option("share of nodes whose input features are zeroed (robustness study)", float, min=0, below=1),
    "mask_nodes": Option("which nodes masking draws from", choices=("all", "gene", "go")),
    "hide_test_annotations": Option("novel-gene regime: in each fold, the test genes (and the validation genes "
                                    "early stopping reads) lose their gene-GO edges (both directions) in the graph "
                                    "that fold trains and predicts on, and the test genes their row in the "
                                    "GO-derived baselines, as genes nobody has annotated; their text and PPI edges "
                                    "stay", bool),
    "threads": Option("torch CPU threads", int, min=1, default="torch's choice"),
    "refit": Option("after cross-validation, train one model on all labelled genes (for the folds' median best "
                    "epoch count) and export its refined embeddings of every gene", bool),
    "keep_checkpoints": Option("checkpoints kept once a split has finished: best (best.pt), last (best.pt and "
                               "last.pt, with the optimizer state) or none", choices=("best", "last", "none")),
    "deterministic": Option("bit-identical results for the same command and seed: sampling in the main thread, "
                            "one torch thread, deterministic kernels (slower)", bool),
    "cuda_graph": Option("with --sampler device on a GPU: capture each training step (sample, forward, backward, "
                         "Adam) once per batch size as a CUDA graph and replay it (genen_dgl.training.replay)", bool),
    "node_embeddings": Option("learnable per-node input vectors, concatenated to the text features, for the GO "
                              "terms, the genes or both (dgl.nn.NodeEmbedding, sparse Adam: only the rows a batch "
                              "reads are updated)", choices=("none", "go", "gene", "go,gene")),
    "node_embedding_dim": Option("width of the node embeddings", int, min=1, default="the input feature width"),
    "annotation_residual": Option("add a linear layer on each gene's own GO annotations (multi-hot) to the output "
                                  "logits: the GO-annotation baseline inside the GNN", bool),
    "correct_smooth": Option("Correct & Smooth on each fold's outputs over the gene graph (ppi: PPI edges; go: "
                             "genes sharing GO terms; go_ppi: both), training labels only; metrics.json reports "
                             "the model with and without it", choices=("none", "ppi", "go", "go_ppi")),
    "cs_alpha1": Option("Correct & Smooth: alpha of the correct step", float, min=0, below=1),
    "cs_alpha2": Option("Correct & Smooth: alpha of the smooth step", float, min=0, below=1),
}
CHOICES = {name: o.choices for name, o in OPTIONS.items() if o.choices}
HELP = {name: o.help for name, o in OPTIONS.items()}
RUNTIME = ("device", "threads", "out")  # options a resumed run may change


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit 2), like every other input error."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    add_version(parser)
    parser.add_argument("--config", type=Path, help="YAML file of these options (flags override it)")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        o = OPTIONS[f.name]
        shown = o.default or getattr(defaults, f.name)
        kwargs = {"help": f"{o.help} (default: {shown})", "default": None}
        if o.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif o.choices:
            kwargs["choices"] = o.choices
        else:
            kwargs["type"] = o.parser(f.name.replace("_", "-"))
            if f.name == "fanout_rel":
                kwargs["action"] = "append"
        parser.add_argument(o.flag or "--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The options the user set: the --config file's, then the flags."""
    values: dict = {}
    if args.config is not None:
        if not args.config.exists():
            raise InputError("config file not found", args.config)
        try:
            loaded = yaml.safe_load(args.config.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"not valid YAML ({getattr(err, 'problem', err)})", args.config) from None
        values.update(checked_options(loaded, args.config))
    for name in OPTIONS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = dict(v) if name == "fanout_rel" else v
    return values


def checked_options(loaded: Any, path: Path) -> dict[str, Any]:
    """A config file's ``option: value`` mapping, every value checked against the option
    table (types included; ``fanout_rel`` normalised): an InputError naming ``path``."""
    if not isinstance(loaded, dict):
        raise InputError("expected a mapping of option: value", path)
    unknown = set(loaded) - set(OPTIONS)
    if unknown:
        raise InputError(f"unknown option {sorted(unknown)[0]!r}", path)
    if loaded.get("fanout_rel") is not None:
        loaded["fanout_rel"] = _rel_mapping(loaded["fanout_rel"], path)
    for name, value in loaded.items():
        if value is not None and name != "fanout_rel":
            try:
                OPTIONS[name].check(name, value)
            except InputError as err:
                raise InputError(err.message, path) from None
    return loaded


def _rel_mapping(value: Any, path: Path) -> dict[str, list[int]]:
    """``fanout_rel`` from a config file: a mapping ``REL: [F1, F2, ...]`` (or ``REL: "F1,F2"``),
    or the command line's ``REL=F1,F2,...`` text (one, or a list of them), checked."""
    items = [value] if isinstance(value, str) else value
    try:
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            pairs = [_rel_fanout(v) for v in items]
        elif isinstance(items, dict) and all(isinstance(r, str) for r in items):
            pairs = [(r, parse_ints(v) if isinstance(v, str) else v) for r, v in items.items()]
        else:
            raise argparse.ArgumentTypeError("")
    except argparse.ArgumentTypeError:
        raise InputError(f"fanout_rel = {value!r}: expected a mapping REL: [F1, F2, ...] or REL=F1,F2,... text",
                         path) from None
    for rel, fanouts in pairs:
        try:
            OPTIONS["fanouts"].check(f"fanout_rel {rel}", fanouts)
        except InputError as err:
            raise InputError(err.message, path) from None
    return dict(pairs)


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then the flags that were given."""
    return TrainConfig(**given(args))
