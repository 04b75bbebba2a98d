"""``python -m genen_dgl.data.cache list|prune [--keep N] --data SPEC``: the graph caches
of a dataset's cache folder.

A graph cache is the pair ``graph-KEY.bin`` + ``graph-KEY.json`` that
:func:`genen_dgl.data.graph.load_full_graph` writes (KEY: 16 hex digits, the hash of what
shapes the graph); only such pairs whose json says it is one of ours are listed or
removed, nothing else in the folder is touched. ``prune`` keeps the cache of the spec as
it is now and the most recently used others, ``--keep`` in all.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from genen_dgl.data.sample import ensure_sample
from genen_dgl.data.spec import load_spec
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger(__name__)

NAME = re.compile(r"^graph-([0-9a-f]{16})\.bin$")


@dataclass
class GraphCache:
    key: str
    bin: Path
    meta: Path
    spec: str  # the spec that built it
    used: float  # mtime of the .json: written or last loaded

    @property
    def size(self) -> int:
        return self.bin.stat().st_size + self.meta.stat().st_size


def graph_caches(folder: Path) -> list[GraphCache]:
    """The graph caches in ``folder``, most recently used first (pairs that are ours only)."""
    out = []
    for path in sorted(folder.glob("graph-*.bin")) if folder.is_dir() else []:
        match = NAME.match(path.name)
        meta = path.with_suffix(".json")
        if not match or not meta.is_file():
            continue
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or "schema" not in info or "gene_ids" not in info:
            continue
        out.append(GraphCache(match.group(1), path, meta, str(info.get("spec", "?")), meta.stat().st_mtime))
    return sorted(out, key=lambda c: -c.used)


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def describe(folder: Path) -> str:
    """``N graph caches, SIZE in FOLDER``: the line a build logs."""
    caches = graph_caches(folder)
    return f"{len(caches)} graph cache(s), {mb(sum(c.size for c in caches))} in {folder}"


def prune(folder: Path, keep: int, current: str | None) -> list[GraphCache]:
    """Remove all but ``keep`` caches: the ``current`` key's first, then the most recently used."""
    caches = graph_caches(folder)
    ordered = [c for c in caches if c.key == current] + [c for c in caches if c.key != current]
    gone = ordered[keep:]
    for c in gone:
        size = c.size
        c.bin.unlink()
        c.meta.unlink()
        log.info("removed graph cache %s (%s, built for %s)", c.key, mb(size), c.spec)
    return gone


@cli
def main(argv: list[str] | None = None) -> int:
    from genen_dgl.data.graph import cache_key

    parser = argparse.ArgumentParser(prog="python -m genen_dgl.data.cache", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("action", choices=("list", "prune"))
    parser.add_argument("--data", type=Path, help="dataset.yaml (default: the embedded sample)")
    parser.add_argument("--keep", type=int, default=1, help="prune: caches to keep, the spec's current one first "
                                                            "(default 1)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.keep < 0:
        raise InputError(f"--keep {args.keep}: expected an integer >= 0")
    spec = load_spec(args.data or ensure_sample())
    current = cache_key(spec)
    caches = graph_caches(spec.cache)
    if args.action == "list":
        for c in caches:
            mark = " (current)" if c.key == current else ""
            print(f"{c.key}  {mb(c.size):>9}  used {time.strftime('%Y-%m-%d %H:%M', time.localtime(c.used))}  "
                  f"{c.spec}{mark}")
        print(describe(spec.cache))
        return 0
    sizes = {c.key: c.size for c in caches}
    gone = prune(spec.cache, args.keep, current)
    print(f"removed {len(gone)} graph cache(s), {mb(sum(sizes[c.key] for c in gone))}; {describe(spec.cache)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
