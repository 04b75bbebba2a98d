"""A sampled training step with ``--sampler device`` never waits for the device (issue 12).

On a GPU, ``torch.cuda.set_sync_debug_mode("error")`` turns every host synchronisation into
an error. On the CPU the same property is checked through the profiler: a step must not run
the operators that read a value back from the device (``item``/``int()``/``bool()`` of a
tensor, ``nonzero`` behind boolean indexing, ``unique``, ``bincount`` and
``repeat_interleave`` without an output size, ``torch.equal``), nor copy host data to it
(``x[i] = 0``, ``torch.tensor``); nested calls count too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_benchmarks import _opcount
from test_device_sampling import PPI, simple_heterograph, weights_of
from torch.profiler import ProfilerActivity, profile

from genen_dgl.sampling.device import DeviceBatches
from genen_dgl.dgl_compat import dgl
from genen_dgl.nn.model import GenenGNN
from genen_dgl.training.objective import task_loss
from genen_dgl.training.optimise import adam

READ_BACK = ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero", "aten::unique",
             "aten::_unique", "aten::_unique2", "aten::unique_consecutive", "aten::masked_select", "aten::bincount",
             "aten::equal",
             # a tensor made from host data (x[i] = 0, torch.tensor(...)): on a GPU a host-to-device copy,
             # which waits for the device and which CUDA graph capture refuses
             "aten::lift_fresh")


def training(model: str, fanouts: list[int], batch_size: int, device: str, optimiser: str = "adam",
             dropout: float = 0.0, graph=None):
    """A fresh model (one layer per fanout), its optimiser (the trainer's Adam, or plain SGD),
    the sampler's generator and ``step(seeds) -> loss`` (sample, gather, forward, loss,
    backward, optimiser step) on ``device`` over ``graph`` (default: ``simple_heterograph(6)``),
    the same for every call with the same arguments."""
    graph = graph or simple_heterograph(6)
    batches = DeviceBatches(graph, np.arange(40), fanouts, batch_size, weights_of(graph), device=device)
    feats = {t: torch.randn(graph.num_nodes(t), 8, generator=torch.Generator().manual_seed(1)).to(device)
             for t in graph.ntypes}
    labels = torch.randint(0, 2, (graph.num_nodes("gene"),), generator=torch.Generator().manual_seed(2)).to(device)
    torch.manual_seed(0)
    net = GenenGNN(model, 8, 8, 2, len(fanouts), graph.canonical_etypes, heads=2, dropout=dropout,
                   learned_weights={PPI: graph.num_edges(PPI)} if model == "gcn" else None).to(device)
    opt = adam(net.parameters(), 0.01, capturable=device == "cuda") if optimiser == "adam" else \
        torch.optim.SGD(net.parameters(), 0.1)
    gen = torch.Generator(device=device).manual_seed(0)

    def step(seeds):
        batch = batches.sample(seeds, gen)
        out = net(batch.blocks, {t: feats[t][n] for t, n in batch.input_nodes.items()})
        loss = task_loss("binary", out, labels[batch.seeds])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return net, opt, gen, step


def training_step(model: str, device: str):
    """A function running one sampled training step with dropout on ``device``, after one
    warm-up step (which builds the cached per-shape index tensors)."""
    _, _, _, step = training(model, [2, 2], 4, device, dropout=0.5)
    seeds = torch.arange(4, device=device)  # few enough that no node type is taken whole
    step(seeds)
    return lambda: step(seeds)


def under(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None and parent.name != name:
        parent = parent.cpu_parent
    return parent is not None


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_step_reads_nothing_back_on_the_cpu(model):
    step = training_step(model, "cpu")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss = step()
    # Adam's fused CPU kernel reads its step count, a CPU scalar (on a GPU it stays on the device)
    names = {e.name for e in prof.events() if not under(e, "aten::_fused_adam_")}
    assert torch.isfinite(loss)
    assert "aten::mm" in names or "aten::bmm" in names  # the profiler saw the step
    assert not names & set(READ_BACK), sorted(names & set(READ_BACK))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_step_never_synchronises_on_the_gpu(model):
    step = training_step(model, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


def with_go_relations(extra: int):
    """``simple_heterograph(6)`` with ``extra`` more GO -> GO relations (as GO's part_of,
    regulates, ...)."""
    graph = simple_heterograph(6)
    rng = np.random.default_rng(extra)
    edges = {e: graph.edges(etype=e) for e in graph.canonical_etypes}
    for i in range(extra):
        edges[("go", f"rel{i}", "go")] = tuple(torch.as_tensor(rng.integers(0, 25, 40)) for _ in range(2))
    out = dgl.heterograph(edges, num_nodes_dict={t: graph.num_nodes(t) for t in graph.ntypes})
    out.edges[PPI].data["score"] = graph.edges[PPI].data["score"]
    return out


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_a_step_runs_as_many_operators_whatever_the_relations(model):
    """Every relation of a layer in one pass (issue 12): a sampled step (3 layers at fanout
    10) makes as many torch operator calls (on a GPU, about as many kernel launches) with 5
    GO -> GO relations as with 1. (Its count at paper scale, ``benchmarks/throughput.py
    --count-ops``, is in BENCHMARKS.md.)"""
    seeds = torch.arange(8)

    def ops(extra: int) -> int:
        _, _, _, step = training(model, [10, 10, 10], 8, "cpu", dropout=0.5, graph=with_go_relations(extra))
        step(seeds)
        return _opcount().count_ops(lambda: step(seeds))[0]["ops"]

    assert ops(0) == ops(4)
