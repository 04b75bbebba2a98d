"""The one place that imports DGL.

DGL 2.1.0, the last Linux wheel on PyPI, ships GraphBolt only for torch 2.0.x-2.2.1:
``dgl/graphbolt/__init__.py`` loads ``libgraphbolt_pytorch_<torch version>.so`` and
raises ``FileNotFoundError`` on any other torch, which breaks ``import dgl`` (and
``dgl.distributed``, which imports GraphBolt eagerly). Nothing in genen-dgl uses
GraphBolt, so when the library for the installed torch is missing we register a
stand-in module before the first ``import dgl``. Where the library matches, DGL is
imported untouched.

Everything else in the package does ``from genen_dgl.dgl_compat import dgl``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import torch

GRAPHBOLT = "dgl.graphbolt"


def graphbolt_library(dgl_dir: Path, torch_version: str) -> Path:
    """Path of the GraphBolt library DGL would load for ``torch_version``."""
    release = torch_version.split("+")[0]
    return Path(dgl_dir) / "graphbolt" / f"libgraphbolt_pytorch_{release}.so"


def needs_graphbolt_stub(dgl_dir: Path, torch_version: str) -> bool:
    """True when DGL's GraphBolt has no library for this torch (so importing it fails)."""
    return not graphbolt_library(dgl_dir, torch_version).exists()


class _FusedCSCSamplingGraph:
    """Stand-in type: DGL checks ``isinstance(g, FusedCSCSamplingGraph)``; nothing is one."""


def make_graphbolt_stub() -> types.ModuleType:
    """A ``dgl.graphbolt`` stand-in. Unknown names raise AttributeError, as a module's
    should (``inspect`` and ``torch.optim`` probe attributes and expect exactly that)."""
    stub = types.ModuleType(GRAPHBOLT)
    stub.__doc__ = "genen-dgl stand-in: GraphBolt has no build for this torch."
    stub.FusedCSCSamplingGraph = _FusedCSCSamplingGraph

    def __getattr__(name: str):
        raise AttributeError(f"module {GRAPHBOLT!r} is a stand-in and has no attribute {name!r}")

    stub.__getattr__ = __getattr__
    return stub


def _import_dgl():
    if "dgl" in sys.modules:
        return sys.modules["dgl"]
    os.environ.setdefault("DGLBACKEND", "pytorch")
    spec = importlib.util.find_spec("dgl")
    if spec is None or spec.origin is None:
        raise ImportError("DGL is not installed: pip install 'dgl>=2.1'")
    dgl_dir = Path(spec.origin).parent
    if needs_graphbolt_stub(dgl_dir, torch.__version__):
        sys.modules[GRAPHBOLT] = make_graphbolt_stub()
    import dgl as _dgl  # noqa: E402  (must follow the stand-in)
    import dgl.distributed  # noqa: F401  (imports GraphBolt eagerly: check it now)

    return _dgl


dgl = _import_dgl()
GRAPHBOLT_STUBBED = isinstance(sys.modules.get(GRAPHBOLT), types.ModuleType) and (
    getattr(sys.modules[GRAPHBOLT], "FusedCSCSamplingGraph", None) is _FusedCSCSamplingGraph
)
