"""``python -m genen_dgl.experiments {masking,bias,leakage,embeddings,table} --out DIR``:
Genen's experiments; each trains through genen_dgl.training and writes a CSV and a PNG."""

from __future__ import annotations

import argparse
import logging
import sys

from genen_dgl.atomic import claim_dir
from genen_dgl.errors import cli
from genen_dgl.provenance import add_version
from genen_dgl.experiments import bias, embeddings, leakage, masking, table
from genen_dgl.experiments.common import add_common, base_config

COMMANDS = {
    "masking": (masking, "AUC vs share of nodes with zeroed input features, per graph variant (Fig. 4b)", ()),
    "bias": (bias, "less- vs well-studied genes (summary length), GNN vs baseline (Fig. 4a)", ()),
    "leakage": (leakage, "a binary task with and without the GO leakage filter (Fig. 2a)", ()),
    "embeddings": (embeddings, "t-SNE of input vs refined gene embeddings, coloured by class (Fig. 3)", ()),
    "table": (table, "every task x model x graph variant vs the baseline (Table 1, A.1)", ("model", "task")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.experiments",
                                     description="Genen's experiments: each trains TrainConfig variants through "
                                     "genen_dgl.training and writes a CSV and a PNG.")
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_, skip) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=(module.__doc__ or help_).split("\n\n")[0])
        add_common(p, skip)
        module.add_arguments(p)
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = COMMANDS[args.command][0]
    base = None if getattr(args, "run", None) else base_config(args)  # embeddings --run needs no dataset
    claim_dir(args.out, "genen_dgl.experiments")  # after every option is checked; empty or the experiments' only
    handler = logging.FileHandler(args.out / f"{args.command}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger(__name__).info("%s: %s", args.command, " ".join(sys.argv[1:] if argv is None else argv))
        return module.main(args, base)
    finally:
        root.removeHandler(handler)
        handler.close()


if __name__ == "__main__":
    raise SystemExit(main())
