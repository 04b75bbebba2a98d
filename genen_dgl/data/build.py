"""``python -m genen_dgl.data.build --data dataset.yaml [--graph go_ppi]``: build (or load
from cache) a graph variant and print its node and edge counts per type."""

from __future__ import annotations

import argparse
from pathlib import Path

from genen_dgl.data.graph import load_graph
from genen_dgl.schema import VARIANTS
from genen_dgl.data.sample import ensure_sample
from genen_dgl.errors import cli
from genen_dgl.provenance import add_version


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.data.build", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--data", type=Path, help="dataset.yaml (default: the embedded sample)")
    parser.add_argument("--graph", choices=VARIANTS, default="go_ppi", help="graph variant")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    print(load_graph(args.data or ensure_sample(), args.graph, rebuild=args.rebuild))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
