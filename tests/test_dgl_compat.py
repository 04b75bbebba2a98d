"""The DGL import shim: a GraphBolt stand-in only where DGL has no library for this torch."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest
import torch

from genen_dgl import dgl_compat


def test_library_lookup(tmp_path):
    (tmp_path / "graphbolt").mkdir()
    (tmp_path / "graphbolt" / "libgraphbolt_pytorch_2.2.1.so").write_bytes(b"")
    assert not dgl_compat.needs_graphbolt_stub(tmp_path, "2.2.1+cu121")
    assert dgl_compat.needs_graphbolt_stub(tmp_path, "2.13.0+cpu")


def test_stub_behaves_like_a_module():
    stub = dgl_compat.make_graphbolt_stub()
    with pytest.raises(AttributeError):
        stub.SomethingElse  # noqa: B018
    assert not hasattr(stub, "__wrapped__")
    inspect.getmembers(stub)  # probes attributes; must not raise
    assert not isinstance(object(), stub.FusedCSCSamplingGraph)


def test_dgl_works_on_this_torch():
    dgl = dgl_compat.dgl
    lib = dgl_compat.graphbolt_library(dgl_compat.Path(dgl.__file__).parent, torch.__version__)
    assert dgl_compat.GRAPHBOLT_STUBBED == (not lib.exists())
    g = dgl.heterograph({("a", "r", "b"): (torch.tensor([0, 1]), torch.tensor([1, 0]))})
    _, _, blocks = dgl.dataloading.NeighborSampler([1]).sample(g, {"b": torch.tensor([0, 1])})
    assert blocks[0].num_edges() == 2
    model = torch.nn.Linear(2, 2)
    torch.optim.Adam(model.parameters())  # torch.optim inspects modules: breaks with a bad stub


def test_without_the_stub_dgl_loads_its_own_graphbolt():
    """Where the library 'matches' (forced here), the shim leaves DGL alone: on this torch
    DGL's own GraphBolt then fails to import as upstream does, proving no stand-in was used."""
    probe = textwrap.dedent("""
        import importlib.util, sys, traceback, types
        src = open(importlib.util.find_spec("genen_dgl.dgl_compat").origin).read()
        src = src.replace("if needs_graphbolt_stub(dgl_dir, torch.__version__):", "if False:")
        try:
            exec(compile(src, "dgl_compat", "exec"), types.ModuleType("probe").__dict__)
        except Exception:
            print("failed-in-graphbolt", "dgl/graphbolt" in traceback.format_exc())
        else:
            print("imported", type(sys.modules["dgl.graphbolt"]).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    lib = dgl_compat.graphbolt_library(dgl_compat.Path(dgl_compat.dgl.__file__).parent, torch.__version__)
    expected = "imported module" if lib.exists() else "failed-in-graphbolt True"
    assert expected in out.stdout, out.stdout + out.stderr
