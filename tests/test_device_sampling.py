"""The torch-op neighbour sampler (genen_dgl.device_sampling) against DGL's, on the CPU."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from genen_dgl.config import TrainConfig
from genen_dgl.dataloading import graph_degrees, parse_fanouts, to_message_block
from genen_dgl.device_sampling import DeviceBatches, DeviceCSC, DeviceGraph, floyd_sample
from genen_dgl.dgl_compat import dgl
from genen_dgl.nn.model import GenenGNN
from genen_dgl.nn.sparse import Relation
from genen_dgl.local import LocalData
from genen_dgl.trainer import FoldTrainer

PPI = ("gene", "interacts", "gene")
FANOUT = 4


def simple_heterograph(seed: int = 0):
    """Genes and GO terms without multi-edges; in-degrees from 0 to well above FANOUT."""
    rng = np.random.default_rng(seed)
    n = {"gene": 40, "go": 25}

    def edges(src, dst, m):
        pairs = np.unique(np.stack([rng.integers(0, n[src], m), rng.integers(0, n[dst] - 3, m)], 1), axis=0)
        pairs = pairs[rng.permutation(len(pairs))]  # edge ids not sorted by destination
        return torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])  # last 3 dst: no in-edges

    graph = dgl.heterograph({
        PPI: edges("gene", "gene", 260),
        ("gene", "annotated", "go"): edges("gene", "go", 90),
        ("go", "annotates", "gene"): edges("go", "gene", 70),
        ("go", "is_a", "go"): edges("go", "go", 30),
    }, num_nodes_dict=n)
    graph.edges[PPI].data["score"] = torch.rand(graph.num_edges(PPI), generator=torch.Generator().manual_seed(seed)) + .1
    return graph


def weights_of(graph):
    return {PPI: graph.edges[PPI].data["score"]}


def sample(graph, seeds, fanouts, seed=0):
    dg = DeviceGraph(graph, "cpu", weights_of(graph))
    gen = torch.Generator().manual_seed(seed)
    return dg.sample_blocks({"gene": torch.as_tensor(seeds)}, fanouts, generator=gen, return_edges=True)


def test_sampled_edges_are_real_distinct_and_capped():
    """The seeds' layer, per seed and relation: at most the fanout, every sampled edge a
    real in-edge with its own id, no neighbour twice, all of them when the degree allows."""
    graph = simple_heterograph()
    seeds = torch.arange(0, 40, 3)
    for rep in range(5):
        _, blocks, edges = sample(graph, seeds, [FANOUT, FANOUT, FANOUT], seed=rep)
        for e, (src, dst, eid) in edges[-1].items():
            s_ref, d_ref = graph.find_edges(eid, etype=e)
            assert torch.equal(s_ref, src) and torch.equal(d_ref, dst)
            if e[2] != "gene":
                assert len(eid) == 0
                continue
            for d in seeds.tolist():
                mine = eid[dst == d]
                assert len(mine) <= FANOUT
                assert len(set(mine.tolist())) == len(mine) == len(set(src[dst == d].tolist()))
                all_in = graph.in_edges(d, form="eid", etype=e)
                if len(all_in) <= FANOUT:
                    assert sorted(mine.tolist()) == sorted(all_in.tolist())
                else:
                    assert len(mine) == FANOUT
            rel = blocks[-1].relations[e]
            loops = rel.eid < 0
            if e[0] == e[2]:  # one self-loop per destination, after its sampled edges
                assert torch.equal(rel.row[loops], torch.arange(len(seeds)))
                assert torch.equal(rel.col[loops], torch.arange(len(seeds)))
                assert torch.equal(rel.rowptr[1:][:len(seeds)] - 1, torch.nonzero(loops).flatten())
            else:
                assert not loops.any()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_device_batches_on(device):
    """Sampled on ``device``: batches live there, and the edges are the graph's, capped."""
    graph = simple_heterograph(4)
    batches = DeviceBatches(graph, np.arange(0, 40, 2), [FANOUT, FANOUT], 8, weights_of(graph), device=device)
    for batch in batches.epoch(0):
        assert batch.seeds.device.type == device and batch.input_nodes["go"].device.type == device
        for block in batch.blocks:
            for e, rel in block.relations.items():
                assert rel.col.device.type == device
                real = rel.eid >= 0
                assert ((rel.rowptr[1:] - rel.rowptr[:-1]) - int(e[0] == e[2]) <= FANOUT).all()
                if e == PPI:
                    assert torch.equal(rel.weight[real], graph.edges[PPI].data["score"][rel.eid[real].cpu()].to(device))
        net = GenenGNN("gcn", 8, 8, 2, 2, graph.canonical_etypes, dropout=0.0).to(device)
        x = {t: torch.ones(graph.num_nodes(t), 8, device=device)[n] for t, n in batch.input_nodes.items()}
        assert net(batch.blocks, x).shape == (len(batch.seeds), 2)


