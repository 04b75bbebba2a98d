"""Training configuration: defaults (the paper's), a YAML file, then command-line flags.

Every option is one field of :class:`TrainConfig`, declared with :func:`option`: its default,
help, kind and the values it takes. From the fields come the command-line flags (checked
when the command line is parsed: one-line error, exit 2), the checks of a ``--config``
file's values, and the ``--help`` defaults. Structured values (fanouts per layer, per
relation) are a :class:`Structured` kind, which parses, reads and checks them in one place.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from genen_dgl.errors import InputError
from genen_dgl.provenance import add_version
from genen_dgl.precision import PRECISIONS

SAMPLER_NAMES = ("neighbor", "device", "full")  # genen_dgl.sampling.SAMPLERS and FULL_GRAPH (tests/test_config.py)


def parse_ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


class Structured:
    """The kind of an option whose value is not one int, float, str or bool: how a flag's
    text parses (:meth:`parse`), which forms a config file may write (:meth:`read`), and
    which values it takes (:meth:`check`)."""

    expected: str  # what the error messages say it takes
    action: Any = "store"  # argparse's action for its flag

    def parse(self, text: str) -> Any:
        """One flag's text as a value (argparse.ArgumentTypeError if it does not parse)."""
        raise NotImplementedError

    def read(self, name: str, value: Any) -> Any:
        """A config file's value in the form :meth:`check` takes."""
        return value

    def check(self, name: str, value: Any) -> None:
        """An InputError naming ``name`` unless ``value`` is one this kind takes."""
        raise NotImplementedError


class Fanouts(Structured):
    """Neighbours sampled per layer: ``10,10,5`` on the command line, a list in a config
    file; each >= 1, or -1 for every neighbour."""

    expected = "integers >= 1 (or -1: every neighbour)"

    def parse(self, text: str) -> list[int]:
        return parse_ints(text)

    def check(self, name: str, value: Any) -> None:
        if not (isinstance(value, list) and value
                and all(isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or v == -1) for v in value)):
            raise InputError(f"{name} = {value!r}: expected {self.expected}")


