#!/usr/bin/env python3
"""Partition a Genen graph for distributed training (METIS or random).

Same as ``python -m genen_dgl.partition``; runs from a checkout without installing::

    python partition/partition_graph.py --data data/dataset.yaml --num-parts 4 --out parts/go_ppi-4
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genen_dgl.partition import main  # noqa: E402  (after the path set-up)

if __name__ == "__main__":
    raise SystemExit(main())