def test_every_layer_against_dgl_sampler():
    """Per layer and relation, as many edges per destination as DGL's sampler takes
    (min(degree, fanout)); every edge real; no duplicates; dst nodes first among sources."""
    graph = simple_heterograph(1)
    seeds = torch.arange(0, 40, 2)
    fanouts = [3, FANOUT, 5]
    input_nodes, blocks, edges = sample(graph, seeds, fanouts, seed=3)
    dst = {"gene": seeds, "go": torch.empty(0, dtype=torch.int64)}
    for i in reversed(range(len(blocks))):
        block, block_edges = blocks[i], edges[i]
        frontier = dgl.sampling.sample_neighbors(graph, {t: n for t, n in dst.items() if n.numel()}, fanouts[i])
        src_nodes = {}
        for e, (src, d, eid) in block_edges.items():
            s_ref, d_ref = graph.find_edges(eid, etype=e)
            assert torch.equal(s_ref, src) and torch.equal(d_ref, d)
            ours = torch.bincount(d, minlength=graph.num_nodes(e[2]))
            theirs = torch.bincount(frontier.edges(etype=e)[1], minlength=graph.num_nodes(e[2]))
            assert torch.equal(ours, theirs), e
            assert len(set(zip(src.tolist(), d.tolist()))) == len(src)  # no duplicate neighbours
            rel = block.relations[e]
            assert rel.num_dst == dst[e[2]].numel() and (rel.eid >= 0).sum() == len(eid)
        for t in graph.ntypes:  # this block's sources: its destinations first, then the rest
            m = block.num_dst[t]
            srcs = torch.cat([block_edges[e][0] for e in graph.canonical_etypes if e[0] == t] + [dst[t]])
            src_nodes[t] = torch.cat([dst[t], torch.as_tensor(sorted(set(srcs.tolist()) - set(dst[t].tolist())),
                                                              dtype=torch.int64)])
            assert block.num_src[t] == src_nodes[t].numel() and m == dst[t].numel()
        dst = src_nodes
    for t in graph.ntypes:
        assert torch.equal(input_nodes[t], dst[t])


def test_uniform_marginals_chi_square():
    """A node with 20 neighbours, fanout 5: each neighbour is drawn equally often."""
    csc = DeviceCSC(torch.tensor([0, 20]), torch.arange(100, 120), torch.arange(20))
    draws = 4000
    src, eid, counts = csc.sample(torch.zeros(draws, dtype=torch.int64), 5, torch.Generator().manual_seed(0))
    assert torch.equal(counts, torch.full((draws,), 5))
    freq = torch.bincount(src - 100, minlength=20).numpy()
    assert freq.sum() == 5 * draws
    assert chisquare(freq).pvalue > 0.001
    # DGL's sampler on the same star, for reference: equally uniform
    star = dgl.graph((torch.arange(1, 21), torch.zeros(20, dtype=torch.int64)))
    dgl.seed(0)
    ref = Counter()
    for _ in range(400):
        ref.update(dgl.sampling.sample_neighbors(star, torch.tensor([0]), 5).edges()[0].tolist())
    assert chisquare(np.array([ref[i] for i in range(1, 21)])).pvalue > 0.001


def test_uniform_subsets_chi_square():
    """Every 2-subset of 6 neighbours equally likely (Floyd's algorithm), not just marginals."""
    picks = floyd_sample(torch.full((6000,), 6), 2, torch.Generator().manual_seed(1))
    assert (picks[:, 0] < picks[:, 1]).all()
    freq = Counter(map(tuple, picks.tolist()))
    assert set(freq) == set(itertools.combinations(range(6), 2))
    assert chisquare(np.array(list(freq.values()))).pvalue > 0.001