class _Merge(argparse.Action):
    """A repeatable flag whose values are mappings: later flags add to (or override) earlier ones."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), **values})


class RelFanouts(Structured):
    """Fanouts per relation, ``{REL: [F1, F2, ...]}``: the repeatable flag ``REL=F1,F2,...``;
    in a config file a mapping ``REL: [F1, F2, ...]`` (or ``REL: "F1,F2"``), or the flag's
    text (one, or a list of them). Each relation's fanouts are checked as :class:`Fanouts`."""

    expected = Fanouts.expected
    action = _Merge

    def parse(self, text: str) -> dict[str, list[int]]:
        rel, sep, values = text.partition("=")
        if not sep or not rel:
            raise argparse.ArgumentTypeError(f"expected REL=F1,F2,..., got {text!r}")
        return {rel: parse_ints(values)}

    def read(self, name: str, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        try:
            if isinstance(items, list) and all(isinstance(v, str) for v in items):
                return {rel: fanouts for text in items for rel, fanouts in self.parse(text).items()}
            if isinstance(items, dict) and all(isinstance(r, str) for r in items):
                return {r: parse_ints(v) if isinstance(v, str) else v for r, v in items.items()}
        except argparse.ArgumentTypeError:
            pass
        raise InputError(f"{name} = {value!r}: expected a mapping REL: [F1, F2, ...] or REL=F1,F2,... text")

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise InputError(f"{name} = {value!r}: expected a mapping REL: [F1, F2, ...]")
        for rel, fanouts in value.items():
            Fanouts().check(f"{name} {rel}", fanouts)


@dataclass(frozen=True)
class Option:
    """One option: its help, its kind, and the values it takes (``choices``, or a range:
    ``min`` inclusive, ``above`` / ``below`` exclusive)."""

    help: str
    kind: Any = str  # int, float, str, bool, or a Structured kind
    choices: tuple[str, ...] = ()
    min: float | None = None
    above: float | None = None
    below: float | None = None
    shown: str | None = None  # the --help default, where it depends on other options
    flag: str | None = None  # the command-line flag, where it is not --NAME

    def expected(self) -> str:
        if isinstance(self.kind, Structured):
            return self.kind.expected
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = {int: "an integer", float: "a number", bool: "a bool (true or false)"}.get(self.kind, "a string")
        parts = [f">= {self.min:g}" if self.min is not None else "", f"> {self.above:g}" if self.above is not None
                 else "", f"< {self.below:g}" if self.below is not None else ""]
        return " ".join([noun, " and ".join(p for p in parts if p)]).strip()

    def check(self, name: str, value: Any) -> None:
        """An InputError naming ``name`` unless ``value`` is one this option takes."""
        if isinstance(self.kind, Structured):
            return self.kind.check(name, value)
        if self.choices:
            good = value in self.choices
        elif self.kind is bool:
            good = isinstance(value, bool)
        elif self.kind in (int, float):
            good = (isinstance(value, int if self.kind is int else (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and (self.min is None or value >= self.min)
                    and (self.above is None or value > self.above) and (self.below is None or value < self.below))
        else:
            good = isinstance(value, str)
        if not good:
            quoted = " (text: write the number unquoted, an exponent with a dot: 1.0e-3)" \
                if isinstance(value, str) and self.kind in (int, float) else ""
            raise InputError(f"{name} = {value!r}: expected {self.expected()}{quoted}")

    def read(self, name: str, value: Any) -> Any:
        """A config file's value, in the form the option takes, checked."""
        if isinstance(self.kind, Structured):
            value = self.kind.read(name, value)
        self.check(name, value)
        return value

    def parser(self, name: str) -> Callable[[str], Any]:
        """The argparse ``type``: converts the text and checks it at parse time."""
        def parse(text: str):
            try:
                value = self.kind.parse(text) if isinstance(self.kind, Structured) else self.kind(text)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise argparse.ArgumentTypeError(str(err) if isinstance(err, argparse.ArgumentTypeError)
                                                 else f"expected {self.expected()}, got {text!r}") from None
            try:
                self.check(name, value)
            except InputError:
                raise argparse.ArgumentTypeError(f"expected {self.expected()}, got {text!r}") from None
            return value
        return parse


def option(default: Any, help: str, kind: Any = None, **takes: Any) -> Any:
    """A :class:`TrainConfig` field: its default and its :class:`Option` (``kind``: the
    default's type unless given; str where the default is None)."""
    if kind is None:
        kind = str if default is None else type(default)
    metadata = {"option": Option(help, kind, **takes)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """A run's options, each declared with its help and the values it takes (:func:`option`)."""

    data: str | None = option(None, "dataset spec (dataset.yaml)", shown="the embedded sample dataset")
    graph: str = option("go_ppi", "graph variant: ppi (genes, PPI edges), go (genes + GO terms), go_ppi (all edges)",
                        choices=("ppi", "go", "go_ppi"))
    sampler: str = option("neighbor", "neighbor: minibatches with DGL's neighbour sampler (in a background thread); "
                          "device: the same uniform sampling in torch ops on the training device (the choice on a "
                          "GPU; on a CPU neighbor is faster, 2.3x on the real human graph, but device is "
                          "reproducible without --deterministic); full: full-graph training", choices=SAMPLER_NAMES)
    model: str = option("gcn", "gcn (paper eq. 1) or gat (paper eq. 2)", choices=("gcn", "gat"))
    task: str | None = option(None, "task name from the dataset spec", shown="its first task")
    labels: str | None = option(None, "a label file of your own (CSV, LitGene-like), trained as a task of the "
                                "dataset named by the file's stem", shown="none: the dataset's tasks")
    label_column: str | None = option(None, "with --labels: the label column", shown="Label")
    gene_column: str | None = option(None, "with --labels: the gene symbol column", shown="Gene name")
    task_type: str | None = option(None, "with --labels: the task's type",
                                   choices=("binary", "multiclass", "multilabel", "regression", "auto"),
                                   shown="auto: text or integer labels are classes, other numbers regression",
                                   flag="--type")
    text_column: str | None = option(None, "with --labels: a column of gene text (e.g. Summary) used as those "
                                     "genes' text, as summaries are (encode it first: the error says the command)",
                                     shown="none")
    fanouts: list[int] | None = option(None, "neighbours sampled per layer and relation, e.g. 10,10,10 (-1: every "
                                       "neighbour)", Fanouts(), shown="10 per layer")
    fanout_rel: dict[str, list[int]] = option({}, "per-relation override, REL=F1,F2,.. (repeatable), e.g. "
                                              "interacts=5,5,5", RelFanouts(), shown="none")
    batch_size: int = option(128, "seed genes per minibatch", min=1)
    epochs: int = option(60, "maximum epochs per fold", min=1)
    lr: float = option(0.005, "Adam learning rate", above=0)
    weight_decay: float = option(5e-4, "Adam weight decay", min=0)
    hidden: int = option(256, "hidden width (GAT: total over heads)", min=1)
    layers: int | None = option(None, "number of layers; the output layer is a convolution", int, min=1,
                                shown="GCN 3, GAT 2, the paper's best")
    heads: int = option(4, "GAT attention heads", min=1)
    dropout: float = option(0.5, "dropout after each hidden layer", min=0, below=1)
    edge_weight: str | None = option(None, "PPI edge weights for GCN: none, fixed (STRING score) or learned",
                                     choices=("none", "fixed", "learned"),
                                     shown="as the paper: fixed on the ppi graph, none on go_ppi (its PPI edges "
                                           "are unweighted) and for GAT")
    folds: int = option(5, "cross-validation folds", min=2)
    seeds: int = option(1, "repeat the folds over N seeds (seed, seed+1, ...): mean ± std over seeds x folds, "
                        "paired tests", min=1)
    val_share: float = option(0.15, "share of each training part held out for early stopping", above=0, below=1)
    patience: int = option(10, "epochs without validation improvement before stopping", min=1)
    seed: int = option(0, "random seed (folds, initialisation, sampling)", min=0)
    device: str = option("auto", "where the model runs", choices=("auto", "cpu", "cuda"),
                         shown="auto: cuda if torch sees a GPU")
    precision: str = option("fp32", "numeric precision of training and prediction: fp32; tf32 (float32 tensors, "
                            "TF32 tensor-core matmuls on CUDA; on the CPU the same as fp32); bf16 (the forward "
                            "pass under bfloat16 autocast, CPU or CUDA; float32 weights and loss)",
                            choices=PRECISIONS)
    out: str | None = option(None, "run directory", shown="runs/DATASET-GRAPH-MODEL-TASK-SAMPLER")
    mask_rate: float = option(0.0, "share of nodes whose input features are zeroed (robustness study)",
                              min=0, below=1)
    mask_nodes: str = option("all", "which nodes masking draws from", choices=("all", "gene", "go"))
    hide_test_annotations: bool = option(False, "novel-gene regime: in each fold, the test genes (and the "
                                         "validation genes early stopping reads) lose their gene-GO edges (both "
                                         "directions) in the graph that fold trains and predicts on, and the test "
                                         "genes their row in the GO-derived baselines, as genes nobody has "
                                         "annotated; their text and PPI edges stay")
    threads: int | None = option(None, "torch CPU threads", int, min=1, shown="torch's choice")
    refit: bool = option(True, "after cross-validation, train one model on all labelled genes (for the folds' "
                         "median best epoch count) and export its refined embeddings of every gene")
    keep_checkpoints: str = option("best", "checkpoints kept once a split has finished: best (best.pt), last "
                                   "(best.pt and last.pt, with the optimizer state) or none",
                                   choices=("best", "last", "none"))
    deterministic: bool = option(False, "bit-identical results for the same command and seed: sampling in the "
                                 "main thread, one torch thread, deterministic kernels (slower)")
    cuda_graph: bool = option(False, "with --sampler device on a GPU: capture each training step (sample, "
                              "forward, backward, Adam) once per batch size as a CUDA graph and replay it "
                              "(genen_dgl.training.replay)")
    node_embeddings: str = option("none", "learnable per-node input vectors, concatenated to the text features, "
                                  "for the GO terms, the genes or both (dgl.nn.NodeEmbedding, sparse Adam: only "
                                  "the rows a batch reads are updated)", choices=("none", "go", "gene", "go,gene"))
    node_embedding_dim: int | None = option(None, "width of the node embeddings", int, min=1,
                                            shown="the input feature width")
    annotation_residual: bool = option(False, "add a linear layer on each gene's own GO annotations (multi-hot) "
                                       "to the output logits: the GO-annotation baseline inside the GNN")
    correct_smooth: str = option("none", "Correct & Smooth on each fold's outputs over the gene graph (ppi: PPI "
                                 "edges; go: genes sharing GO terms; go_ppi: both), training labels only; "
                                 "metrics.json reports the model with and without it",
                                 choices=("none", "ppi", "go", "go_ppi"))
    cs_alpha1: float = option(0.8, "Correct & Smooth: alpha of the correct step", min=0, below=1)
    cs_alpha2: float = option(0.8, "Correct & Smooth: alpha of the smooth step", min=0, below=1)

    def resolved(self) -> "TrainConfig":
        """Check every value against its option, fill the model-dependent defaults, and
        check the options that depend on each other."""
        c = dataclasses.replace(self)
        for f in dataclasses.fields(c):
            value = getattr(c, f.name)
            if value is not None or f.default is not None:  # None: the default of an option that has none
                OPTIONS[f.name].check(f.name, value)
        c.layers = c.layers or (3 if c.model == "gcn" else 2)
        c.fanouts = list(c.fanouts or [10] * c.layers)
        if c.edge_weight is None:  # the paper: fixed scores on the PPI graph, go_ppi "without edge weights"
            c.edge_weight = "fixed" if c.model == "gcn" and c.graph == "ppi" else "none"
        if c.model == "gat" and c.edge_weight != "none":
            raise InputError(f"edge_weight = {c.edge_weight!r}: GAT has no edge weights (attention replaces them)")
        if len(c.fanouts) != c.layers:
            raise InputError(f"fanouts {c.fanouts}: expected one per layer ({c.layers})")
        for rel, values in c.fanout_rel.items():
            if len(values) != c.layers:
                raise InputError(f"fanout_rel {rel}={values}: expected one fanout per layer ({c.layers})")
        own = [k for k in ("label_column", "gene_column", "task_type", "text_column") if getattr(c, k) is not None]
        if own and c.labels is None:
            raise InputError(f"{flag(own[0])}: describes a --labels file; none is given")
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


OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in dataclasses.fields(TrainConfig)}
CHOICES = {name: o.choices for name, o in OPTIONS.items() if o.choices}
RUNTIME = ("device", "threads", "out")  # options a resumed run may change


def flag(name: str) -> str:
    """The command-line flag of option ``name``."""
    return OPTIONS[name].flag or "--" + name.replace("_", "-")


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
    for name, o in OPTIONS.items():
        kwargs = {"help": f"{o.help} (default: {o.shown or getattr(defaults, name)})", "default": None}
        if o.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif o.choices:
            kwargs["choices"] = o.choices
        else:
            kwargs["type"] = o.parser(name.replace("_", "-"))
            if isinstance(o.kind, Structured):
                kwargs["action"] = o.kind.action
        parser.add_argument(flag(name), dest=name, **kwargs)
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
            values[name] = v
    return values


def checked_options(loaded: Any, path: Path) -> dict[str, Any]:
    """A config file's ``option: value`` mapping, every value read as its option takes it
    (the forms a structured option may be written in) and checked: an InputError naming ``path``."""
    if not isinstance(loaded, dict):
        raise InputError("expected a mapping of option: value", path)
    unknown = set(loaded) - set(OPTIONS)
    if unknown:
        raise InputError(f"unknown option {sorted(unknown)[0]!r}", path)
    checked = {}
    for name, value in loaded.items():
        try:
            checked[name] = value if value is None else OPTIONS[name].read(name, value)
        except InputError as err:
            raise InputError(err.message, path) from None
    return checked


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the --config file, then the flags that were given."""
    return TrainConfig(**given(args))