def test_mixed_degrees_and_take_all():
    csc = DeviceCSC(torch.tensor([0, 2, 2, 9, 10]), torch.arange(10), torch.arange(10) + 50)
    src, eid, counts = csc.sample(torch.tensor([3, 0, 1, 2]), 3, torch.Generator().manual_seed(0))
    assert counts.tolist() == [1, 2, 0, 3]
    assert src[:3].tolist() == [9, 0, 1] and set(src[3:].tolist()) <= set(range(2, 9))
    assert torch.equal(eid, src + 50)
    src, eid, counts = csc.sample(torch.tensor([2, 0]), -1)
    assert counts.tolist() == [7, 2] and src.tolist() == [2, 3, 4, 5, 6, 7, 8, 0, 1]


def frontier_block(graph, block_edges, dst):
    """DGL's block for these sampled edges, as its sampler makes it: ``to_block`` of the
    frontier (``dst`` first among the sources), parent edge ids in EID."""
    frontier = dgl.heterograph({e: (s, d) for e, (s, d, _) in block_edges.items()},
                               num_nodes_dict={t: graph.num_nodes(t) for t in graph.ntypes})
    ref = dgl.to_block(frontier, dst)
    ref.edata[dgl.EID] = {e: eid[ref.edges[e].data[dgl.EID]] for e, (_, _, eid) in block_edges.items()}
    return ref


def dgl_chain(graph, seeds, edges):
    """A DGL block list with our sampled edges and DGL's node order throughout (each
    block's destinations are the next block's sources, in DGL's order)."""
    out, dst = [], {"gene": seeds}
    for block_edges in reversed(edges):
        ref = frontier_block(graph, block_edges, dst)
        out.insert(0, ref)
        dst = {t: ref.srcnodes[t].data[dgl.NID] for t in ref.srctypes}
    return out


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_structure_equals_to_message_block(model):
    """On the same sampled edges, the blocks equal to_message_block's (node order aside:
    compared in parent ids) and the model's outputs and gradients agree."""
    graph = simple_heterograph(2)
    seeds = torch.tensor([5, 1, 33, 17, 8, 20, 2])
    weights = weights_of(graph)
    input_nodes, ours, edges = sample(graph, seeds, [FANOUT, 3], seed=7)
    # per block, with our destination order (so the CSR arrays compare position by position)
    ref_blocks = [frontier_block(graph, be, {t: input_nodes[t][: b.num_dst[t]] for t in graph.ntypes})
                  for b, be in zip(ours, edges)]
    degrees = graph_degrees(graph)
    theirs = [to_message_block(b, weights, degrees=degrees) for b in ref_blocks]
    # each block's source nodes are a prefix of the input nodes (destinations first)
    src_ids = [{t: input_nodes[t][: b.num_src[t]] for t in graph.ntypes} for b in ours]
    for ob, tb, rb, ids in zip(ours, theirs, ref_blocks, src_ids):
        assert ob.num_src == tb.num_src and ob.num_dst == tb.num_dst
        for t in graph.ntypes:
            m = ob.num_dst[t]
            assert torch.equal(ids[t][:m], rb.dstnodes[t].data[dgl.NID])
            assert set(ids[t].tolist()) == set(rb.srcnodes[t].data[dgl.NID].tolist())
        for e in graph.canonical_etypes:
            o, r = ob.relations[e], tb.relations[e]
            their_ids = rb.srcnodes[e[0]].data[dgl.NID]
            assert torch.equal(o.rowptr, r.rowptr) and torch.equal(o.row, r.row) and torch.equal(o.eid, r.eid)
            torch.testing.assert_close(o.norm, r.norm)  # the same whole-graph degrees and rescaling
            assert torch.equal(ids[e[0]][o.col], their_ids[r.col])
            assert (o.weight is None) == (r.weight is None)
            if o.weight is not None:
                assert torch.equal(o.weight, r.weight)
            # the transpose is consistent: source-major, stable, the same edges
            assert torch.equal(o.t_col, o.row[o.t_perm]) and (o.col[o.t_perm].diff() >= 0).all()
            assert torch.equal(o.t_rowptr[1:] - o.t_rowptr[:-1], torch.bincount(o.col, minlength=o.num_src))
    feat = {t: torch.randn(graph.num_nodes(t), 8, generator=torch.Generator().manual_seed(3)) for t in graph.ntypes}
    torch.manual_seed(0)
    net = GenenGNN(model, 8, 8, 3, 2, graph.canonical_etypes, heads=2, dropout=0.0,
                   learned_weights={PPI: graph.num_edges(PPI)} if model == "gcn" else None)
    x_ours = {t: feat[t][input_nodes[t]] for t in graph.ntypes}
    chain = dgl_chain(graph, seeds, edges)
    x_theirs = {t: feat[t][chain[0].srcnodes[t].data[dgl.NID]] for t in graph.ntypes}
    out_o, out_t = net(ours, x_ours), net([to_message_block(b, weights, degrees=degrees) for b in chain], x_theirs)
    torch.testing.assert_close(out_o, out_t, atol=1e-5, rtol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), list(net.parameters()), allow_unused=True) for out in (out_o, out_t)]
    for a, b in zip(*grads):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_from_csc_matches_a_direct_construction():
    """``Relation.from_csc`` (both samplers build their blocks with it) against the plain
    reading: loops appended and stably sorted by destination, transpose by stable argsort."""
    rng = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 2, 5, 1])
    col = torch.randint(0, 7, (int(counts.sum()),), generator=rng)
    eid = torch.randperm(20, generator=rng)[: col.numel()]
    w = torch.rand(20, generator=rng)
    indptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    for loops in (False, True):
        row, c, e = torch.repeat_interleave(torch.arange(5), counts), col, eid
        if loops:
            row, c = torch.cat([row, torch.arange(5)]), torch.cat([c, torch.arange(5)])
            e = torch.cat([e, torch.full((5,), -1)])
            by_dst = torch.argsort(row, stable=True)
            row, c, e = row[by_dst], c[by_dst], e[by_dst]
        by_src = torch.argsort(c, stable=True)
        expected = {"rowptr": torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(row, minlength=5).cumsum(0)]),
                    "col": c, "row": row, "eid": e, "t_perm": by_src, "t_col": row[by_src],
                    "t_rowptr": torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(c, minlength=7).cumsum(0)]),
                    "weight": torch.where(e >= 0, w[e.clamp(min=0)], torch.ones(len(e)))}
        rel = Relation.from_csc(7, 5, indptr, col, eid, w, self_loops=loops)
        for f, want in expected.items():
            assert torch.equal(getattr(rel, f), want), (f, loops)


def test_batches_interface_and_reproducibility():
    graph = simple_heterograph(3)
    fanouts = parse_fanouts([3, 3], {"interacts": [2, 5]}, graph)
    seeds = np.arange(0, 40, 1)
    batches = DeviceBatches(graph, seeds, fanouts, 16, weights_of(graph))
    assert len(batches) == 3
    a, b = list(batches.epoch(4)), list(batches.epoch(4))
    assert [len(x.seeds) for x in a] == [16, 16, 8]
    assert sorted(torch.cat([x.seeds for x in a]).tolist()) == seeds.tolist()
    for x, y in zip(a, b):
        assert torch.equal(x.seeds, y.seeds)
        assert all(torch.equal(x.input_nodes[t], y.input_nodes[t]) for t in graph.ntypes)
        assert torch.equal(x.blocks[0].relations[PPI].eid, y.blocks[0].relations[PPI].eid)
        assert x.to("cpu").seeds is x.seeds
        assert x.blocks[-1].num_dst["gene"] == len(x.seeds) and x.blocks[-1].num_dst["go"] == 0
        ppi = x.blocks[-1].relations[PPI]
        assert int((ppi.eid >= 0).sum()) <= 5 * len(x.seeds)  # the per-relation fanout of the last layer
    assert DeviceGraph.of(graph, "cpu", weights_of(graph)) is DeviceGraph.of(graph, "cpu", weights_of(graph))


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core host, torch's threads plus DGL's sampling thread
    oversubscribe the cores and spin (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_training_reaches_the_dgl_sampler_auc(sample_spec, tmp_path, model, one_thread):
    """Two folds of the sample dataset: the same AUC (within 0.02) as with DGL's sampler."""
    config = TrainConfig(data=str(sample_spec), model=model, hidden=32, folds=2, epochs=10, batch_size=64,
                         patience=100).resolved()
    auc = {}
    for sampler in ("neighbor", "device"):
        data = LocalData(dataclasses.replace(config, sampler=sampler))
        trainers = [FoldTrainer(data, split, tmp_path / sampler) for split in data.splits]
        assert all(isinstance(t.steps.sampler, DeviceBatches) == (sampler == "device") for t in trainers)
        auc[sampler] = float(np.mean([t.fit()["auc"] for t in trainers]))
    assert auc["neighbor"] > 0.8
    assert abs(auc["device"] - auc["neighbor"]) < 0.02, auc
